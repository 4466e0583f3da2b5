"""What can be known about a separator model before it loads: whether its name can be one at all, where its
files already are, and the window length it was trained on, read from its config files.

Rule of this module: nothing here downloads, imports torch or diffusers, or reads weights; a question it cannot
answer from names and local files answers ``None`` and is settled when the model loads. The command line asks
it first, so a typo in ``--model`` or an overlap longer than the model's window is refused in a second, not
after minutes of loading.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelNotAvailableError
from ..model_files import converted_root
from .backbones import family_for_folder, family_for_repo
from .backbones.audioldm import MelBackbone

# AudioLDM, AudioLDM2 and Tango were trained on 10.24 s clips (their backbone's WINDOW).
LATENT_DIFFUSION_WINDOW_S = MelBackbone.WINDOW


def published_window(model_id: str) -> float | None:
    """The default window of a published checkpoint named by its hub id, before any of its files are here."""
    family = family_for_repo(model_id)
    return None if family is None else family.known_window()


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


def training_window(folder: Path) -> float | None:
    """The window length (seconds) the model in ``folder`` separates in by default, from its configs (asked of
    the family that loads the folder); None when the folder does not say (the loaded model will)."""
    family = family_for_folder(folder)
    return None if family is None else family.known_window(folder)
