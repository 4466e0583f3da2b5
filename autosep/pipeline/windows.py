"""Windowing for long recordings: the window grid at another rate, the cross-fade, and streaming overlap-add.

The separator works on model-length windows (10.24 s for AudioLDM2). Windows overlap; in each overlap the
outgoing window fades out while the incoming one fades in (raised cosine), and the weights of all windows
covering a sample always add up to exactly 1, so overlap-adding per-window pieces that add up to the input
gives back the input. Output is released as soon as no later window can touch it, which keeps memory flat
however long the recording is.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..waveforms import Window, fit_length


def scale_windows(windows: list[Window], ratio: float, total_frames: int) -> list[Window]:
    """The same windows at another sample rate (``ratio`` = new rate / old rate)."""
    return [
        Window(w.index, min(round(w.start * ratio), total_frames), min(round(w.end * ratio), total_frames))
        for w in windows
    ]


def _taper(length: int, fade_in: int, fade_out: int) -> np.ndarray:
    """1 in the middle, raised-cosine ramps at the edges; ramps never reach exactly 0 inside the window."""
    taper = np.ones(length, dtype=np.float64)
    if fade_in > 0:
        taper[:fade_in] = np.sin(0.5 * np.pi * (np.arange(fade_in) + 0.5) / fade_in) ** 2
    if fade_out > 0:
        taper[length - fade_out :] *= np.cos(0.5 * np.pi * (np.arange(fade_out) + 0.5) / fade_out) ** 2
    return taper


class CrossFade:
    """Per-window weights that form a partition of unity over the whole recording."""

    def __init__(self, windows: list[Window], fade_frames: int):
        self.windows = windows
        self.fade = max(0, int(fade_frames))

    def _taper(self, i: int) -> np.ndarray:
        # Computed on demand, not stored: one taper per window would grow with the recording's length.
        windows, w = self.windows, self.windows[i]
        # Fade only where a neighbour overlaps, and no longer than that overlap.
        fade_in = min(self.fade, windows[i - 1].end - w.start, w.length) if i > 0 else 0
        fade_out = min(self.fade, w.end - windows[i + 1].start, w.length) if i + 1 < len(windows) else 0
        return _taper(w.length, max(fade_in, 0), max(fade_out, 0))

    def weights(self, index: int) -> np.ndarray:
        """Window ``index``'s weights, float32 ``[length]``: its taper over the sum of all tapers there."""
        w = self.windows[index]
        total = np.zeros(w.length, dtype=np.float64)
        first = index
        while first > 0 and self.windows[first - 1].end > w.start:
            first -= 1
        last = index
        while last + 1 < len(self.windows) and self.windows[last + 1].start < w.end:
            last += 1
        for j in range(first, last + 1):
            other = self.windows[j]
            lo, hi = max(w.start, other.start), min(w.end, other.end)
            if lo < hi:
                total[lo - w.start : hi - w.start] += self._taper(j)[lo - other.start : hi - other.start]
        return (self._taper(index) / np.maximum(total, 1e-12)).astype(np.float32)


class OverlapAdd:
    """Accumulates weighted window pieces ``[length, *shape]`` and hands finished frames to ``sink`` in order.

    Only the span of the current window is held in memory. ``sink(block)`` receives float32 ``[frames, *shape]``.
    """

    def __init__(self, windows: list[Window], total_frames: int, shape: tuple[int, ...], fade_frames: int,
                 sink: Callable[[np.ndarray], None]):
        self.windows = windows
        self.total = total_frames
        self.shape = tuple(shape)
        self.sink = sink
        self.crossfade = CrossFade(windows, fade_frames)
        self._buffer = np.zeros((0, *self.shape), dtype=np.float32)
        self._buffer_start = 0  # frame index of _buffer[0]
        self._emitted = 0
        self._next = 0

    def add(self, index: int, piece: np.ndarray | None) -> None:
        """Add window ``index`` (windows must come in order). ``None`` means silence for this window."""
        if index != self._next:
            raise ValueError(f"windows must be added in order: expected {self._next}, got {index}")
        w = self.windows[index]
        self._next += 1
        end = w.end
        if end > self._buffer_start + len(self._buffer):
            grow = end - (self._buffer_start + len(self._buffer))
            self._buffer = np.concatenate([self._buffer, np.zeros((grow, *self.shape), dtype=np.float32)])
        if piece is not None:
            piece = fit_length(np.asarray(piece, dtype=np.float32), w.length)
            weights = self.crossfade.weights(index).reshape((-1,) + (1,) * len(self.shape))
            offset = w.start - self._buffer_start
            self._buffer[offset : offset + w.length] += piece * weights
        # Frames before the next window's start can no longer change.
        ready_until = self.windows[index + 1].start if index + 1 < len(self.windows) else self.total
        self._flush(ready_until)

    def _flush(self, until: int) -> None:
        until = min(until, self._buffer_start + len(self._buffer))
        count = until - self._buffer_start
        if count <= 0:
            return
        self.sink(self._buffer[:count])
        self._emitted = until
        self._buffer = self._buffer[count:].copy()
        self._buffer_start = until

    def finish(self) -> None:
        if self._next != len(self.windows):
            raise RuntimeError(f"only {self._next} of {len(self.windows)} windows were added")
        self._flush(self.total)
        if self._emitted < self.total:  # frames no window covered (plan_windows never leaves any): keep length
            self.sink(np.zeros((self.total - self._emitted, *self.shape), dtype=np.float32))
            self._emitted = self.total
