"""The AudioLDM family's audio front end: waveform scaling, the frame grid, and the log-mel features.

These are the features the AudioLDM / AudioLDM2 VAEs were trained on, computed as the ZeroSep reference and the
AudioLDM inference code (``TacotronSTFT``) compute them: 16 kHz mono, a centred STFT (reflect padding of n_fft / 2
samples on each side) with n_fft 1024, a 1024-sample Hann window and hop 160, magnitude spectrum, 64 Slaney mel bands
0-8000 Hz, natural log of the magnitude clamped at 1e-5. The centred STFT gives N / 160 + 1 frames for N samples;
the first N / 160 are kept, so frame k is centred on sample 160 k.

The rule: the recording is normalised (zero mean, peak 0.5) first and only then padded with digital silence up to
the model's grid, so neither a DC offset nor the scale leaks into the padding. The reference's other front-end
quirks (front padding with log-mel rows of 0, i.e. magnitude 1, and its 102.4 frames/s padding rule) are bugs and are
not reproduced: padding is silence at the end, trimmed off the stems.
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
    """The Slaney mel filterbank [n_mels, n_fft // 2 + 1] (float64), computed by librosa once, then read from the cache.

    librosa's filter module imports numba (about a second at every start); the matrix never changes, so it is
    stored in autosep's cache folder the first time and read from there by every later run.
    """
    cached = _basis_cache_path()
    try:
        basis = np.load(cached, allow_pickle=False)
        if basis.shape == (N_MELS, N_FFT // 2 + 1) and basis.dtype == np.float32 and np.isfinite(basis).all():
            return _as_applied(basis)
    except (OSError, ValueError):  # not cached yet, or unreadable: compute it again
        pass
    import librosa

    basis = np.asarray(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX),
                       dtype=np.float32)  # Slaney scale and area normalisation (librosa's defaults)
    _store(cached, basis)
    return _as_applied(basis)


def _as_applied(basis: np.ndarray) -> torch.Tensor:
    # librosa's own float32 filter weights, applied in float64 as librosa.feature.melspectrogram does for float64 input
    return torch.from_numpy(np.asarray(basis, dtype=np.float64))


def _basis_cache_path() -> Path:
    from ..model_files import cache_dir

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
    return torch.hann_window(WIN_LENGTH, dtype=torch.float64)  # periodic, as librosa's "hann"


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel features of ``wave`` [..., N] (16 kHz, N a multiple of 160 and over 512): float32 [..., N / 160, 64].

    Frame k is centred on sample 160 k. Time runs along the second-to-last axis and mel bands along the last, the
    layout the AudioLDM VAE reads.
    """
    wave = torch.as_tensor(wave, dtype=torch.float32)
    length = wave.shape[-1]
    if length % HOP_LENGTH != 0:
        raise ValueError(f"log_mel needs a length that is a multiple of {HOP_LENGTH} samples, got {length}")
    if length <= N_FFT // 2:  # reflect padding of n_fft / 2 needs more samples than that
        raise ValueError(f"log_mel needs more than {N_FFT // 2} samples, got {length}: pad to the model's grid first")
    lead = wave.shape[:-1]
    # float64 inside: quiet bins near the 1e-5 floor lose ~2e-4 of their log to float32 FFT rounding, which would
    # make the features depend on the FFT library; in float64 they are exact to float32 output precision.
    flat = wave.reshape(-1, length).to(torch.float64)
    spectrum = torch.stft(
        flat, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, window=_window().to(flat.device),
        center=True, pad_mode="reflect", return_complex=True,
    ).abs()[..., : length // HOP_LENGTH]  # magnitude [batch, bins, N / 160 + 1]; the last frame is dropped
    mel = torch.matmul(_mel_basis().to(flat.device), spectrum)
    features = torch.log(torch.clamp(mel, min=LOG_FLOOR)).transpose(-1, -2).to(torch.float32)
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
