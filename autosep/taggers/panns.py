"""PANNs Cnn14 (AudioSet mAP 0.431) through the ``panns-inference`` package, without its downloads.

``panns_inference`` runs ``wget`` when it is imported (to fetch the label CSV into ``~/panns_data``) and again in
``AudioTagging.__init__`` when the checkpoint is under 300 MB, truncating it when that fails. autosep therefore:
- puts the label CSV in ``~/panns_data`` (copied from its AudioSet metadata) before importing the package;
- downloads the checkpoint itself into its cache (atomic, progress bar, size and MD5 checked);
- builds ``Cnn14`` (the package's network and forward pass) and loads the state dict with
  ``torch.load(weights_only=True)``; ``AudioTagging`` is never used.
"""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported when a model is built, so `autosep models list` does not pay for it
    import torch
    from torch import nn

from ..devices import resolve_device
from ..downloads import copy_into_place, ensure_file, verify_file
from ..errors import DownloadError, ModelNotAvailableError
from ..model_files import KnownModel
from ..model_files import cache_dir
from .audioset import class_labels_csv, load_ontology, read_class_labels
from .base import Tagger

CNN14_FILENAME = "Cnn14_mAP=0.431.pth"
CNN14_URL = "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1"
# Size and MD5 as listed for the file on Zenodo record 3987831 (Zenodo publishes MD5, not SHA-256).
CNN14_SIZE = 327_428_481
CNN14_MD5 = "541141fa2ee191a88f24a3219fff024e"
CNN14_WIDTHS = (64, 128, 256, 512, 1024, 2048)  # conv block channels of the published Cnn14
SAMPLE_RATE = 32000


def panns_labels_path() -> Path:
    """Where ``panns_inference.config`` reads its labels (and would ``wget`` them if missing)."""
    return Path.home() / "panns_data" / "class_labels_indices.csv"


def ensure_panns_labels() -> Path:
    """Copy the AudioSet class list to ``~/panns_data`` so importing ``panns_inference`` has nothing to fetch."""
    target = panns_labels_path()
    try:
        read_class_labels(target)
        return target
    except (OSError, ValueError, IndexError):
        pass  # missing, empty or truncated (a failed wget leaves an empty file): replace it
    try:
        return copy_into_place(class_labels_csv(), target)
    except OSError as exc:
        raise ModelNotAvailableError(
            f"cannot write the PANNs label list to {target} ({exc}); panns-inference needs it there. "
            "Make that folder writable (or set HOME to a writable folder) and try again."
        ) from None


def _panns_models():
    ensure_panns_labels()  # must precede the import: panns_inference.config runs wget when the CSV is missing
    from panns_inference import models

    return models


def cnn14_checkpoint_path() -> Path:
    return cache_dir() / "panns" / CNN14_FILENAME


def legacy_checkpoint_path() -> Path:
    """Where ``panns_inference`` itself keeps the checkpoint; a complete copy there is reused, not fetched again."""
    return Path.home() / "panns_data" / CNN14_FILENAME


def fetch_cnn14() -> Path:
    """Download the Cnn14 checkpoint into autosep's cache (once) and return its path."""
    dest = cnn14_checkpoint_path()
    legacy = legacy_checkpoint_path()
    if not dest.is_file() and verify_file(legacy, CNN14_SIZE, md5=CNN14_MD5) is None:
        return copy_into_place(legacy, dest)
    return ensure_file(CNN14_URL, dest, size=CNN14_SIZE, md5=CNN14_MD5, description="PANNs Cnn14 checkpoint")


def cnn14_is_cached() -> bool:
    """True when a complete checkpoint (right size) is in autosep's cache or in panns_inference's folder."""
    return any(verify_file(path, CNN14_SIZE) is None for path in (cnn14_checkpoint_path(), legacy_checkpoint_path()))


def build_cnn14(classes_num: int = 527, widths: tuple[int, ...] = CNN14_WIDTHS) -> nn.Module:
    """``panns_inference.models.Cnn14`` with its published front end, optionally with narrower conv blocks
    (tests use tiny widths; the forward pass and state-dict layout are the package's)."""
    models = _panns_models()
    if tuple(widths) == CNN14_WIDTHS:
        return models.Cnn14(sample_rate=SAMPLE_RATE, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                            fmax=14000, classes_num=classes_num)
    return _narrow_cnn14(models, classes_num, tuple(widths))


def _narrow_cnn14(models, classes_num: int, widths: tuple[int, ...]) -> nn.Module:
    from torch import nn
    from torchlibrosa.augmentation import SpecAugmentation
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    class NarrowCnn14(models.Cnn14):
        def __init__(self):
            nn.Module.__init__(self)  # Cnn14.__init__ hard-codes the published widths
            self.spectrogram_extractor = Spectrogram(n_fft=1024, hop_length=320, win_length=1024, window="hann",
                                                     center=True, pad_mode="reflect", freeze_parameters=True)
            self.logmel_extractor = LogmelFilterBank(sr=SAMPLE_RATE, n_fft=1024, n_mels=64, fmin=50, fmax=14000,
                                                     ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)
            self.spec_augmenter = SpecAugmentation(time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
                                                   freq_stripes_num=2)
            self.bn0 = nn.BatchNorm2d(64)
            channels = (1,) + widths
            for i in range(6):
                setattr(self, f"conv_block{i + 1}", models.ConvBlock(in_channels=channels[i],
                                                                    out_channels=channels[i + 1]))
            self.fc1 = nn.Linear(widths[-1], widths[-1], bias=True)
            self.fc_audioset = nn.Linear(widths[-1], classes_num, bias=True)
            self.init_weight()

    return NarrowCnn14()


def load_cnn14(checkpoint: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Build Cnn14 for ``checkpoint`` (``{'model': state_dict}`` as published) and load it, weights only."""
    import torch

    path = Path(checkpoint)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        ours = path.resolve() in (cnn14_checkpoint_path().resolve(), legacy_checkpoint_path().resolve())
        advice = (f"Delete it and run `autosep models download panns`, or download {CNN14_URL} to that path by hand"
                  if ours else  # never advise deleting a file of the user's own
                  "--tagger-model takes a Cnn14 .pth checkpoint for panns (leave it out for autosep's download)")
        raise ModelNotAvailableError(
            f"{path}: not a readable PANNs checkpoint ({type(exc).__name__}: {str(exc)[:200]}). {advice}."
        ) from None
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or "fc_audioset.weight" not in state:
        raise ModelNotAvailableError(f"{path}: not a Cnn14 checkpoint (no fc_audioset weights)")
    widths = tuple(int(state[f"conv_block{i}.conv1.weight"].shape[0]) for i in range(1, 7))
    model = build_cnn14(int(state["fc_audioset.weight"].shape[0]), widths)
    model.load_state_dict(state, strict=True)
    return model.eval().to(resolve_device(device))


class PannsTagger(Tagger):
    """Cnn14 over 2 s windows every 1 s at 32 kHz; outputs are the model's own sigmoid probabilities.

    The grid is what the planner's time rules read: which windows a source is active in, ``min_active``, and
    whether two classes rise and fall together (one sound, one source). On the 10 s windows Cnn14 was trained on,
    a recording of 10 s was one window and those rules could not act. Cnn14 pools over time (max + mean), so a
    2 s window is a valid input (it fails under about 0.3 s); its scores are held to the per-window bar the
    planner derives from the clip-level ``default_threshold`` for 2 s windows (0.25 -> 0.62). The cost is the
    same as before: every second of audio is scored twice, as with 10 s windows at a 5 s hop.
    """

    name = "panns"
    aliases = ("cnn14",)
    weights = KnownModel(
        alias="panns", role="tagger", source=CNN14_URL, size="327 MB", licence="CC BY 4.0",
        description="PANNs Cnn14 AudioSet tagger (mAP 0.431), 32 kHz; the default tagger",
        fetch=fetch_cnn14, is_cached=cnn14_is_cached,
    )
    sample_rate = SAMPLE_RATE
    window_seconds = 2.0
    hop_seconds = 1.0
    default_threshold = 0.25  # PANNs' recommended tagging operating point is 0.2-0.3 (clip-level sigmoid)

    def __init__(self, model: str | Path | None = None, device: str | torch.device = "auto"):
        checkpoint = self._resolve_checkpoint(model)
        self.device = resolve_device(device)
        self.model = load_cnn14(checkpoint, self.device)
        ontology = load_ontology()
        classes = self.model.fc_audioset.out_features
        if classes != len(ontology.class_mids):
            raise ModelNotAvailableError(f"{checkpoint}: {classes} outputs, expected the 527 AudioSet classes")
        self.labels = list(ontology.class_mids)
        self.model_id = str(checkpoint)

    @staticmethod
    def _resolve_checkpoint(model: str | Path | None) -> Path:
        if model:
            path = Path(model).expanduser()
            if path.is_dir():
                path = path / CNN14_FILENAME
            if not path.is_file():
                raise ModelNotAvailableError(f"PANNs checkpoint {path} not found: pass a Cnn14 .pth file")
            return path
        try:
            return fetch_cnn14()
        except DownloadError as exc:
            raise ModelNotAvailableError(
                f"the PANNs Cnn14 checkpoint is not available: {exc} "
                f"Fetch it with `autosep models download panns` while online."
            ) from None

    def score_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        # Whole 2 s windows (Tagger.windows pads a short recording): Cnn14's pooling fails under ~0.3 s.
        batch = np.stack(windows).astype(np.float32, copy=False)
        import torch

        with torch.inference_mode():
            output = self.model(torch.from_numpy(batch).to(self.device), None)
        return output["clipwise_output"].float().cpu().numpy()
