"""The AudioLDM family's audio front end: waveform scaling, the frame grid, and the log-mel features.

These match the features the AudioLDM / AudioLDM2 VAEs were trained on: 16 kHz mono, STFT with n_fft 1024, a
1024-sample Hann window and hop 160, centred by reflect-padding (n_fft - hop) / 2 samples on each side (so N samples
give exactly N / 160 frames, as in AudioLDM's own code), magnitude spectrum, 64 Slaney mel bands 0-8000 Hz,
natural log of the magnitude clamped at 1e-5.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 1024
WIN_LENGTH = 1024
HOP_LENGTH = 160
N_MELS = 64
F_MIN = 0.0
F_MAX = 8_000.0
LOG_FLOOR = 1e-5
PEAK = 0.5  # the models were trained on zero-mean waveforms peak-normalised to 0.5


@lru_cache(maxsize=1)
def _mel_basis() -> torch.Tensor:
    """The Slaney mel filterbank [n_mels, n_fft // 2 + 1], computed by librosa once and then read from the cache.

    librosa's filter module imports numba (about a second at every start); the matrix never changes, so it is
    stored in autosep's cache folder the first time and read from there by every later run.
    """
    cached = _basis_cache_path()
    try:
        basis = np.load(cached, allow_pickle=False)
        if basis.shape == (N_MELS, N_FFT // 2 + 1) and basis.dtype == np.float32 and np.isfinite(basis).all():
            return torch.from_numpy(basis)
    except (OSError, ValueError):  # not cached yet, or unreadable: compute it again
        pass
    import librosa

    basis = np.asarray(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX),
                       dtype=np.float32)  # Slaney scale and area normalisation (librosa's defaults)
    _store(cached, basis)
    return torch.from_numpy(basis)


def _basis_cache_path() -> Path:
    from autosep.paths import cache_dir

    name = f"mel_slaney_sr{SAMPLE_RATE}_fft{N_FFT}_mels{N_MELS}_{F_MIN:g}-{F_MAX:g}hz.npy"
    return cache_dir() / "frontend" / name


def _store(path: Path, basis: np.ndarray) -> None:
    """Write the cache file through a temporary name; a cache that cannot be written is only a slower start."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".mel-", suffix=".npy", delete=False) as handle:
            temporary = handle.name
            np.save(handle, basis, allow_pickle=False)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(WIN_LENGTH)


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel features of ``wave`` [..., N] (16 kHz, N a multiple of 160): float32 [..., N / 160, 64].

    Time runs along the second-to-last axis and mel bands along the last, the layout the AudioLDM VAE reads.
    """
    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.shape[-1] % HOP_LENGTH != 0:
        raise ValueError(f"log_mel needs a length that is a multiple of {HOP_LENGTH} samples, got {wave.shape[-1]}")
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, wave.shape[-1])
    pad = (N_FFT - HOP_LENGTH) // 2
    flat = torch.nn.functional.pad(flat.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spectrum = torch.stft(
        flat, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, window=_window().to(flat.device),
        center=False, return_complex=True,
    ).abs()  # magnitude, [batch, bins, frames]
    mel = torch.matmul(_mel_basis().to(flat.device), spectrum)
    features = torch.log(torch.clamp(mel, min=LOG_FLOOR)).transpose(-1, -2)
    return features.reshape(*lead, features.shape[-2], N_MELS)


def normalise(wave: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Zero-mean, peak 0.5 (the models' training scale). Returns the scaled wave and the factor that undoes it."""
    centred = wave - wave.mean()
    peak = float(centred.abs().max()) if centred.numel() else 0.0
    if peak <= 0.0:  # digital silence: nothing to scale
        return centred, 1.0
    return centred * (PEAK / peak), peak / PEAK


def frame_multiple(vae_scale_factor: int, unet_downsampling: int) -> int:
    """Samples per step of the model's grid: hop x VAE downsampling x UNet downsampling.

    Lengths on this grid map to latents the UNet halves and doubles back exactly, so nothing is interpolated.
    """
    return HOP_LENGTH * vae_scale_factor * unet_downsampling


def pad_to_multiple(wave: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``wave`` [..., N] at the end with digital silence up to the next multiple of ``multiple`` (at least one)."""
    length = wave.shape[-1]
    target = max(multiple, -(-length // multiple) * multiple)
    if target == length:
        return wave
    return torch.nn.functional.pad(wave, (0, target - length))
