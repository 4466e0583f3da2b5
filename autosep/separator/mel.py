"""The AudioLDM family's audio front end: waveform scaling, the frame grid, and the log-mel features.

These match the features the AudioLDM / AudioLDM2 VAEs were trained on: 16 kHz mono, STFT with n_fft 1024, a
1024-sample Hann window and hop 160, centred by reflect-padding (n_fft - hop) / 2 samples on each side (so N samples
give exactly N / 160 frames, as in AudioLDM's own code), magnitude spectrum, 64 Slaney mel bands 0-8000 Hz,
natural log of the magnitude clamped at 1e-5.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
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
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX)  # Slaney
    return torch.from_numpy(np.asarray(basis, dtype=np.float32))  # [n_mels, n_fft // 2 + 1]


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
