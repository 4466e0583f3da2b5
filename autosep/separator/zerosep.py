"""ZeroSep: training-free text-queried separation with a pre-trained audio latent diffusion model.

The mixture is encoded by the VAE into latent x0, inverted to noise with the inversion prompt c_inv, then denoised
with each target source's prompt c_rev at guidance weight w (1 by default); each result is decoded into one stem.
AudioLDM/AudioLDM2 work on 16 kHz mono log-mel features and decode through their vocoder; the full-band
backbones (Stable Audio Open, Stable Audio 3; :mod:`stable_audio`) encode the [channels, samples] waveform at
44.1 kHz directly, so stereo is separated as stereo (one latent for both channels).

Two modes from the paper: w in [0, 1] is highlighting (from the mixture at w = 0 to the isolated source at w = 1),
and ``passes`` K > 1 is iterative separation (each stem separated again as its own mixture, K - 1 more times, with
the same c_rev, c_inv and seed).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..devices import resolve_device, resolve_dtype
from ..logs import library_quiet

from . import mel
from .backbones import Backbone, Conditioning, backbone_for
from .guidance import GuidedNoise
from .inversion import (
    auxiliary_noise,
    ddim_invert,
    ddpm_invert_batched,
    make_inverse_scheduler,
    make_scheduler,
    reverse,
)
from .loading import load_pipeline, locate_pipeline
from .prompts import check_sources, inversion_prompts
from .settings import SeparationSettings, check_batch_size, check_inversion
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
                 batch_size: int | None = None, settings: SeparationSettings | None = None):
        self.pipe = pipe
        full_band = full_band_backbone_for(pipe)
        self.backbone: Backbone = full_band if full_band is not None else backbone_for(pipe)
        self.full_band = full_band is not None
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.batch_size = check_batch_size(batch_size)
        self._conditionings: dict[tuple[str, torch.dtype], Conditioning] = {}
        self._evaluations = 0
        self._fits: int | None = None  # samples per forward that fitted after an out-of-memory split (None: any)
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
        self.settings = self._bound(settings or SeparationSettings())

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = "audioldm2", device: str | torch.device = "auto",
                        dtype: str | torch.dtype | None = None, batch_size: int | None = None,
                        settings: SeparationSettings | None = None) -> "ZeroSep":
        """Load a separator from an alias (``audioldm2``...), a Hugging Face id, or a local pipeline folder.

        ``dtype=None`` runs the UNet and text encoders in float16 on CUDA and float32 elsewhere. ``batch_size``
        bounds the samples per UNet forward (None: all sources of a window in one batch). ``settings`` are the
        inversion, steps, guidance, c_inv mode and seed every call uses unless it overrides them.
        Raises :class:`autosep.errors.ModelNotAvailableError` when the model is neither cached nor downloadable.
        """
        resolved_device = resolve_device(device)
        resolved_dtype = resolve_dtype(dtype, resolved_device)
        model_id, folder = locate_pipeline(model)
        pipe = load_pipeline(folder)
        return cls(pipe, model_id, resolved_device, resolved_dtype, batch_size=batch_size, settings=settings)

    # -- public API -----------------------------------------------------------------------------------------

    def separate(self, wave, sources: Sequence[str], inversion: str | None = None, steps: int | None = None,
                 guidance: float | None = None, inv_prompt: str | None = None, seed: int | None = None,
                 sample_rate: int | None = None, passes: int | None = None) -> torch.Tensor:
        """Stems for ``sources`` from ``wave`` at :attr:`sample_rate`: float32 CPU tensor.

        ``wave`` is ``[samples]`` or ``[channels, samples]``; the stems are ``[len(sources), samples]`` or
        ``[len(sources), channels, samples]`` to match. AudioLDM/AudioLDM2 take mono only (``[samples]`` or
        ``[1, samples]``); Stable Audio takes mono (duplicated into its two channels, returned mono) or stereo.
        Settings left as None are the bound ones (``self.settings``: ddpm, 50 steps, guidance 1, "others", 42, 1 pass).
        """
        return self.separate_detailed(wave, sources, inversion=inversion, steps=steps, guidance=guidance,
                                      inv_prompt=inv_prompt, seed=seed, sample_rate=sample_rate, passes=passes).stems

    def separate_detailed(self, wave, sources: Sequence[str], inversion: str | None = None, steps: int | None = None,
                          guidance: float | None = None, inv_prompt: str | None = None, seed: int | None = None,
                          sample_rate: int | None = None, progress: Progress | None = None,
                          passes: int | None = None) -> SeparationResult:
        """Like :meth:`separate`, with the inversion prompts, fp32 retries and UNet work reported.

        ``guidance`` w in [0, 1] is highlighting: w = 0 reconstructs the mixture, w = 1 (the default) isolates the
        source, values between move from one to the other; above 1 is ordinary stronger classifier-free guidance.
        ``passes`` K > 1 is iterative separation (the ZeroSep paper's appendix B, for interferers too loud to
        remove at once): each stem is fed back as the mixture for K - 1 more passes, with the same c_rev, c_inv and
        seed. ``progress(done, total)`` is called after every inversion and denoising step.
        """
        return self.separate_windows([wave], [sources], inversion=inversion, steps=steps, guidance=guidance,
                                     inv_prompt=inv_prompt, seed=seed, sample_rate=sample_rate,
                                     progress=progress, passes=passes)[0]

    def separate_windows(self, waves: Sequence, sources: Sequence[Sequence[str]], inversion: str | None = None,
                         steps: int | None = None, guidance: float | None = None, inv_prompt: str | None = None,
                         seed: int | None = None, sample_rate: int | None = None,
                         progress: Progress | None = None, passes: int | None = None) -> list[SeparationResult]:
        """Several mixtures (e.g. the windows of one recording), each with its own sources, separated together.

        On AudioLDM/AudioLDM2 their inversions share forwards and all their sources denoise in one batch (still
        bounded by ``batch_size``), so a GPU does several windows' work in the sequential calls of one. Each
        result is what :meth:`separate_detailed` gives for that mixture alone (same seed, so the same noise), up
        to float rounding; its ``unet_evaluations`` is that mixture's own share of the work. Full-band backbones
        separate the mixtures one after another.
        """
        if len(waves) != len(sources):
            raise ValueError(f"{len(waves)} waves but {len(sources)} source lists: pass one list of prompts per wave")
        if not waves:
            return []
        checked = [self._check_wave(wave, sample_rate) for wave in waves]
        source_lists = [check_sources(s) for s in sources]
        settings = self.settings
        overrides = dict(inversion=inversion, steps=steps, guidance=guidance, inv_prompt=inv_prompt, seed=seed,
                         passes=passes)
        if any(value is not None for value in overrides.values()):
            settings = self._bound(settings.with_overrides(**overrides))
        inversion, steps, guidance, seed = settings.inversion, settings.steps, settings.guidance, settings.seed
        passes = settings.passes
        c_invs = [inversion_prompts(s, settings.inv_prompt) for s in source_lists]
        if self.full_band:
            return [self._separate_full_band_passes(samples, layout, s, c, inversion, steps, guidance, seed, progress,
                                                    passes)
                    for (samples, layout), s, c in zip(checked, source_lists, c_invs)]

        samples = [x for x, _ in checked]
        scaled = [mel.normalise(x) for x in samples]
        padded = [mel.pad_to_multiple(x, self.frame_multiple) for x, _ in scaled]
        # Mixtures batch together only when their latents have the same shape (one group in practice: the
        # windows of a recording all have the model's length).
        groups: dict[int, list[int]] = {}
        for j, x in enumerate(padded):
            groups.setdefault(int(x.shape[0]), []).append(j)
        step_done = _step_counter(2 * steps * len(groups) * passes, progress)

        stems: list[torch.Tensor | None] = [None] * len(waves)
        retried: list[list[bool]] = [[] for _ in waves]
        with torch.no_grad():
            for members in groups.values():
                x0 = torch.cat([self._encode(padded[j]) for j in members])
                jobs = [_Job(x0[k:k + 1], source_lists[j], c_invs[j]) for k, j in enumerate(members)]
                latents, _ = self._separate_latents(jobs, inversion, steps, guidance, seed, step_done)
                decoded = self._decode(torch.cat(latents))
                rows = 0
                for job, j in zip(jobs, members):
                    own = decoded[rows:rows + len(job.sources)]
                    rows += len(job.sources)
                    retried[j] = [not bool(torch.isfinite(stem).all()) for stem in own]
                    stems[j] = own
                bad = [(k, j) for k, j in enumerate(members) if any(retried[j])]
                if bad:
                    fixed = self._retry_in_fp32([stems[j] for _, j in bad], [retried[j] for _, j in bad],
                                                [jobs[k] for k, _ in bad], inversion, steps, guidance, seed)
                    for (_, j), again in zip(bad, fixed):
                        stems[j] = again

        noise_for = GuidedNoise(self._predict, guidance, self.batch_size)
        inverted_steps = steps - 1 if inversion == "ddpm" else steps  # DDPM's last z is 0: no model call there
        outputs = [wave_stems[:, :x.shape[0]] * unscale for wave_stems, x, (_, unscale) in zip(stems, samples, scaled)]
        work = [[_work_share(noise_for, c_invs[j], source_lists[j], inverted_steps, steps)] for j in range(len(waves))]
        for _ in range(passes - 1):
            # Iterative separation: every stem of the previous pass is a mixture of its own, separated with its
            # source's c_rev and c_inv (each stem at the scale of its own input).
            with torch.no_grad():
                outputs = self._next_pass(outputs, source_lists, c_invs, retried, groups, inversion, steps, guidance,
                                          seed, step_done)
            for j in range(len(waves)):  # each source now inverts its own stem: no c_inv is shared
                shares = [_work_share(noise_for, [c], [s], inverted_steps, steps)
                          for s, c in zip(source_lists[j], c_invs[j])]
                work[j].append((sum(c for c, _ in shares), sum(u for _, u in shares)))
        results = []
        for j, own in enumerate(outputs):
            conditional, unconditional = (sum(c for c, _ in work[j]), sum(u for _, u in work[j]))
            if checked[j][1] == "channels":
                own = own[:, None, :]
            results.append(SeparationResult(
                stems=own.contiguous(),
                sources=list(source_lists[j]),
                inversion_prompts=c_invs[j],
                fp32_retry=retried[j] if self.dtype != torch.float32 else [False] * len(source_lists[j]),
                unet_evaluations=conditional + unconditional,
                details={"inversion": inversion, "steps": steps, "guidance": guidance, "seed": seed,
                         "passes": passes, "unet_evaluations_per_pass": [c + u for c, u in work[j]],
                         "padded_samples": int(padded[j].shape[0]), "model": self.model_id,
                         "backbone": self.backbone.name, "sampler": _AUDIOLDM_SAMPLERS[inversion], "channels": 1,
                         "conditional_evaluations": conditional, "unconditional_evaluations": unconditional,
                         "batched_mixtures": len(groups[int(padded[j].shape[0])])},
            ))
        return results

    def _next_pass(self, inputs: list[torch.Tensor], source_lists: list[list[str]], c_invs: list[list[str]],
                   retried: list[list[bool]], groups: dict[int, list[int]], inversion: str, steps: int,
                   guidance: float, seed: int, step_done: Callable[[], None]) -> list[torch.Tensor]:
        """One more pass of iterative separation: ``inputs[j][i]`` (mixture j's stem for source i, trimmed and at
        the input's scale) separated alone with that source's prompts. Returns the new stems, as ``inputs``;
        ``retried`` is updated in place."""
        scaled = [[mel.normalise(stem) for stem in stems] for stems in inputs]
        outputs: list[torch.Tensor | None] = [None] * len(inputs)
        for members in groups.values():
            pairs = [(j, i) for j in members for i in range(len(source_lists[j]))]
            padded = [mel.pad_to_multiple(scaled[j][i][0], self.frame_multiple) for j, i in pairs]
            x0 = torch.cat([self._encode(x) for x in padded])
            jobs = [_Job(x0[k:k + 1], [source_lists[j][i]], [c_invs[j][i]]) for k, (j, i) in enumerate(pairs)]
            latents, _ = self._separate_latents(jobs, inversion, steps, guidance, seed, step_done)
            decoded = list(self._decode(torch.cat(latents)).split(1))
            bad = [k for k, stem in enumerate(decoded) if not bool(torch.isfinite(stem).all())]
            if bad:
                fixed = self._retry_in_fp32([decoded[k] for k in bad], [[True]] * len(bad), [jobs[k] for k in bad],
                                            inversion, steps, guidance, seed)
                for k, again in zip(bad, fixed):
                    decoded[k] = again
                    j, i = pairs[k]
                    retried[j][i] = True
            for j in members:
                rows = [k for k, (owner, _) in enumerate(pairs) if owner == j]
                length = inputs[j].shape[-1]
                factors = torch.tensor([scaled[j][i][1] for i in range(len(rows))])[:, None]
                outputs[j] = torch.cat([decoded[k] for k in rows])[:, :length] * factors
        return outputs  # type: ignore[return-value]

    def _separate_full_band_passes(self, samples: torch.Tensor, layout: str, sources: list[str], c_inv: list[str],
                                   inversion: str, steps: int, guidance: float, seed: int,
                                   progress: Progress | None, passes: int) -> SeparationResult:
        """:meth:`_separate_full_band`, then ``passes - 1`` more passes on each stem alone (iterative separation)."""
        total = 2 * steps * (1 + len(sources) * (passes - 1))
        offset = 0

        def report(done: int, _total: int) -> None:
            if progress is not None:
                progress(min(offset + done, total), total)

        result = self._separate_full_band(samples, layout, sources, c_inv, inversion, steps, guidance, seed, report)
        if passes == 1:
            return result
        per_pass = [result.unet_evaluations]
        retried = list(result.fp32_retry)
        conditional = result.details["conditional_evaluations"]
        unconditional = result.details["unconditional_evaluations"]
        stems = result.stems
        for _ in range(passes - 1):
            evaluations = 0
            new = []
            for i, stem in enumerate(stems):
                offset += 2 * steps  # the steps of every separation before this one
                own = stem.reshape(1, -1).expand(self.channels, -1).contiguous() if layout.startswith("mono") else stem
                again = self._separate_full_band(own, layout, [sources[i]], [c_inv[i]], inversion, steps, guidance,
                                                 seed, report)
                new.append(again.stems[0])
                retried[i] = retried[i] or again.fp32_retry[0]
                evaluations += again.unet_evaluations
                conditional += again.details["conditional_evaluations"]
                unconditional += again.details["unconditional_evaluations"]
            stems = torch.stack(new)
            per_pass.append(evaluations)
        details = {**result.details, "passes": passes, "unet_evaluations_per_pass": per_pass,
                   "conditional_evaluations": conditional, "unconditional_evaluations": unconditional}
        return SeparationResult(stems=stems.contiguous(), sources=result.sources,
                                inversion_prompts=result.inversion_prompts, fp32_retry=retried,
                                unet_evaluations=sum(per_pass), sample_rate=result.sample_rate, details=details)

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
        if (seconds > backbone.default_window * 1.001 and backbone.name == "stable-audio-open"
                and not getattr(self, "_long_window_warned", False)):
            self._long_window_warned = True  # once per separator, not once per window
            logger.warning("a %.2f s window is longer than the %.2f s Stable Audio Open was trained on; the DiT "
                           "runs on it, but shorter windows (--window) stay in what it has seen", seconds,
                           backbone.default_window)
        padded = torch.nn.functional.pad(samples, (0, backbone.padded_length(length) - length))
        evaluations_before = self._evaluations
        step_done = _step_counter(2 * steps, progress)

        def run(rows: list[int], on_step) -> tuple[torch.Tensor, GuidedNoise]:
            chosen = [sources[i] for i in rows]
            chosen_inv = [c_inv[i] for i in rows]

            def predict(latents: torch.Tensor, sigma: torch.Tensor, prompts: list[str]) -> torch.Tensor:
                batch = backbone.stack([self._conditioning(p) for p in prompts], self._compute_dtype, seconds)
                self._evaluations += latents.shape[0]
                return backbone.predict(latents, sigma, batch, self._compute_dtype).float()

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
                     "seconds_total": round(seconds, 6), "passes": 1,
                     "unet_evaluations_per_pass": [self._evaluations - evaluations_before],
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
        name = check_inversion(inversion)
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
                f"(autosep.waveforms.resample(wave, {sample_rate}, {self.sample_rate}))"
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

    def bound_to(self, settings: SeparationSettings) -> "ZeroSep":
        """This loaded separator with other separation settings bound: the model is shared, nothing reloads."""
        if settings == self.settings:
            return self
        other = copy.copy(self)
        other.settings = self._bound(settings)
        return other

    def _bound(self, settings: SeparationSettings) -> SeparationSettings:
        """``settings`` once checked against this model: its sampler has a fixed number of training steps."""
        limit = (self.backbone.max_steps if isinstance(self.backbone, FullBandBackbone)
                 else int(self.pipe.scheduler.config.num_train_timesteps))
        if settings.steps > limit:
            raise ValueError(
                f"steps must be a whole number from 1 to {limit} (50 is the default), got {settings.steps}")
        return settings

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
        """One UNet forward for a batch of (latent, prompt) pairs; float32 noise prediction.

        A batch the device has no memory for is split in halves (and later batches are kept to the size that
        fitted), so an unbounded ``batch_size`` never fails where smaller forwards would work; the result is the
        same up to float rounding.
        """
        count = latents.shape[0]
        if self._fits is not None and count > self._fits:
            step = self._fits  # a part may lower self._fits again; each part then splits itself
            return torch.cat([self._predict(latents[i:i + step], _rows(timestep, i, step), prompts[i:i + step])
                              for i in range(0, count, step)])
        batch = self.backbone.stack([self._conditioning(p) for p in prompts], self._compute_dtype)
        try:
            eps = self.backbone.predict_noise(latents.to(self._compute_dtype), timestep, batch).float()
        except _OUT_OF_MEMORY:
            if count == 1:
                raise
            del batch
            self._fits = count // 2
            logger.warning("a UNet forward of %d samples did not fit in memory; using at most %d per forward "
                           "from now on (pass batch_size to set the bound yourself)", count, self._fits)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return self._predict(latents, timestep, prompts)
        self._evaluations += count
        return eps

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

    def _separate_latents(self, jobs: list["_Job"], inversion: str, steps: int, guidance: float, seed: int,
                          step_done: Callable[[], None]) -> tuple[list[torch.Tensor], GuidedNoise]:
        """Invert each mixture once per distinct c_inv, then denoise every source of every mixture in one batch.

        Returns each job's latents [len(job.sources), ...] and the guidance wrapper (which counts the branches it
        evaluated).
        """
        config = self.pipe.scheduler.config
        scheduler = make_scheduler(config, steps, self.device)
        noise_for = GuidedNoise(self._predict, guidance, self.batch_size)
        # Inversion rows: one per (mixture, distinct c_inv) ("null": one inversion shared by all its sources).
        inv_rows: list[tuple[int, str]] = []
        for j, job in enumerate(jobs):
            inv_rows.extend((j, c) for c in dict.fromkeys(job.c_inv))
        inv_prompts = [c for _, c in inv_rows]
        x0_rows = torch.cat([jobs[j].x0 for j, _ in inv_rows])
        # Reverse rows: every (mixture, source), each starting from its mixture's inversion with its c_inv.
        rev_prompts = [source for job in jobs for source in job.sources]
        row_of = torch.tensor([inv_rows.index((j, c)) for j, job in enumerate(jobs) for c in job.c_inv],
                              device=self.device)

        def reverse_eps(x, t):
            return noise_for(x, t, rev_prompts)

        if inversion == "ddpm":
            noise = [n.to(self.device) for n in auxiliary_noise(tuple(jobs[0].x0.shape), steps, seed)]
            x_top, zs = ddpm_invert_batched(scheduler, x0_rows, self._inversion_eps(noise_for, inv_prompts, step_done),
                                            noise)
            step_done()  # the last inversion step (z = 0) needs no model call
            zs = [z.index_select(0, row_of) for z in zs]
            latents = reverse(scheduler, x_top.index_select(0, row_of), reverse_eps, zs, on_step=step_done)
        else:
            inverse = make_inverse_scheduler(config, steps, self.device)
            # DDIM inversion chains every step on the last and amplifies rounding: at bf16 the inverted x_T drifts
            # ~20% from float32's and the stems ~50% at 50 steps (benchmarks/inversion_precision.txt), so it runs
            # in float32 on every device; the reverse pass stays in the compute precision.
            with self._full_precision():
                x_top = ddim_invert(inverse, x0_rows, lambda x, t: noise_for(x, t, inv_prompts), on_step=step_done)
            latents = reverse(scheduler, x_top.index_select(0, row_of), reverse_eps, None, on_step=step_done)
        return list(latents.split([len(job.sources) for job in jobs])), noise_for

    def _inversion_eps(self, noise_for: GuidedNoise, prompts: list[str], step_done: Callable[[], None]):
        """``eps_all`` for :func:`ddpm_invert_batched`: all (timestep, row) pairs in forwards of at most
        ``batch_size`` sample-evaluations (one forward when unbounded), progress reported per finished timestep."""

        def eps_all(latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            steps_count, rows = latents.shape[:2]
            flat = latents.reshape(steps_count * rows, *latents.shape[2:])
            flat_t = timesteps.to(self.device).repeat_interleave(rows)
            flat_prompts = prompts * steps_count
            per_sample = [noise_for.evaluations(p) for p in flat_prompts]
            limit = self.batch_size or sum(per_sample)
            outputs: list[torch.Tensor] = []
            start = reported = 0
            while start < len(flat_prompts):
                end, cost = start, 0
                # Fill the forward up to the bound; a sample needing both branches never straddles two forwards.
                while end < len(flat_prompts) and (end == start or cost + per_sample[end] <= limit):
                    cost += per_sample[end]
                    end += 1
                outputs.append(noise_for(flat[start:end], flat_t[start:end], flat_prompts[start:end]))
                start = end
                for _ in range(start // rows - reported):
                    step_done()
                reported = start // rows
            return torch.cat(outputs).reshape(latents.shape)

        return eps_all

    def _retry_in_fp32(self, stems: list[torch.Tensor], bad: list[list[bool]], jobs: list["_Job"], inversion: str,
                       steps: int, guidance: float, seed: int) -> list[torch.Tensor]:
        """Recompute the non-finite stems with the UNet and text encoders in float32 (same seed and prompts)."""
        names = ", ".join(job.sources[i] for job, flags in zip(jobs, bad) for i, is_bad in enumerate(flags) if is_bad)
        if self._compute_dtype == torch.float32:
            logger.warning("stems %s came out NaN/inf in float32; their bad samples are set to 0", names)
            return [torch.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0) for s in stems]
        logger.warning("stems %s came out NaN/inf in %s; recomputing them in float32", names, self._compute_dtype)
        rows = [[i for i, is_bad in enumerate(flags) if is_bad] for flags in bad]
        # Only the bad sources, each keeping the c_inv it had (not one rebuilt from the smaller source list).
        again = [_Job(job.x0, [job.sources[i] for i in r], [job.c_inv[i] for i in r]) for job, r in zip(jobs, rows)]
        with self._full_precision():
            latents, _ = self._separate_latents(again, inversion, steps, guidance, seed, lambda: None)
        decoded = self._decode(torch.cat(latents)).split([len(r) for r in rows])
        fixed = []
        for wave_stems, r, new in zip(stems, rows, decoded):
            wave_stems = wave_stems.clone()
            wave_stems[r] = torch.nan_to_num(new, nan=0.0, posinf=0.0, neginf=0.0)
            fixed.append(wave_stems)
        return fixed


@dataclass
class _Job:
    """One mixture's part of a batched separation: its latent [1, ...], its sources (c_rev) and their c_inv."""

    x0: torch.Tensor
    sources: list[str]
    c_inv: list[str]


def _work_share(noise_for: GuidedNoise, c_inv: list[str], sources: list[str], inverted_steps: int,
                steps: int) -> tuple[int, int]:
    """(conditional, unconditional) sample-evaluations one mixture costs: its distinct c_inv at every inverted
    step, its sources at every reverse step."""
    conditional = unconditional = 0
    for prompts, count in ((list(dict.fromkeys(c_inv)), inverted_steps), (sources, steps)):
        for prompt in prompts:
            c, u = noise_for.branch_counts(prompt)
            conditional += c * count
            unconditional += u * count
    return conditional, unconditional


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _rows(timestep: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """The timesteps of samples start..start+count: the same one for all, or their own (a 1-D tensor)."""
    return timestep[start:start + count] if timestep.ndim == 1 else timestep


def _step_counter(total: int, progress: Progress | None) -> Callable[[], None]:
    """A callback for every inversion and denoising step that reports ``progress(done, total)``."""
    done = 0

    def step_done() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    return step_done


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast a module's floating-point weights, skipping the call (and diffusers' warning) when already there."""
    if any(p.is_floating_point() and p.dtype != dtype for p in module.parameters()):
        # diffusers warns on every direct cast, even for models with no float32-only modules.
        with library_quiet(progress_bars=False, warnings=True):
            module.to(dtype=dtype)
