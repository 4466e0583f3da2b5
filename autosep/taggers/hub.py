"""Loading Hugging Face models for the taggers, with a clear error when a model cannot be had."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import ModelNotAvailableError
from ..paths import offline_mode


def resolve_model_id(model: str | Path | None, default: str) -> str:
    """A local folder (as an absolute path) or a hub id; ``None`` means ``default``."""
    if model is None or str(model).strip() == "":
        return default
    path = Path(str(model)).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def from_pretrained(load: Callable[..., Any], model_id: str, alias: str, **kwargs) -> Any:
    """``load(model_id, **kwargs)`` (a ``from_pretrained``), turning "not found" into ModelNotAvailableError.

    The Hugging Face cache and ``HF_HUB_OFFLINE`` are honoured by transformers itself.
    """
    try:
        return load(model_id, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        where = "is not a model folder" if Path(model_id).exists() else (
            "is not in the Hugging Face cache and offline mode is on" if offline_mode()
            else "could not be downloaded"
        )
        raise ModelNotAvailableError(
            f"tagger model {model_id} {where} ({str(exc).strip().splitlines()[0][:200] if str(exc) else exc!r}). "
            f"Fetch it while online with `autosep models download {alias}` (or `hf download {model_id}`), "
            f"or pass --tagger-model with a local folder that holds it."
        ) from None
