"""Model files: what a model autosep knows by name is (:class:`KnownModel`), where autosep keeps its own downloads
(checkpoints that are not on the Hugging Face hub, converted checkpoints), whether the run is offline, and the
message when a model cannot be had.

The separator's backbones and the taggers each declare their own :class:`KnownModel` entries; ``autosep models``
lists them all and ``autosep models download NAME`` fetches one ahead of an offline run. Hugging Face models stay in the
Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``); autosep's own folder holds the rest (``AUTOSEP_CACHE`` moves it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .errors import ModelNotAvailableError


@dataclass(frozen=True)
class KnownModel:
    alias: str  # short name users type ("audioldm2", "panns")
    role: str  # "separator" or "tagger"
    source: str  # Hugging Face repo id, or the download URL for files that are not on the hub
    size: str  # approximate download size, for humans ("1.1 GB")
    licence: str  # licence of the weights, e.g. "CC BY-NC-SA 4.0"
    description: str
    fetch: Callable[[], Path] | None = None  # custom download (non-hub files); None means snapshot_download(source)
    is_cached: Callable[[], bool] | None = None  # with ``fetch``: whether a complete copy is already on disk


def cache_dir() -> Path:
    """The autosep cache folder: ``$AUTOSEP_CACHE``, else ``$XDG_CACHE_HOME/autosep``, else ``~/.cache/autosep``."""
    configured = os.environ.get("AUTOSEP_CACHE")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autosep"


def offline_mode() -> bool:
    """True when the user asked for no network access (``HF_HUB_OFFLINE`` or ``AUTOSEP_OFFLINE`` set to 1/true)."""
    for name in ("AUTOSEP_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


def unavailable_because(error: BaseException) -> str:
    """Why a hub download did not happen, for a message: offline mode, or the download's own error."""
    if offline_mode():
        return "offline mode is on (HF_HUB_OFFLINE / AUTOSEP_OFFLINE)"
    return f"the download failed ({error})"


def converted_root(source: str) -> Path:
    """autosep's folder for checkpoints it converted from ``source`` (a hub id, or ``local-<hash>`` for a folder)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "--", source).strip("-")
    return cache_dir() / "converted" / safe


def model_unavailable(what: str, model_id: str, error: BaseException, alias: str, option: str,
                      instead: str = "") -> ModelNotAvailableError:
    """The error for a ``from_pretrained`` that found no model: ``what`` (e.g. "tagger model") ``model_id`` is not
    a model folder / not cached while offline / could not be downloaded, and what to do: download ``alias``, pass
    ``option`` a local folder, or ``instead``."""
    from .errors import ModelNotAvailableError

    where = "is not a model folder" if Path(model_id).exists() else (
        "is not in the Hugging Face cache and offline mode is on" if offline_mode() else "could not be downloaded")
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else repr(error)
    fallback = f", or {instead}" if instead else ""
    return ModelNotAvailableError(
        f"{what} {model_id} {where} ({first}). Fetch it while online with `autosep models download {alias}` "
        f"(or `hf download {model_id}`), or pass {option} with a local folder that holds it{fallback}.")


def resolve_model_id(model: str | Path | None, default: str) -> str:
    """A local folder (as an absolute path) or a hub id; ``None`` or blank means ``default``."""
    if model is None or str(model).strip() == "":
        return default
    path = Path(str(model)).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def load_pretrained(load: Callable[..., Any], model_id: str, what: str, alias: str, option: str,
                    instead: str = "", **kwargs: Any) -> Any:
    """``load(model_id, **kwargs)`` (a ``from_pretrained``), with "not found" turned into :func:`model_unavailable`'s
    error. The Hugging Face cache and ``HF_HUB_OFFLINE`` are honoured by transformers itself."""
    try:
        return load(model_id, **kwargs)
    except (OSError, ValueError) as exc:
        raise model_unavailable(what, model_id, exc, alias, option, instead) from None
