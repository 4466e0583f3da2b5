"""ZeroSep separation on AudioLDM2 / AudioLDM (diffusers pipelines) and Tango / Tango 2 (training-free, text-queried).

``ZeroSep`` and ``SeparationResult`` are imported on first use, so listing models or building prompts does not
pay for importing torch and diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .loading import DEFAULT_MODEL, KNOWN_MODELS, MODEL_ALIASES, resolve_model_name
from .prompts import inversion_prompts
from .settings import INVERSION_PROMPT_CHOICES, INVERSIONS, SeparationSettings

if TYPE_CHECKING:
    from .zerosep import SeparationResult, ZeroSep

__all__ = [
    "DEFAULT_MODEL",
    "INVERSIONS",
    "INVERSION_PROMPT_CHOICES",
    "KNOWN_MODELS",
    "MODEL_ALIASES",
    "SeparationResult",
    "SeparationSettings",
    "ZeroSep",
    "inversion_prompts",
    "resolve_model_name",
]


def __getattr__(name: str) -> Any:
    if name in ("ZeroSep", "SeparationResult"):
        from . import zerosep

        return getattr(zerosep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
