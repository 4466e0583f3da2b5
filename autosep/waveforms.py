"""Sample arrays and frame grids, shared by the taggers and the pipeline: resampling, mono mixdown, length
fitting and the window grid.

Rule: one implementation of each. A tagger's scoring windows and the separator's windows are laid out by the
same :func:`plan_windows` (the last window moved back to end at the signal's end, so every window is full
length and no window is mostly padding); lengths are fitted by :func:`fit_length` (resampling can be off by a
frame). Only numpy and soxr are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample along the first axis (``[frames]`` or ``[frames, channels]``) with soxr, high quality."""
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    out = soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """``[frames]`` or ``[frames, channels]`` -> float32 ``[frames]`` (the channel average)."""
    data = np.asarray(wave, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    elif data.ndim != 1:
        raise ValueError(f"expected a waveform [frames] or [frames, channels], got shape {data.shape}")
    return np.ascontiguousarray(data)


def fit_length(piece: np.ndarray, length: int) -> np.ndarray:
    """``piece`` trimmed, or followed by digital silence, to ``length`` frames along the first axis."""
    if len(piece) == length:
        return piece
    if len(piece) > length:
        return piece[:length]
    pad = np.zeros((length - len(piece), *piece.shape[1:]), dtype=piece.dtype)
    return np.concatenate([piece, pad])


@dataclass(frozen=True)
class Window:
    index: int
    start: int  # first frame
    end: int  # one past the last frame

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_windows(total_frames: int, window_frames: int, hop_frames: int) -> list[Window]:
    """Windows of ``window_frames`` every ``hop_frames``; the last one is moved back to end exactly at
    ``total_frames`` (so every window is full length) unless the signal is shorter than one window."""
    if total_frames <= 0:
        return []
    if window_frames <= 0 or hop_frames <= 0:
        raise ValueError("window and hop must be positive")
    hop_frames = min(hop_frames, window_frames)
    if total_frames <= window_frames:
        return [Window(0, 0, total_frames)]
    starts = list(range(0, total_frames - window_frames, hop_frames))
    last = total_frames - window_frames
    if last > starts[-1]:
        starts.append(last)
    return [Window(i, s, s + window_frames) for i, s in enumerate(starts)]
