"""What every tagger shares: the result type and windowed scoring over a whole recording.

A tagger scores fixed windows of its own length with a hop (half a window by default), so a source audible
for only part of a long recording is found and located. The last window is aligned to the end of the
signal, so every sample is scored and no window is mostly padding. A recording shorter than one window is
scored as a single window padded with digital silence (models cannot be trusted with less: Cnn14's pooling
fails under about 0.3 s); its window time still ends where the recording does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..model_files import KnownModel
from ..waveforms import fit_length, plan_windows, resample, to_mono
from . import registry

if TYPE_CHECKING:
    import torch

    from .settings import TaggingSettings


@dataclass(frozen=True)
class WindowGrid:
    """A tagger's window length and hop in seconds. ``WindowGrid.of`` is the one place the hop's default (half a
    window) is decided: the tagger's own scoring and the pipeline's block tagging both read the grid from here."""

    window_seconds: float
    hop_seconds: float

    @classmethod
    def of(cls, tagger: Any) -> "WindowGrid":
        """The grid of a tagger class or instance (``window_seconds``, ``hop_seconds``; None: half a window)."""
        window = float(getattr(tagger, "window_seconds", None) or 10.0)
        hop = getattr(tagger, "hop_seconds", None)
        return cls(window, float(hop) if hop else window / 2)

    def frames(self, sample_rate: int) -> tuple[int, int]:
        """Window and hop in frames at ``sample_rate`` (at least one each)."""
        return (max(1, int(round(self.window_seconds * sample_rate))),
                max(1, int(round(self.hop_seconds * sample_rate))))

    def describe(self) -> str:
        return f"{self.window_seconds:g} s windows every {self.hop_seconds:g} s"


@dataclass
class TagResult:
    """Per-window class probabilities: ``probs[w, c]`` is the probability that ``labels[c]`` is audible in
    ``window_times[w]`` (seconds). Probabilities are independent per class (sigmoid), never a softmax."""

    probs: np.ndarray
    labels: list[str]
    window_times: list[tuple[float, float]]
    tagger: str = ""
    model_id: str = ""
    default_threshold: float | None = None  # the tagger's clip-level operating point (see planner.resolve_threshold)
    notes: list[str] = field(default_factory=list)  # warnings worth showing the user (e.g. unparseable LM text)
    window_seconds: float | None = None  # the tagger's window length: how many windows one clip pools

    @property
    def duration(self) -> float:
        return max((end for _, end in self.window_times), default=0.0)

    def top(self, count: int = 10) -> list[tuple[str, float]]:
        """The ``count`` highest classes by file-level score (max over windows)."""
        if self.probs.size == 0:
            return []
        best = self.probs.max(axis=0)
        order = np.argsort(-best, kind="stable")[:count]
        return [(self.labels[i], float(best[i])) for i in order]


class Tagger(ABC):
    """Base for all taggers: subclasses set the class attributes and implement ``score_windows``.

    A subclass with a ``name`` is registered when it is defined (:mod:`autosep.taggers.registry`): ``--tagger``
    accepts its name and ``aliases``, ``autosep models`` lists its ``weights``, and ``load_tagger`` builds it
    through ``from_settings``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    weights: ClassVar[KnownModel | None] = None  # the default weights, for `autosep models`
    takes_vocab: ClassVar[bool] = False  # whether the tagger scores a vocabulary of the user's own (--vocab)
    sample_rate: int = 16000
    window_seconds: float = 10.0
    hop_seconds: float | None = None  # None: half a window
    batch_size: int = 4
    default_threshold: float = 0.25
    model_id: str = ""
    labels: list[str] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            registry.register(cls)

    @classmethod
    def from_settings(cls, settings: "TaggingSettings", device: "str | torch.device" = "auto") -> "Tagger":
        """Build the tagger ``settings`` ask for (a tagger with more options than its weights overrides this)."""
        return cls(settings.model, device)

    @property
    def grid(self) -> WindowGrid:
        """This tagger's window grid (a loaded model may have set its window from its feature extractor)."""
        return WindowGrid.of(self)

    @abstractmethod
    def score_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """Probabilities ``[len(windows), len(self.labels)]`` for mono windows at ``self.sample_rate``."""

    def windows(self, wave: np.ndarray, sample_rate: int) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
        """Mono windows at ``self.sample_rate``, each exactly one window long, and their times in seconds.

        A recording shorter than a window becomes one window padded with silence; every time is clipped to
        the recording's real duration, so the padding is never reported as audio.
        """
        mono = resample(to_mono(wave), int(sample_rate), self.sample_rate)
        duration = np.shape(wave)[0] / int(sample_rate)
        window, hop = self.grid.frames(self.sample_rate)
        grid = plan_windows(len(mono), window, hop)
        pieces = [fit_length(mono[w.start:w.end], window) for w in grid]
        times = [(min(w.start / self.sample_rate, duration), min(w.end / self.sample_rate, duration)) for w in grid]
        return pieces, times

    def tag(self, wave: np.ndarray, sample_rate: int) -> TagResult:
        """Score ``wave`` (``[frames]`` or ``[frames, channels]`` at ``sample_rate``) window by window."""
        pieces, times = self.windows(wave, sample_rate)
        rows: list[np.ndarray] = []
        for i in range(0, len(pieces), self.batch_size):
            batch = pieces[i:i + self.batch_size]
            scores = np.asarray(self.score_windows(batch), dtype=np.float32)
            if scores.shape != (len(batch), len(self.labels)):
                raise RuntimeError(f"{self.name}: scores of shape {scores.shape}, expected ({len(batch)}, "
                                   f"{len(self.labels)})")
            rows.append(scores)
        probs = np.concatenate(rows, axis=0) if rows else np.zeros((0, len(self.labels)), dtype=np.float32)
        return TagResult(probs, list(self.labels), times, self.name, self.model_id, self.default_threshold,
                         self.take_notes(), window_seconds=self.grid.window_seconds)

    def take_notes(self) -> list[str]:
        """Warnings collected while scoring (cleared once read)."""
        notes, self._notes = list(getattr(self, "_notes", [])), []
        return notes
