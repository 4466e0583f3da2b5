"""Audio taggers, AudioSet metadata and the source planner.

```python
from . import load_tagger, plan_from_result
tagger = load_tagger("panns")                       # load once, reuse
result = tagger.tag(wave, sample_rate)              # TagResult: probs [windows, classes], labels, window_times
plan = plan_from_result(result)                     # plan_sources with the tagger's threshold and window length
```
Model modules are imported only when their tagger is loaded, so importing this package never imports
transformers or ``panns_inference``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..known_models import KnownModel
from .base import Tagger, TagResult
from .planner import plan_from_result, plan_sources
from .settings import (
    DEFAULT_MAX_SOURCES, DEFAULT_TAGGER, DEFAULT_THRESHOLD, TAGGER_NAMES, PlanningSettings, TaggingSettings,
)
from .sources import OPEN_SET_PREFIX, Source, describe_label

if TYPE_CHECKING:
    import torch

PlannedSource = Source  # the planner's output is the one Source type (origin "tagged")


def _fetch_panns() -> Path:
    from .panns import fetch_cnn14

    return fetch_cnn14()


def _panns_is_cached() -> bool:
    from .panns import cnn14_is_cached

    return cnn14_is_cached()


KNOWN_MODELS: list[KnownModel] = [
    KnownModel(
        alias="panns", role="tagger",
        source="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
        size="327 MB", licence="CC BY 4.0",
        description="PANNs Cnn14 AudioSet tagger (mAP 0.431), 32 kHz; the default tagger",
        fetch=_fetch_panns,
        is_cached=_panns_is_cached,
    ),
    KnownModel(
        alias="ast", role="tagger", source="MIT/ast-finetuned-audioset-10-10-0.4593", size="346 MB",
        licence="BSD-3-Clause", description="Audio Spectrogram Transformer AudioSet tagger (mAP 0.459), 16 kHz",
    ),
    KnownModel(
        alias="clap", role="tagger", source="laion/clap-htsat-unfused", size="615 MB", licence="Apache-2.0",
        description="LAION CLAP zero-shot tagger over AudioSet names or your own vocabulary, 48 kHz",
    ),
    KnownModel(
        alias="audio-lm", role="tagger", source="Qwen/Qwen2-Audio-7B-Instruct", size="16.8 GB",
        licence="Apache-2.0", description="Qwen2-Audio instruction model asked for the sound sources (open set)",
    ),
]


def load_tagger(
    name: str = DEFAULT_TAGGER,
    model: str | Path | None = None,
    device: "str | torch.device" = "auto",
    vocab: str | Path | Sequence[str] | None = None,
) -> Tagger:
    """Load a tagger by name (``TAGGER_NAMES``); ``model`` is a hub id, local folder or checkpoint path.

    Raises :class:`autosep.errors.ModelNotAvailableError` when the model is neither cached nor downloadable.
    ``vocab`` (a file with one phrase per line, or a list) is for ``clap`` only.
    """
    return load_tagger_for(TaggingSettings(name, model, vocab), device)


def load_tagger_for(settings: TaggingSettings, device: "str | torch.device" = "auto") -> Tagger:
    """Load the tagger ``settings`` name (already checked when they were built)."""
    key, model, vocab = settings.tagger, settings.model, settings.vocab
    if key == "panns":
        from .panns import PannsTagger

        return PannsTagger(model, device)
    if key == "ast":
        from .ast import ASTTagger

        return ASTTagger(model, device)
    if key == "clap":
        from .clap import ClapTagger

        return ClapTagger(model, device, vocab)
    from .audio_lm import AudioLMTagger

    return AudioLMTagger(model, device)


__all__ = [
    "DEFAULT_MAX_SOURCES", "DEFAULT_TAGGER", "DEFAULT_THRESHOLD", "KNOWN_MODELS", "OPEN_SET_PREFIX",
    "PlannedSource", "PlanningSettings", "Source", "TAGGER_NAMES", "TagResult", "Tagger", "TaggingSettings",
    "describe_label", "load_tagger", "load_tagger_for", "plan_from_result", "plan_sources",
]
