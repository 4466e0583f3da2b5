"""ZeroSep separation on AudioLDM2 / AudioLDM through diffusers (training-free, text-queried)."""

from __future__ import annotations

from .models import DEFAULT_MODEL, KNOWN_MODELS, MODEL_ALIASES, resolve_model_name
from .prompts import INVERSION_PROMPT_CHOICES, inversion_prompts
from .inversion import INVERSIONS
from .zerosep import SeparationResult, ZeroSep

__all__ = [
    "DEFAULT_MODEL",
    "INVERSIONS",
    "INVERSION_PROMPT_CHOICES",
    "KNOWN_MODELS",
    "MODEL_ALIASES",
    "SeparationResult",
    "ZeroSep",
    "inversion_prompts",
    "resolve_model_name",
]
