"""What can be known about a separator model before it loads: whether its name can be one at all, where its
files already are, and the window length it was trained on, read from its config files.

Rule of this module: nothing here downloads, imports torch or diffusers, or reads weights; a question it cannot
answer from names and local files answers ``None`` and is settled when the model loads. The command line asks
it first, so a typo in ``--model`` or an overlap longer than the model's window is refused in a second, not
after minutes of loading.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ModelNotAvailableError
from ..paths import converted_root

# AudioLDM, AudioLDM2 and Tango were trained on 10.24 s clips (ZeroSep.default_window says the same).
LATENT_DIFFUSION_WINDOW_S = 10.24
# Stable Audio 3's DiT takes any length; autosep cuts 30 s windows (StableAudio3Backbone.DEFAULT_WINDOW).
STABLE_AUDIO_3_WINDOW_S = 30.0


def published_window(model_id: str) -> float | None:
    """The default window of a published checkpoint named by its hub id, before any of its files are here."""
    name = model_id.lower()
    if name.startswith("cvssp/audioldm") or (name.startswith("declare-lab/tango") and "flux" not in name):
        return LATENT_DIFFUSION_WINDOW_S
    if name.startswith("stabilityai/stable-audio-3"):
        return STABLE_AUDIO_3_WINDOW_S
    if name == "stabilityai/stable-audio-open-1.0":
        # Its transformer/config.json sample_size 1024 latent frames; vae/config.json downsampling_ratios
        # [2, 4, 4, 8, 8] (2048 samples a frame) at sampling_rate 44100.
        return 1024 * 2048 / 44100
    return None


def model_window(model_id: str) -> float | None:
    """The window the model separates in by default: from its configs when they are here, else from what its
    published checkpoint is; None when neither tells (the loaded model will)."""
    folder = local_folder(model_id)
    window = training_window(folder) if folder is not None else None
    return window if window is not None else published_window(model_id)


def check_model_name(model_id: str, known_names: list[str], label: str = "model") -> None:
    """Refuse a ``--model`` that can be no model: not a known name, not an existing folder, and not shaped like
    a Hugging Face id (``owner/name``). Raises ModelNotAvailableError."""
    candidate = Path(model_id).expanduser()
    if candidate.exists():
        return
    if model_id.count("/") != 1 or model_id.startswith((".", "/", "~")) or not all(model_id.split("/")):
        folder = "no such folder; " if ("/" in model_id or model_id.startswith((".", "~"))) else ""
        raise ModelNotAvailableError(
            f"{label} {model_id!r}: {folder}it is neither a known name ({', '.join(known_names)}), a Hugging Face id "
            "(owner/name) nor an existing folder; `autosep models list` shows the known ones")


def local_folder(model_id: str) -> Path | None:
    """The folder this model's files are in when they are on this machine (a folder given, or a complete-enough
    copy in the Hugging Face cache or autosep's converted checkpoints); None when only a download would tell."""
    candidate = Path(model_id).expanduser()
    if candidate.is_dir():
        return candidate
    if model_id.count("/") != 1:
        return None
    for converted in sorted(converted_root(model_id).glob("*/model_index.json")):
        return converted.parent
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of diffusers and transformers
        return None
    for name in ("model_index.json", "main_config.json"):
        found = try_to_load_from_cache(model_id, name)
        if isinstance(found, str):
            return Path(found).parent
    return None


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def training_window(folder: Path) -> float | None:
    """The window length (seconds) the model in ``folder`` separates in by default, from its configs; None when
    the folder does not say (the loaded model will)."""
    if (folder / "main_config.json").is_file():  # Tango's published layout
        return LATENT_DIFFUSION_WINDOW_S
    index = _json(folder / "model_index.json")
    name = (index or {}).get("_class_name")
    if name in ("AudioLDM2Pipeline", "AudioLDMPipeline"):
        return LATENT_DIFFUSION_WINDOW_S
    if name == "StableAudio3Pipeline":
        return STABLE_AUDIO_3_WINDOW_S
    if name == "StableAudioPipeline":  # the DiT's training length: sample_size latent frames
        transformer, vae = _json(folder / "transformer" / "config.json"), _json(folder / "vae" / "config.json")
        try:
            hop = math.prod(int(r) for r in vae["downsampling_ratios"])
            return int(transformer["sample_size"]) * hop / int(vae["sampling_rate"])
        except (TypeError, KeyError, ValueError):
            return None
    return None
