"""Turning the separator's generative stems into the stems that are written: one renderer per render mode.

``projected`` (default): the generative stems only *steer* soft time-frequency masks; the masks split the
ORIGINAL recording, at its own rate and per channel, among the sources, and whatever the masks do not assign
goes to ``residual``. The residual is written as the input minus the stems as stored, so stems + residual equal
the input sample for sample, and no stem holds anything that was not in the input. With AudioLDM's 16 kHz mono
stems the masks above 8 kHz are ~0 (that band ends up in ``residual``) and shared by all channels; Stable
Audio's 44.1 kHz stereo stems steer the full band, each channel by its own stems.

``generative``: the separator's raw output (its rate and channels, trimmed to the input's length), the paper's
setting.

A multi-channel separator (Stable Audio: stereo) hears a recording with its own channel count as it is and
returns stems per channel; any other recording goes through it as the channel average (one stem channel).

A renderer owns its output shape (rate, channels), its stem list (with the residual named), the window grid its
pieces are laid on, the piece it makes of one window, and how finished frames become file contents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..waveforms import Window, fit_length, resample
from .naming import RESIDUAL, unique_slugs
from .windows import scale_windows

if TYPE_CHECKING:
    from .recording import Recording

_EPS = 1e-12

# write(stem index, block [frames, channels]) -> the block as the file holds it (clipped, rounded)
WriteStem = Callable[[int, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StemPaths:
    """The files a recording's stems go to: one per source, in plan order, and the residual (or None)."""

    sources: list[Path]
    residual: Path | None

    @property
    def all(self) -> list[Path]:
        return self.sources + ([self.residual] if self.residual is not None else [])


class Renderer:
    """Base of the render modes; ``recording`` is the input, ``model_rate`` and ``model_channels`` what the
    separator works at."""

    name = ""
    has_residual = False

    def __init__(self, recording: "Recording", model_rate: int, model_channels: int = 1):
        self.recording = recording
        self.model_rate = int(model_rate)
        # The separator hears the recording's own channels when it has exactly as many, else their average.
        channels = int(model_channels)
        self.stem_channels = channels if channels > 1 and recording.channels == channels else 1

    @property
    def shape(self) -> tuple[int, int]:
        """(sample rate, channels) of the written stems."""
        raise NotImplementedError

    def paths(self, folder: Path, names: list[str], extension: str) -> StemPaths:
        """Safe, distinct file names for the sources (and the residual, which no source may take)."""
        sources = [folder / f"{slug}.{extension}" for slug in unique_slugs(names)]
        residual = folder / f"{RESIDUAL}.{extension}" if self.has_residual and names else None
        return StemPaths(sources, residual)

    def grid(self, windows: list[Window], fade: int) -> tuple[list[Window], int, int]:
        """The windows (at the input's rate) as laid on the output: (windows, total frames, cross-fade)."""
        raise NotImplementedError

    def piece_shape(self, sources: int) -> tuple[int, ...]:
        raise NotImplementedError

    def piece(self, original: np.ndarray, stems: np.ndarray) -> np.ndarray:
        """One window's output, ``[frames, *piece_shape]``, from the input window (``[frames, channels]``) and the
        separator's stems for it (``[sources, stem channels, model frames]``)."""
        raise NotImplementedError

    def emit(self, start: int, block: np.ndarray, write: WriteStem, sources: int) -> None:
        """Write finished frames ``block`` (``[frames, *piece_shape]``, from output frame ``start``)."""
        raise NotImplementedError


class ProjectedRenderer(Renderer):
    name = "projected"
    has_residual = True

    @property
    def shape(self) -> tuple[int, int]:
        return self.recording.sample_rate, self.recording.channels

    def grid(self, windows: list[Window], fade: int) -> tuple[list[Window], int, int]:
        return windows, self.recording.frames, fade

    def piece_shape(self, sources: int) -> tuple[int, ...]:
        return sources, self.recording.channels

    def piece(self, original: np.ndarray, stems: np.ndarray) -> np.ndarray:
        # The sources only: emit() computes the residual, once, from what the stem files hold.
        return project(original, stems, self.model_rate, self.recording.sample_rate)

    def emit(self, start: int, block: np.ndarray, write: WriteStem, sources: int) -> None:
        # The residual is the input minus the stems exactly as stored: with integer PCM the files add up to the
        # input bit for bit, whatever rounding happened in the masks and cross-fades.
        residual = self.recording.read(start, len(block)).astype(np.float64)
        for k in range(sources):
            residual -= write(k, block[:, k, :])  # what the file holds, clipping counted
        write(sources, residual.astype(np.float32))


class GenerativeRenderer(Renderer):
    name = "generative"

    @property
    def shape(self) -> tuple[int, int]:
        return self.model_rate, self.stem_channels

    def _frames(self) -> int:
        return round(self.recording.frames * self.model_rate / self.recording.sample_rate)

    def grid(self, windows: list[Window], fade: int) -> tuple[list[Window], int, int]:
        ratio = self.model_rate / self.recording.sample_rate
        return scale_windows(windows, ratio, self._frames()), self._frames(), round(fade * ratio)

    def piece_shape(self, sources: int) -> tuple[int, ...]:
        return sources, self.stem_channels

    def piece(self, original: np.ndarray, stems: np.ndarray) -> np.ndarray:
        return stems.transpose(2, 0, 1)  # [frames, sources, channels]

    def emit(self, start: int, block: np.ndarray, write: WriteStem, sources: int) -> None:
        for k in range(sources):
            write(k, block[:, k, :])


RENDERERS: dict[str, type[Renderer]] = {r.name: r for r in (ProjectedRenderer, GenerativeRenderer)}
RENDER_MODES = tuple(RENDERERS)


def stft_size(sample_rate: int) -> int:
    """About 64 ms (1024 samples at 16 kHz, like AudioLDM's mel front end), a power of two."""
    return int(2 ** round(math.log2(0.064 * sample_rate)))


def project(original: np.ndarray, stems: np.ndarray, stems_rate: int, sample_rate: int) -> np.ndarray:
    """Split ``original`` (float32 ``[frames, channels]`` at ``sample_rate``) by masks from ``stems``
    (float32 ``[sources, model_frames]`` or ``[sources, stem_channels, model_frames]`` at ``stems_rate``).

    Returns float32 ``[frames, sources, channels]``, one slice per source. The residual is not returned: it is
    computed once, where the stems are written, as the input minus the stems as stored.

    Mask per source s and bin (f, t): ``|S_s|^2 / (sum_k |S_k|^2 + |R|^2)``, a Wiener-like ratio where
    ``|R| = max(|X| - sum_k |S_k|, 0)`` is the part of the mixture's magnitude no stem explains. With one stem
    channel (the separator heard the channel average) X is that average and the same masks split every channel;
    with a stem channel per input channel (a stereo separator on a stereo recording) each channel's masks come
    from that channel's own stems and mixture, so a source panned left stays left. Where the stems explain the
    mixture the sources share it; where they do not (unexplained sounds, everything above the stems' Nyquist
    frequency) it stays in the residual.
    """
    import torch  # imported here: choosing a render mode must not pay for importing torch

    original = np.asarray(original, dtype=np.float32)
    stems = np.asarray(stems, dtype=np.float32)
    if stems.ndim == 2:
        stems = stems[:, None, :]
    frames, channels = original.shape
    sources, stem_channels = stems.shape[:2]
    if stem_channels not in (1, channels):
        raise ValueError(f"stems have {stem_channels} channels for a {channels}-channel recording: pass 1 or "
                         f"{channels}")
    out = np.zeros((frames, sources, channels), dtype=np.float32)
    active = [i for i in range(sources) if np.any(stems[i])]
    if active and frames > 1:
        n_fft = stft_size(sample_rate)
        hop = n_fft // 4
        window = torch.hann_window(n_fft)

        def stft(x: np.ndarray) -> torch.Tensor:
            return torch.stft(torch.from_numpy(np.ascontiguousarray(x)), n_fft, hop, window=window, center=True,
                              pad_mode="constant", return_complex=True)

        # Every channel's STFT once ([channels, F, T]); the STFT is linear, so the channel average's (what a mono
        # separator heard) is the average of these, with no second pass over the audio.
        specs = stft(original.T)

        def masks_for(stem_channel: int, mixture: torch.Tensor) -> torch.Tensor:
            steering = np.stack([fit_length(resample(stems[i, stem_channel], stems_rate, sample_rate), frames)
                                 for i in active])
            stem_mag = stft(steering).abs()  # [active, F, T]
            stem_power = stem_mag.square()
            unexplained = (mixture.abs() - stem_mag.sum(0)).clamp(min=0).square()
            return stem_power / (stem_power.sum(0) + unexplained + _EPS)  # [active, F, T], sums to <= 1

        shared = masks_for(0, specs.mean(0)) if stem_channels == 1 else None
        for c in range(channels):
            masks = shared if shared is not None else masks_for(c, specs[c])
            pieces = torch.istft(masks * specs[c].unsqueeze(0), n_fft, hop, window=window, center=True,
                                 length=frames)
            out[:, active, c] = pieces.numpy().T
    return out
