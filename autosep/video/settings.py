"""The settings of the video-aware steps, checked once when built (a bad value is a usage error, exit 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import SettingsError
from .frames import FRAME_EVERY_S
from .onscreen import ON_SCREEN_THRESHOLD


@dataclass(frozen=True)
class VisualSettings:
    """On-screen evidence (``enabled``, on by default; it only runs for inputs with a video stream) and objects
    described in words (``describe``), each with the model that does it (None: the default checkpoint)."""

    enabled: bool = True
    model: str | None = None  # --visual-model: CLIP or SigLIP, hub id or local folder
    threshold: float = ON_SCREEN_THRESHOLD
    every_s: float = FRAME_EVERY_S
    describe: tuple[str, ...] = ()
    describe_model: str | None = None  # --describe-model: an image-text-to-text model

    def __post_init__(self) -> None:
        describe = (self.describe,) if isinstance(self.describe, str) else tuple(self.describe or ())
        describe = tuple(dict.fromkeys(" ".join(str(d).split()) for d in describe))
        if any(not d for d in describe):
            raise SettingsError("--describe needs a description of something on screen", "--describe")
        object.__setattr__(self, "describe", describe)
        if not _number(self.threshold) or not 0 < float(self.threshold) < 1:
            raise SettingsError(f"--visual-threshold must be between 0 and 1, got {self.threshold!r}",
                                "--visual-threshold")
        if not _number(self.every_s) or float(self.every_s) <= 0:
            raise SettingsError(f"the frame interval must be above 0 seconds, got {self.every_s!r}")

    @property
    def active(self) -> bool:
        """Whether a video input is looked at at all."""
        return self.enabled or bool(self.describe)


def _number(value) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False
