"""Turning the separator's generative stems into the stems that are written.

``projected`` (default): the generative stems only *steer* soft time-frequency masks; the masks split the
ORIGINAL recording, at its own rate and per channel, among the sources, and whatever the masks do not assign
goes to ``residual``. The residual is computed as the input minus the stems, so stems + residual equal the input
sample for sample (float error only), and no stem holds anything that was not in the input. With AudioLDM's
16 kHz mono stems the masks above 8 kHz are ~0 (that band ends up in ``residual``) and shared by all channels;
Stable Audio's 44.1 kHz stereo stems steer the full band, each channel by its own stems.

``generative``: the separator's raw output (its rate and channels), the paper's setting.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..frames import resample
from .windows import fit_length

RENDER_MODES = ("projected", "generative")

_EPS = 1e-12


def stft_size(sample_rate: int) -> int:
    """About 64 ms (1024 samples at 16 kHz, like AudioLDM's mel front end), a power of two."""
    return int(2 ** round(math.log2(0.064 * sample_rate)))


def project(original: np.ndarray, stems: np.ndarray, stems_rate: int, sample_rate: int) -> np.ndarray:
    """Split ``original`` (float32 ``[frames, channels]`` at ``sample_rate``) by masks from ``stems``
    (float32 ``[sources, model_frames]`` or ``[sources, stem_channels, model_frames]`` at ``stems_rate``).

    Returns float32 ``[frames, sources + 1, channels]``: one slice per source, then the residual, which is
    exactly ``original`` minus the sources.

    Mask per source s and bin (f, t): ``|S_s|^2 / (sum_k |S_k|^2 + |R|^2)``, a Wiener-like ratio where
    ``|R| = max(|X| - sum_k |S_k|, 0)`` is the part of the mixture's magnitude no stem explains. With one stem
    channel (the separator heard the channel average) X is that average and the same masks split every channel;
    with a stem channel per input channel (a stereo separator on a stereo recording) each channel's masks come
    from that channel's own stems and mixture, so a source panned left stays left. Where the stems explain the
    mixture the sources share it; where they do not (unexplained sounds, everything above the stems' Nyquist
    frequency) it stays in the residual.
    """
    original = np.asarray(original, dtype=np.float32)
    stems = np.asarray(stems, dtype=np.float32)
    if stems.ndim == 2:
        stems = stems[:, None, :]
    frames, channels = original.shape
    sources, stem_channels = stems.shape[:2]
    if stem_channels not in (1, channels):
        raise ValueError(f"stems have {stem_channels} channels for a {channels}-channel recording: pass 1 or "
                         f"{channels}")
    out = np.zeros((frames, sources + 1, channels), dtype=np.float32)
    active = [i for i in range(sources) if np.any(stems[i])]
    if active and frames > 1:
        n_fft = stft_size(sample_rate)
        hop = n_fft // 4
        window = torch.hann_window(n_fft)

        def stft(x: np.ndarray) -> torch.Tensor:
            return torch.stft(torch.from_numpy(np.ascontiguousarray(x)), n_fft, hop, window=window, center=True,
                              pad_mode="constant", return_complex=True)

        def masks_for(stem_channel: int, mixture: np.ndarray) -> torch.Tensor:
            steering = np.stack([fit_length(resample(stems[i, stem_channel], stems_rate, sample_rate), frames)
                                 for i in active])
            stem_mag = stft(steering).abs()  # [active, F, T]
            stem_power = stem_mag.square()
            unexplained = (stft(mixture).abs() - stem_mag.sum(0)).clamp(min=0).square()
            return stem_power / (stem_power.sum(0) + unexplained + _EPS)  # [active, F, T], sums to <= 1

        shared = masks_for(0, original.mean(axis=1, dtype=np.float32)) if stem_channels == 1 else None
        for c in range(channels):
            masks = shared if shared is not None else masks_for(c, original[:, c])
            spec = stft(original[:, c])
            pieces = torch.istft(masks * spec.unsqueeze(0), n_fft, hop, window=window, center=True, length=frames)
            out[:, active, c] = pieces.numpy().T
    out[:, sources, :] = original - out[:, :sources, :].sum(axis=1)
    return out
