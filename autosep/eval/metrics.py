"""Signal metrics for separated stems: SI-SDR, SDR, SI-SDR improvement, and the Frechet distance (FAD).

Rule of this module: every metric states the sample rate it works at, and audio reaches it through
:func:`resample`, an explicit soxr conversion; nothing here resamples implicitly or guesses a rate.

- **SI-SDR** (Le Roux et al. 2019, "SDR - half-baked or well done?"):
  ``10 log10(||a s||^2 / ||a s - e||^2)`` with ``a = <e, s> / ||s||^2``: the estimate ``e`` is compared with
  the best-scaled reference ``s``, so a gain on the estimate changes nothing. Computed by ``fast_bss_eval``.
- **SDR** (BSS Eval, Vincent et al. 2006): the estimate may differ from its reference by a 512-tap
  time-invariant filter before the rest counts as distortion. ``fast_bss_eval``'s implementation, per source
  against its own reference (a silent or missing reference makes the joint, multi-source form undefined).
- **SI-SDRi**: SI-SDR of the estimate minus SI-SDR of the mixture, both against the same reference.
- Both penalise generative output (the ZeroSep paper, Table 3): a stem re-synthesised by a diffusion model
  can sound right and still be far from the waveform of the reference, so read them with the CLAP-based
  metrics. They are undefined (``None``) when the reference or the estimate is digital silence, and capped
  at +-100 dB (a bit-exact estimate).
- **FAD** (Kilgour et al. 2019): the Frechet distance between Gaussians fitted to two sets of embeddings,
  ``||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))``. The trace of the matrix square root is taken as the
  sum of square roots of the eigenvalues of ``S_1^(1/2) S_2 S_1^(1/2)`` (symmetric, positive semi-definite), which
  stays real and exact where ``scipy.linalg.sqrtm`` of the non-symmetric product needs an epsilon fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Signals whose peak is below this are digital silence for the metrics (a 24-bit file's lowest step is 1.2e-7).
SILENCE_PEAK = 1e-7
SDR_FILTER_TAPS = 512
# fast_bss_eval's cap on both metrics: a bit-exact estimate scores 100 dB instead of an infinite ratio (which
# would also fail its solver); every realistic value is far inside it.
CLAMP_DB = 100.0


class MetricsDependencyError(ImportError):
    """A metric library from the ``eval`` extra is not installed."""


def _fast_bss_eval():
    try:
        import fast_bss_eval
    except ImportError:
        raise MetricsDependencyError(
            "SI-SDR and SDR need fast_bss_eval: install the evaluation extra with "
            "`pip install 'autosep[eval]'` (or `pip install fast_bss_eval`)"
        ) from None
    return fast_bss_eval


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Float64 mono: ``[frames]`` as is, ``[frames, channels]`` averaged over channels."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim == 2:
        return audio.mean(axis=1)
    if audio.ndim != 1:
        raise ValueError(f"expected audio shaped [frames] or [frames, channels], got {audio.shape}")
    return audio


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``audio`` (``[frames]`` or ``[frames, channels]``) converted from ``from_rate`` to ``to_rate`` with soxr."""
    if int(from_rate) == int(to_rate):
        return np.asarray(audio, dtype=np.float64)
    import soxr

    return soxr.resample(np.asarray(audio, dtype=np.float64), int(from_rate), int(to_rate), quality="VHQ")


def is_silent(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


def _common_length(*signals: np.ndarray) -> list[np.ndarray]:
    n = min(len(s) for s in signals)
    return [s[:n] for s in signals]


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float | None:
    """SI-SDR in dB of a mono ``estimate`` against a mono ``reference`` at the same rate (trimmed to the
    shorter of the two); ``None`` when either is silent."""
    estimate, reference = _common_length(to_mono(estimate), to_mono(reference))
    if is_silent(estimate) or is_silent(reference):
        return None
    value = _fast_bss_eval().si_sdr(reference[None], estimate[None], clamp_db=CLAMP_DB)
    return float(np.asarray(value).reshape(-1)[0])


def sdr(estimate: np.ndarray, reference: np.ndarray) -> float | None:
    """BSS Eval SDR in dB (512-tap distortion filter) of ``estimate`` against ``reference``; ``None`` when
    either is silent or the signals are shorter than the filter."""
    estimate, reference = _common_length(to_mono(estimate), to_mono(reference))
    if is_silent(estimate) or is_silent(reference) or len(reference) <= SDR_FILTER_TAPS:
        return None
    value = _fast_bss_eval().sdr(reference[None], estimate[None], filter_length=SDR_FILTER_TAPS,
                                   clamp_db=CLAMP_DB)
    return float(np.asarray(value).reshape(-1)[0])


def si_sdr_improvement(estimate: np.ndarray, reference: np.ndarray, mixture: np.ndarray) -> float | None:
    """SI-SDR(estimate) - SI-SDR(mixture), both against ``reference``; ``None`` if either is undefined."""
    separated, unprocessed = si_sdr(estimate, reference), si_sdr(mixture, reference)
    if separated is None or unprocessed is None:
        return None
    return separated - unprocessed


@dataclass(frozen=True)
class FrechetResult:
    """A Frechet distance with what it was computed on; ``reliable`` is False when a set has fewer items than
    the embedding has dimensions (its covariance is then rank-deficient and the distance is biased upwards)."""

    value: float
    estimates: int
    references: int
    dimensions: int

    @property
    def reliable(self) -> bool:
        return min(self.estimates, self.references) > self.dimensions

    @property
    def warning(self) -> str | None:
        if self.reliable:
            return None
        return (f"FAD computed on {self.estimates} estimates and {self.references} references with "
                f"{self.dimensions}-dimensional embeddings: sets smaller than the dimension give a rank-deficient "
                f"covariance and an unstable, upward-biased distance; compare it only with runs of the same size")


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(estimates: np.ndarray, references: np.ndarray) -> FrechetResult:
    """Frechet distance between the Gaussians of two embedding sets ``[n, d]`` and ``[m, d]`` (n, m >= 2)."""
    a = np.asarray(estimates, dtype=np.float64)
    b = np.asarray(references, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two embedding sets [n, d] with the same d, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FAD needs at least 2 items in each set (got {len(a)} estimates, {len(b)} references)")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(cross, 0, None))))
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)
    # Rounding can leave a distance of a set to itself a hair below zero.
    value = max(value, 0.0) if math.isfinite(value) else value
    return FrechetResult(value=value, estimates=len(a), references=len(b), dimensions=a.shape[1])
