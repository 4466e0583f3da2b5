"""ZeroSep: training-free text-queried separation with a pre-trained audio latent diffusion model.

The mixture is encoded by the VAE into latent x0, inverted to noise with the inversion prompt c_inv, then denoised
with each target source's prompt c_rev at guidance weight w (1 by default); each result is decoded into one stem.
AudioLDM/AudioLDM2 work on 16 kHz mono log-mel features and decode through their vocoder; the full-band
backbones (Stable Audio Open, Stable Audio 3; :mod:`stable_audio`) encode the [channels, samples] waveform at
44.1 kHz directly, so stereo is separated as stereo (one latent for both channels).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from autosep.devices import resolve_device, resolve_dtype

from . import mel
from .backbones import Backbone, Conditioning, backbone_for
from .guidance import GuidedNoise
from .inversion import (
    INVERSIONS,
    auxiliary_noise,
    ddim_invert,
    ddpm_invert,
    make_inverse_scheduler,
    make_scheduler,
    reverse,
)
from .loading import library_quiet, load_pipeline, locate_pipeline
from .prompts import check_sources, inversion_prompts
from .stable_audio import FullBandBackbone, full_band_backbone_for

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_CONDITIONING_CACHE_SIZE = 256
_AUDIOLDM_SAMPLERS = {"ddpm": "ddpm edit-friendly (ddim scheduler, eta 1)", "ddim": "ddim (eta 0)"}


@dataclass
class SeparationResult:
    """One separation: the stems and how they were made."""

    stems: torch.Tensor  # float32 CPU [len(sources), samples] or [len(sources), channels, samples], as the input
    sources: list[str]  # c_rev, one per stem
    inversion_prompts: list[str]  # c_inv, one per stem
    fp32_retry: list[bool]  # per stem: came out NaN/inf at reduced precision and was recomputed in float32
    unet_evaluations: int  # samples that went through the UNet (a batch of 3 counts 3)
    sample_rate: int = mel.SAMPLE_RATE
    details: dict[str, Any] = field(default_factory=dict)


class ZeroSep:
    """A loaded separator. Load once with :meth:`from_pretrained`, then call :meth:`separate` per mixture.

    ``sample_rate`` and ``channels`` say what it works at (16 kHz mono for AudioLDM/AudioLDM2, 44.1 kHz stereo
    for Stable Audio); ``default_window`` is the window length (seconds) a recording is cut into by default.
    """

    sample_rate = mel.SAMPLE_RATE
    channels = 1
    default_window = 10.24

    def __init__(self, pipe: Any, model_id: str, device: torch.device, dtype: torch.dtype,
                 batch_size: int | None = None):
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive number of samples per UNet forward, got {batch_size}")
        self.pipe = pipe
        full_band = full_band_backbone_for(pipe)
        self.backbone: Backbone = full_band if full_band is not None else backbone_for(pipe)
        self.full_band = full_band is not None
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.batch_size = int(batch_size) if batch_size is not None else None
        self._conditionings: dict[tuple[str, torch.dtype], Conditioning] = {}
        self._evaluations = 0
        # The VAE and vocoder run once per window and stay in float32; the UNet/DiT and text encoders (the bulk of
        # the work) run in the compute precision.
        pipe.to(device)
        if isinstance(self.backbone, FullBandBackbone):
            self._denoiser = self.backbone.denoiser
            self.sample_rate = self.backbone.sample_rate
            self.channels = self.backbone.channels
            self.default_window = self.backbone.default_window
            self.frame_multiple = self.backbone.hop
            _cast(pipe.vae, torch.float32)
        else:
            self._denoiser = pipe.unet
            _cast(pipe.vae, torch.float32)
            _cast(pipe.vocoder, torch.float32)
            unet_config = pipe.unet.config
            self.frame_multiple = mel.frame_multiple(int(pipe.vae_scale_factor),
                                                     2 ** (len(unet_config.block_out_channels) - 1))
        self._set_compute_dtype(dtype)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = "audioldm2", device: str | torch.device = "auto",
                        dtype: str | torch.dtype | None = None, batch_size: int | None = None) -> "ZeroSep":
        """Load a separator from an alias (``audioldm2``...), a Hugging Face id, or a local pipeline folder.

        ``dtype=None`` runs the UNet and text encoders in float16 on CUDA and float32 elsewhere. ``batch_size``
        bounds the samples per UNet forward (None: all sources of a window in one batch).
        Raises :class:`autosep.errors.ModelNotAvailableError` when the model is neither cached nor downloadable.
        """
        resolved_device = resolve_device(device)
        resolved_dtype = resolve_dtype(dtype, resolved_device)
        model_id, folder = locate_pipeline(model)
        pipe = load_pipeline(folder)
        return cls(pipe, model_id, resolved_device, resolved_dtype, batch_size=batch_size)

    # -- public API -----------------------------------------------------------------------------------------

    def separate(self, wave, sources: Sequence[str], inversion: str = "ddpm", steps: int = 50,
                 guidance: float = 1.0, inv_prompt: str = "others", seed: int = 42,
                 sample_rate: int | None = None) -> torch.Tensor:
        """Stems for ``sources`` from ``wave`` at :attr:`sample_rate`: float32 CPU tensor.

        ``wave`` is ``[samples]`` or ``[channels, samples]``; the stems are ``[len(sources), samples]`` or
        ``[len(sources), channels, samples]`` to match. AudioLDM/AudioLDM2 take mono only (``[samples]`` or
        ``[1, samples]``); Stable Audio takes mono (duplicated into its two channels, returned mono) or stereo.
        """
        return self.separate_detailed(wave, sources, inversion=inversion, steps=steps, guidance=guidance,
                                      inv_prompt=inv_prompt, seed=seed, sample_rate=sample_rate).stems

    def separate_detailed(self, wave, sources: Sequence[str], inversion: str = "ddpm", steps: int = 50,
                          guidance: float = 1.0, inv_prompt: str = "others", seed: int = 42,
                          sample_rate: int | None = None, progress: Progress | None = None) -> SeparationResult:
        """Like :meth:`separate`, with the inversion prompts, fp32 retries and UNet work reported.

        ``progress(done, total)`` is called after every inversion and denoising step.
        """
        samples, layout = self._check_wave(wave, sample_rate)
        sources = check_sources(sources)
        inversion = self._check_inversion(inversion)
        steps = self._check_steps(steps)
        guidance = self._check_guidance(guidance)
        c_inv = inversion_prompts(sources, inv_prompt)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be a whole number (42 is the default), got {seed!r}")
        seed = int(seed)
        if self.full_band:
            return self._separate_full_band(samples, layout, sources, c_inv, inversion, steps, guidance, seed,
                                            progress)

        evaluations_before = self._evaluations
        length = samples.shape[0]
        scaled, unscale = mel.normalise(samples)
        padded = mel.pad_to_multiple(scaled, self.frame_multiple)
        total = 2 * steps
        done = 0

        def step_done() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(min(done, total), total)

        with torch.no_grad():
            x0 = self._encode(padded)
            latents, noise_for = self._separate_latents(x0, sources, c_inv, inversion, steps, guidance, seed, step_done)
            stems = self._decode(latents)
            retried = [not bool(torch.isfinite(stem).all()) for stem in stems]
            if any(retried):
                stems = self._retry_in_fp32(stems, retried, x0, sources, c_inv, inversion, steps, guidance, seed)

        stems = stems[:, :length] * unscale
        if layout == "channels":
            stems = stems[:, None, :]
        return SeparationResult(
            stems=stems.contiguous(),
            sources=list(sources),
            inversion_prompts=c_inv,
            fp32_retry=retried if self.dtype != torch.float32 else [False] * len(sources),
            unet_evaluations=self._evaluations - evaluations_before,
            details={"inversion": inversion, "steps": steps, "guidance": guidance, "seed": seed,
                     "padded_samples": int(padded.shape[0]), "model": self.model_id, "backbone": self.backbone.name,
                     "sampler": _AUDIOLDM_SAMPLERS[inversion], "channels": 1,
                     "conditional_evaluations": noise_for.conditional_evaluations,
                     "unconditional_evaluations": noise_for.unconditional_evaluations},
        )

    def _separate_full_band(self, samples: torch.Tensor, layout: str, sources: list[str], c_inv: list[str],
                            inversion: str, steps: int, guidance: float, seed: int,
                            progress: Progress | None) -> SeparationResult:
        """ZeroSep on a full-band backbone: ``samples`` [channels, N] at the model's rate, one latent for all channels.

        The window's real length (N samples) is the duration/seconds_total conditioning; the VAE sees it padded
        with silence (to the model's grid, or for Stable Audio Open to its training length).
        """
        backbone: FullBandBackbone = self.backbone  # type: ignore[assignment]
        length = samples.shape[-1]
        seconds = length / self.sample_rate
        padded = torch.nn.functional.pad(samples, (0, backbone.padded_length(length) - length))
        evaluations_before = self._evaluations
        total = 2 * steps
        done = 0

        def step_done() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(min(done, total), total)

        def run(rows: list[int], on_step) -> tuple[torch.Tensor, GuidedNoise]:
            chosen = [sources[i] for i in rows]
            chosen_inv = [c_inv[i] for i in rows]

            def predict(latents: torch.Tensor, sigma: torch.Tensor, prompts: list[str]) -> torch.Tensor:
                batch = backbone.stack([self._conditioning(p) for p in prompts], self._compute_dtype, seconds)
                self._evaluations += latents.shape[0]
                return backbone.predict(latents.to(self._compute_dtype), sigma, batch).float()

            noise_for = GuidedNoise(predict, guidance, self.batch_size)
            distinct = list(dict.fromkeys(chosen_inv))  # "null": one inversion shared by all sources
            row_of = torch.tensor([distinct.index(c) for c in chosen_inv], device=self.device)
            x0_batch = x0.expand(len(distinct), *x0.shape[1:])
            latents = backbone.separate(x0_batch, chosen, distinct, row_of, inversion, steps, noise_for, seed,
                                        on_step)
            return self._decode_full_band(latents, length), noise_for

        with torch.no_grad():
            x0 = backbone.encode_audio(padded.to(self.device))
            stems, noise_for = run(list(range(len(sources))), step_done)
            retried = [not bool(torch.isfinite(stem).all()) for stem in stems]
            if any(retried):
                rows = [i for i, bad in enumerate(retried) if bad]
                names = ", ".join(sources[i] for i in rows)
                if self._compute_dtype == torch.float32:
                    logger.warning("stems %s came out NaN/inf in float32; their bad samples are set to 0", names)
                else:
                    logger.warning("stems %s came out NaN/inf in %s; recomputing them in float32", names,
                                   self._compute_dtype)
                    with self._full_precision():
                        stems[rows] = run(rows, lambda: None)[0]
                stems = torch.nan_to_num(stems, nan=0.0, posinf=0.0, neginf=0.0)

        if layout.startswith("mono"):
            stems = stems.mean(dim=1, keepdim=layout == "mono-channels")
        return SeparationResult(
            stems=stems.contiguous(),
            sources=list(sources),
            inversion_prompts=c_inv,
            fp32_retry=retried if self.dtype != torch.float32 else [False] * len(sources),
            unet_evaluations=self._evaluations - evaluations_before,
            sample_rate=self.sample_rate,
            details={"inversion": inversion, "steps": steps, "guidance": guidance, "seed": seed,
                     "padded_samples": int(padded.shape[-1]), "model": self.model_id, "backbone": backbone.name,
                     "sampler": backbone.samplers[inversion], "channels": self.channels,
                     "seconds_total": round(seconds, 6),
                     "conditional_evaluations": noise_for.conditional_evaluations,
                     "unconditional_evaluations": noise_for.unconditional_evaluations},
        )

    def _decode_full_band(self, latents: torch.Tensor, length: int) -> torch.Tensor:
        """Waveforms [S, channels, length] (float32 CPU), decoded ``batch_size`` latents at a time."""
        chunk = self.batch_size or latents.shape[0]
        waves = [self.backbone.decode_audio(latents[start:start + chunk])[..., :length].cpu()
                 for start in range(0, latents.shape[0], chunk)]
        return torch.cat(waves)

    def sampler(self, inversion: str = "ddpm") -> str:
        """What ``inversion`` runs on this backbone (the manifest records it)."""
        name = self._check_inversion(inversion)
        if isinstance(self.backbone, FullBandBackbone):
            return self.backbone.samplers[name]
        return _AUDIOLDM_SAMPLERS[name]

    # -- argument checks ------------------------------------------------------------------------------------

    def _check_wave(self, wave, sample_rate: int | None) -> tuple[torch.Tensor, str]:
        """The wave as float32 CPU samples and its layout: ``"mono"`` ([samples]) or ``"channels"``
        ([channels, samples]). AudioLDM gets [samples]; a full-band backbone gets [its channels, samples]."""
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(
                f"the separator works at {self.sample_rate} Hz but got {sample_rate} Hz audio: resample it first "
                f"(autosep.frames.resample(wave, {sample_rate}, {self.sample_rate}))"
            )
        if isinstance(wave, np.ndarray):
            wave = torch.from_numpy(np.ascontiguousarray(wave))
        if not isinstance(wave, torch.Tensor):
            raise ValueError(f"wave must be a torch tensor or numpy array of samples, got {type(wave).__name__}")
        shape = "mono, [samples] or [1, samples]" if self.channels == 1 else "[samples] or [channels, samples]"
        if wave.ndim not in (1, 2):
            raise ValueError(f"wave must be {shape}, got shape {tuple(wave.shape)}")
        layout = "mono" if wave.ndim == 1 else "channels"
        if wave.ndim == 2 and wave.shape[0] not in {1, self.channels}:
            hint = ("mix channels down first (e.g. recording.mono())" if self.channels == 1 else
                    f"this model takes mono or {self.channels} channels")
            raise ValueError(f"wave must be {shape}, got {wave.shape[0]} channels (shape {tuple(wave.shape)}): "
                             f"{hint}")
        if wave.shape[-1] == 0:
            raise ValueError("wave is empty: pass at least one sample of audio")
        if not (wave.is_floating_point() or wave.dtype in (torch.int16, torch.int32)):
            raise ValueError(f"wave must hold float samples, got dtype {wave.dtype}")
        wave = wave.detach().to("cpu", torch.float32)
        if not torch.isfinite(wave).all():
            raise ValueError("wave contains NaN or infinite samples: pass finite audio")
        if not self.full_band:
            return wave.reshape(-1), layout
        if wave.ndim == 1 or wave.shape[0] == 1:
            # Mono goes in duplicated into every channel (comes out mono: the channels' mean).
            mono = "mono" if wave.ndim == 1 else "mono-channels"
            return wave.reshape(1, -1).expand(self.channels, -1).contiguous(), mono
        return wave, layout

    @staticmethod
    def _check_inversion(inversion: str) -> str:
        name = str(inversion).strip().lower()
        if name not in INVERSIONS:
            raise ValueError(f"unknown inversion {inversion!r}: pass 'ddpm' (default, edit-friendly) or 'ddim'")
        return name

    def _check_steps(self, steps: int) -> int:
        limit = (self.backbone.max_steps if isinstance(self.backbone, FullBandBackbone)
                 else int(self.pipe.scheduler.config.num_train_timesteps))
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= int(steps) <= limit:
            raise ValueError(f"steps must be a whole number from 1 to {limit} (50 is the default), got {steps!r}")
        return int(steps)

    @staticmethod
    def _check_guidance(guidance: float) -> float:
        try:
            value = float(guidance)
        except (TypeError, ValueError):
            raise ValueError(f"guidance must be a number >= 0 (1.0 is ZeroSep's default), got {guidance!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"guidance must be a number >= 0 (1.0 is ZeroSep's default), got {guidance!r}")
        return value

    # -- the model ------------------------------------------------------------------------------------------

    def _set_compute_dtype(self, dtype: torch.dtype) -> None:
        for module in [self._denoiser, *self.backbone.text_modules]:
            _cast(module, dtype)
        self._compute_dtype = dtype

    @contextlib.contextmanager
    def _full_precision(self):
        previous = self._compute_dtype
        self._set_compute_dtype(torch.float32)
        try:
            yield
        finally:
            self._set_compute_dtype(previous)

    def _conditioning(self, prompt: str) -> Conditioning:
        key = (prompt, self._compute_dtype)
        if key not in self._conditionings:
            if len(self._conditionings) >= _CONDITIONING_CACHE_SIZE:
                self._conditionings.pop(next(iter(self._conditionings)))
            self._conditionings[key] = self.backbone.encode(prompt, self.device)
        return self._conditionings[key]

    def _predict(self, latents: torch.Tensor, timestep: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """One UNet forward for a batch of (latent, prompt) pairs; float32 noise prediction."""
        batch = self.backbone.stack([self._conditioning(p) for p in prompts], self._compute_dtype)
        self._evaluations += latents.shape[0]
        return self.backbone.predict_noise(latents.to(self._compute_dtype), timestep, batch).float()

    def _encode(self, padded: torch.Tensor) -> torch.Tensor:
        features = mel.log_mel(padded)[None, None].to(self.device)  # [1, 1, frames, 64]
        vae = self.pipe.vae
        return vae.encode(features).latent_dist.mode().float() * vae.config.scaling_factor

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        chunk = self.batch_size or latents.shape[0]
        waves = []
        for start in range(0, latents.shape[0], chunk):
            part = latents[start:start + chunk].float() / vae.config.scaling_factor
            waves.append(self.pipe.mel_spectrogram_to_waveform(vae.decode(part).sample))
        return torch.cat(waves).float().cpu()

    def _separate_latents(self, x0: torch.Tensor, sources: list[str], c_inv: list[str], inversion: str,
                          steps: int, guidance: float, seed: int,
                          step_done: Callable[[], None]) -> tuple[torch.Tensor, GuidedNoise]:
        """Invert x0 once per distinct c_inv, then denoise every source in one batch.

        Returns the latents [S, ...] and the guidance wrapper (which counts the branches it evaluated).
        """
        config = self.pipe.scheduler.config
        scheduler = make_scheduler(config, steps, self.device)
        noise_for = GuidedNoise(self._predict, guidance, self.batch_size)
        distinct = list(dict.fromkeys(c_inv))  # "null": one inversion shared by all sources
        row_of = torch.tensor([distinct.index(c) for c in c_inv], device=self.device)
        x0_batch = x0.expand(len(distinct), *x0.shape[1:])

        def invert_eps(x, t):
            return noise_for(x, t, distinct)

        def reverse_eps(x, t):
            return noise_for(x, t, sources)

        if inversion == "ddpm":
            noise = [n.to(self.device) for n in auxiliary_noise(tuple(x0.shape), steps, seed)]
            x_top, zs = ddpm_invert(scheduler, x0_batch, invert_eps, noise, on_step=step_done)
            zs = [z.index_select(0, row_of) for z in zs]
            latents = reverse(scheduler, x_top.index_select(0, row_of), reverse_eps, zs, on_step=step_done)
        else:
            inverse = make_inverse_scheduler(config, steps, self.device)
            # DDIM inversion chains every step on the last and amplifies rounding: at bf16 the inverted x_T drifts
            # ~15% from float32's and the stems ~50% (benchmarks/inversion_precision.py), so it runs in float32
            # on every device; the reverse pass stays in the compute precision.
            with self._full_precision():
                x_top = ddim_invert(inverse, x0_batch, invert_eps, on_step=step_done)
            latents = reverse(scheduler, x_top.index_select(0, row_of), reverse_eps, None, on_step=step_done)
        return latents, noise_for

    def _retry_in_fp32(self, stems: torch.Tensor, bad: list[bool], x0: torch.Tensor, sources: list[str],
                       c_inv: list[str], inversion: str, steps: int, guidance: float, seed: int) -> torch.Tensor:
        """Recompute the non-finite stems with the UNet and text encoders in float32 (same seed and prompts)."""
        rows = [i for i, is_bad in enumerate(bad) if is_bad]
        names = ", ".join(sources[i] for i in rows)
        if self._compute_dtype == torch.float32:
            logger.warning("stems %s came out NaN/inf in float32; their bad samples are set to 0", names)
            return torch.nan_to_num(stems, nan=0.0, posinf=0.0, neginf=0.0)
        logger.warning("stems %s came out NaN/inf in %s; recomputing them in float32", names, self._compute_dtype)
        with self._full_precision():
            latents, _ = self._separate_latents(x0, [sources[i] for i in rows], [c_inv[i] for i in rows], inversion,
                                                steps, guidance, seed, lambda: None)
        stems = stems.clone()
        stems[rows] = torch.nan_to_num(self._decode(latents), nan=0.0, posinf=0.0, neginf=0.0)
        return stems


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast a module's floating-point weights, skipping the call (and diffusers' warning) when already there."""
    if any(p.is_floating_point() and p.dtype != dtype for p in module.parameters()):
        # diffusers warns on every direct cast, even for models with no float32-only modules.
        with library_quiet(progress_bars=False, warnings=True):
            module.to(dtype=dtype)
