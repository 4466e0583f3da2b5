"""Loading Hugging Face models for the taggers, with a clear error when a model cannot be had."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..model_files import model_unavailable


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
        raise model_unavailable("tagger model", model_id, exc, alias, "--tagger-model") from None
