"""The separation settings a :class:`~autosep.separator.ZeroSep` binds when it loads, checked once when built.

``SeparationSettings`` holds what every separation call uses: the inversion, the number of diffusion steps, the
guidance weight, the inversion-prompt mode, the seed and the number of passes. A separator binds one set at load
(``ZeroSep.from_pretrained(..., settings=...)``); a call may still override single fields by keyword
(``zs.separate(wave, sources, steps=10)``), which builds a new, checked set. A bad value raises
:class:`autosep.errors.SettingsError` (a ``ValueError``) that says what to pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from ..errors import SettingsError

INVERSIONS = ("ddpm", "ddim")  # edit-friendly DDPM inversion (default) and deterministic DDIM inversion
INVERSION_PROMPT_CHOICES = ("others", "null")


def check_inversion(inversion: str) -> str:
    name = str(inversion).strip().lower()
    if name not in INVERSIONS:
        raise SettingsError(f"unknown inversion {inversion!r}: pass 'ddpm' (default, edit-friendly) or 'ddim'",
                            "--inversion")
    return name


def check_inv_prompt(inv_prompt: str) -> str:
    choice = str(inv_prompt).strip().lower() if isinstance(inv_prompt, str) else inv_prompt
    if choice not in INVERSION_PROMPT_CHOICES:
        raise SettingsError(f"unknown inv_prompt {inv_prompt!r}: pass one of {', '.join(INVERSION_PROMPT_CHOICES)}",
                            "--inv-prompt")
    return choice


@dataclass(frozen=True)
class SeparationSettings:
    inversion: str = "ddpm"  # "ddpm" (edit-friendly, default) or "ddim"
    steps: int = 50  # diffusion steps, for the inversion and again for the denoising
    guidance: float = 1.0  # guidance weight w; [0, 1] is highlighting; at 1 the unconditional branch is never run
    inv_prompt: str = "others"  # c_inv: the other sources' prompts, or "null" (the empty prompt)
    seed: int = 42
    passes: int = 1  # iterative separation: each stem is separated again as its own mixture passes - 1 times

    def __post_init__(self) -> None:
        inversion = check_inversion(self.inversion)
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise SettingsError(f"steps must be a whole number of at least 1 (50 is the default), got {self.steps!r}",
                                "--steps")
        try:
            guidance = float(self.guidance)
        except (TypeError, ValueError):
            guidance = math.nan
        if not math.isfinite(guidance) or guidance < 0:
            raise SettingsError(f"guidance must be a number >= 0 (1.0 is ZeroSep's default), got {self.guidance!r}",
                                "--guidance")
        inv_prompt = check_inv_prompt(self.inv_prompt)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise SettingsError(f"seed must be a whole number (42 is the default), got {self.seed!r}", "--seed")
        if isinstance(self.passes, bool) or not isinstance(self.passes, (int, np.integer)) or self.passes < 1:
            raise SettingsError(f"passes must be a whole number >= 1 (1, a single separation, is the default), got "
                                f"{self.passes!r}", "--passes")
        for name, value in (("inversion", inversion), ("steps", int(self.steps)), ("guidance", guidance),
                            ("inv_prompt", inv_prompt), ("seed", int(self.seed)), ("passes", int(self.passes))):
            object.__setattr__(self, name, value)

    def with_overrides(self, **overrides) -> "SeparationSettings":
        """These settings with the fields given (not None) replaced, checked again."""
        given = {name: value for name, value in overrides.items() if value is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown separation settings: {', '.join(sorted(unknown))}")
        return replace(self, **given) if given else self


def check_batch_size(batch_size: int | None) -> int | None:
    """Samples per UNet forward: None (a window's sources at once) or a whole number >= 1."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise SettingsError(f"batch_size must be a positive number of samples per UNet forward, got {batch_size}",
                            "--batch-size")
    return int(batch_size)
