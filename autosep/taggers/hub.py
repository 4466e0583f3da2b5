"""Loading Hugging Face models for the taggers, with a clear error when a model cannot be had."""

from __future__ import annotations

from typing import Any, Callable

from ..model_files import load_pretrained, resolve_model_id

__all__ = ["from_pretrained", "resolve_model_id"]


def from_pretrained(load: Callable[..., Any], model_id: str, alias: str, **kwargs) -> Any:
    """``load(model_id, **kwargs)`` (a ``from_pretrained``), turning "not found" into ModelNotAvailableError that
    names ``--tagger-model`` (:func:`autosep.model_files.load_pretrained`)."""
    return load_pretrained(load, model_id, "tagger model", alias, "--tagger-model", **kwargs)
