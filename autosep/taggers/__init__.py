"""Audio taggers, AudioSet metadata and the source planner.

```python
from . import load_tagger, plan_from_result
tagger = load_tagger("panns")                       # load once, reuse
result = tagger.tag(wave, sample_rate)              # TagResult: probs [windows, classes], labels, window_times
plan = plan_from_result(result)                     # plan_sources with the tagger's threshold and window length
```
A tagger is a :class:`Tagger` subclass, registered by name when it is defined (:mod:`.registry`). Model
libraries are imported only when a tagger is built, so importing this package never imports torch,
transformers or ``panns_inference``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..model_files import KnownModel
from . import registry
from .base import Tagger, TagResult, WindowGrid
from .planner import plan_from_result, plan_sources
from .settings import (
    DEFAULT_MAX_SOURCES, DEFAULT_TAGGER, DEFAULT_THRESHOLD, TAGGER_NAMES, PlanningSettings, TaggingSettings,
)
from .sources import OPEN_SET_PREFIX, Source, describe_label

if TYPE_CHECKING:
    import torch

PlannedSource = Source  # the planner's output is the one Source type (origin "tagged")


KNOWN_MODELS: list[KnownModel] = registry.known_models()  # each tagger class declares its weights


def load_tagger(
    name: str = DEFAULT_TAGGER,
    model: str | Path | None = None,
    device: "str | torch.device" = "auto",
    vocab: str | Path | Sequence[str] | None = None,
) -> Tagger:
    """Load a tagger by name or alias (:mod:`.registry`); ``model`` is a hub id, local folder or checkpoint path.

    Raises :class:`autosep.errors.ModelNotAvailableError` when the model is neither cached nor downloadable.
    ``vocab`` (a file with one phrase per line, or a list) is for ``clap`` only.
    """
    return load_tagger_for(TaggingSettings(name, model, vocab), device)


def load_tagger_for(settings: TaggingSettings, device: "str | torch.device" = "auto") -> Tagger:
    """Load the tagger ``settings`` name (already checked when they were built), through the registry."""
    return registry.tagger_class(settings.tagger).from_settings(settings, device)


__all__ = [
    "DEFAULT_MAX_SOURCES", "DEFAULT_TAGGER", "DEFAULT_THRESHOLD", "KNOWN_MODELS", "OPEN_SET_PREFIX",
    "PlannedSource", "PlanningSettings", "Source", "TAGGER_NAMES", "TagResult", "Tagger", "TaggingSettings", "WindowGrid",
    "describe_label", "load_tagger", "load_tagger_for", "plan_from_result", "plan_sources", "registry",
]
