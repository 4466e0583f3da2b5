"""Typed settings for tagging and for planning, each checked once, when it is built.

``TaggingSettings`` says which tagger to load (``load_tagger`` builds one from its arguments, so the checks
live here only); ``PlanningSettings`` holds the planner's knobs, checked before any model loads, and is passed to
the planner as its keyword arguments. A threshold left unset is the planner's to choose from the tagger
(``planner.resolve_threshold``, the one place that decides it). A bad value raises
:class:`autosep.errors.SettingsError` (a usage error, and a ``ValueError``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from . import registry

TAGGER_NAMES: tuple[str, ...] = registry.tagger_names()  # the built-in taggers, as their classes register
DEFAULT_TAGGER = "panns"
DEFAULT_THRESHOLD = 0.25
DEFAULT_MAX_SOURCES = 4


def parse_hierarchy(hierarchy: str) -> tuple[str, int]:
    """``"leaf"``/``"none"`` -> (mode, 0); ``"level:N"`` -> ("level", N); anything else is a SettingsError."""
    text = str(hierarchy).strip().lower()
    if text in ("leaf", "none"):
        return text, 0
    match = re.fullmatch(r"level:(\d+)", text)
    if match and int(match.group(1)) >= 1:
        return "level", int(match.group(1))
    raise SettingsError(f"hierarchy must be 'leaf', 'none' or 'level:N' with N >= 1, got {hierarchy!r}",
                        "--hierarchy")


@dataclass(frozen=True)
class TaggingSettings:
    """Which tagger scores the recording: a registered name or alias (:mod:`.registry`), its weights, and (for a
    tagger that ``takes_vocab``, clap) a vocabulary."""

    tagger: str = DEFAULT_TAGGER
    model: str | Path | None = None  # hub id, local folder or checkpoint; None: the tagger's default
    vocab: str | Path | Sequence[str] | None = None  # clap only: a file with one phrase per line, or a list

    def __post_init__(self) -> None:
        key = registry.canonical_name(self.tagger)
        object.__setattr__(self, "tagger", key)
        if self.vocab is not None and not registry.tagger_class(key).takes_vocab:
            takers = [n for n, cls in registry.tagger_classes().items() if cls.takes_vocab]
            raise SettingsError("--vocab (a vocabulary of your own phrases) is only used by --tagger "
                                + " or ".join(takers), "--vocab")


@dataclass(frozen=True)
class PlanningSettings:
    """The planner's knobs (rules: :mod:`autosep.taggers.planner`)."""

    threshold: float | None = None  # presence threshold on per-window probabilities; None: the tagger's own
    max_sources: int | None = DEFAULT_MAX_SOURCES  # None: no limit
    min_active: float | None = None  # seconds a class must be active in total; None: any one window
    hierarchy: str = "leaf"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    prompts: Mapping[str, str] | None = field(default=None, hash=False)  # prompt overrides by name, mid or phrase

    def __post_init__(self) -> None:
        if self.threshold is not None:
            threshold = _number(self.threshold, "threshold", "--threshold")
            if not 0 <= threshold <= 1:
                raise SettingsError(f"threshold must be a probability from 0 to 1, got {self.threshold!r}",
                                    "--threshold")
            object.__setattr__(self, "threshold", threshold)
        if self.max_sources is not None:
            if isinstance(self.max_sources, bool) or int(self.max_sources) != self.max_sources \
                    or self.max_sources < 0:
                raise SettingsError(f"max_sources must be a whole number >= 0, got {self.max_sources!r}",
                                    "--max-sources")
            object.__setattr__(self, "max_sources", int(self.max_sources))
        if self.min_active is not None and _number(self.min_active, "min_active", "--min-active") < 0:
            raise SettingsError(f"min_active must be >= 0 seconds, got {self.min_active!r}", "--min-active")
        parse_hierarchy(self.hierarchy)
        for name in ("include", "exclude"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value or ()))

    @property
    def hierarchy_mode(self) -> tuple[str, int]:
        return parse_hierarchy(self.hierarchy)

    def as_dict(self) -> dict[str, Any]:
        """For the manifest: the knobs as given (prompt overrides included)."""
        return {"threshold": self.threshold, "max_sources": self.max_sources, "min_active": self.min_active,
                "hierarchy": self.hierarchy, "include": list(self.include), "exclude": list(self.exclude),
                "prompts": None if self.prompts is None else dict(self.prompts)}


def _number(value: Any, name: str, option: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number, got {value!r}", option) from None
    if not math.isfinite(number):
        raise SettingsError(f"{name} must be a finite number, got {value!r}", option)
    return number
