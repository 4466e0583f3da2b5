"""ZeroSep separation on every registered diffusion backbone: AudioLDM2 / AudioLDM (diffusers), Tango / Tango 2
(training-free, text-queried, rebuilt from diffusers classes), Stable Audio Open and Stable Audio 3 (full-band
44.1 kHz stereo). A family is one module in :mod:`autosep.separator.backbones`.

``ZeroSep`` and ``SeparationResult`` are imported on first use, so listing models or building prompts does not
pay for importing torch and diffusers. ``DEFAULT_MODEL``, ``KNOWN_MODELS`` and ``MODEL_ALIASES`` are read from the
backbone registry on each access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import loading
from .loading import default_model, known_models, model_aliases, resolve_model_name
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
    "default_model",
    "inversion_prompts",
    "known_models",
    "model_aliases",
    "resolve_model_name",
]


def __getattr__(name: str) -> Any:
    if name in ("ZeroSep", "SeparationResult"):
        from . import zerosep

        return getattr(zerosep, name)
    if name in ("DEFAULT_MODEL", "KNOWN_MODELS", "MODEL_ALIASES"):
        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
