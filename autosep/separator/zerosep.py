"""ZeroSep: training-free text-queried separation with a pre-trained audio latent diffusion model.

The mixture is encoded by the backbone's VAE into latent x0, inverted to noise with the inversion prompt c_inv,
then denoised with each target source's prompt c_rev at guidance weight w (1 by default); each result is decoded
into one stem. Everything model-specific (rate, channels, front end, text encoders, sampler and its two
inversions) is the backbone's (:mod:`autosep.separator.backbones`): this module only asks it, so every family
runs through the same steps (:meth:`ZeroSep.separate_windows`): prepare -> encode -> invert -> denoise -> decode
-> further passes.

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
from .backbones import Backbone, Conditioning, SamplingRun, backbone_for
from .guidance import GuidedNoise
from .loading import load_pipeline, locate_pipeline
from .prompts import check_sources, inversion_prompts
from .settings import SeparationSettings, check_batch_size, check_inversion

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_CONDITIONING_CACHE_SIZE = 256


@dataclass
class SeparationResult:
    """One separation: the stems and how they were made."""

    stems: torch.Tensor  # float32 CPU [len(sources), samples] or [len(sources), channels, samples], as the input
    sources: list[str]  # c_rev, one per stem
    inversion_prompts: list[str]  # c_inv, one per stem
    fp32_retry: list[bool]  # per stem: came out NaN/inf at reduced precision and was recomputed in float32
    unet_evaluations: int  # samples that went through the UNet/DiT (a batch of 3 counts 3)
    sample_rate: int = 16_000
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Mixture:
    """One mixture to separate: samples [channels, N] at the model's rate, its sources (c_rev) and their c_inv."""

    wave: torch.Tensor
    sources: list[str]
    c_inv: list[str]


@dataclass
class _Job:
    """One mixture's part of a batched separation: its latent [1, ...], its sources (c_rev) and their c_inv."""

    x0: torch.Tensor
    sources: list[str]
    c_inv: list[str]


class ZeroSep:
    """A loaded separator. Load once with :meth:`from_pretrained`, then call :meth:`separate` per mixture.

    ``sample_rate`` and ``channels`` say what it works at (16 kHz mono for AudioLDM/AudioLDM2/Tango, 44.1 kHz
    stereo for Stable Audio); ``default_window`` is the window length (seconds) a recording is cut into by default.
    All three are the backbone's.
    """

    def __init__(self, pipe: Any, model_id: str, device: torch.device, dtype: torch.dtype,
                 batch_size: int | None = None, settings: SeparationSettings | None = None):
        self.pipe = pipe
        self.backbone: Backbone = backbone_for(pipe)
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.batch_size = check_batch_size(batch_size)
        self._conditionings: dict[str, Conditioning] = {}  # per prompt (the text encoders are float32 always)
        self._evaluations = 0
        self._fits: int | None = None  # samples per forward that fitted after an out-of-memory split (None: any)
        pipe.to(device)
        # Only the denoiser (the bulk of the work) runs in the compute precision. The VAE (and vocoder) run once
        # per window and the text encoders once per prompt, so float32 costs them nothing measurable, and it keeps
        # Flan-T5 finite: its feed-forward output overflows in float16 (why transformers lists it in
        # _keep_in_fp32_modules). Their outputs are cast to the compute precision when stacked.
        for module in [*self.backbone.float32_modules, *self.backbone.text_modules]:
            _cast(module, torch.float32)
        self._set_compute_dtype(dtype)
        self.settings = self._bound(settings or SeparationSettings())

    @property
    def sample_rate(self) -> int:
        return self.backbone.sample_rate

    @property
    def channels(self) -> int:
        return self.backbone.channels

    @property
    def default_window(self) -> float:
        return self.backbone.default_window

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, device: str | torch.device = "auto",
                        dtype: str | torch.dtype | None = None, batch_size: int | None = None,
                        settings: SeparationSettings | None = None) -> "ZeroSep":
        """Load a separator from an alias (``audioldm2``...), a Hugging Face id, or a local model folder.

        ``model=None`` is the default model (``audioldm2``). ``dtype=None`` runs the UNet/DiT in float16 on CUDA
        and float32 elsewhere; the text encoders, VAE and vocoder always run in float32. ``batch_size`` bounds the samples per model forward (None: all sources of a window
        in one batch). ``settings`` are the inversion, steps, guidance, c_inv mode and seed every call uses unless
        it overrides them. Raises :class:`autosep.errors.ModelNotAvailableError` when the model is neither cached
        nor downloadable.
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
        ``[len(sources), channels, samples]`` to match. A mono model takes mono only (``[samples]`` or
        ``[1, samples]``); a stereo one takes mono (duplicated into its two channels, returned mono) or stereo.
        Settings left as None are the bound ones (``self.settings``: ddpm, 50 steps, guidance 1, "others", 42, 1 pass).
        """
        return self.separate_detailed(wave, sources, inversion=inversion, steps=steps, guidance=guidance,
                                      inv_prompt=inv_prompt, seed=seed, sample_rate=sample_rate, passes=passes).stems

    def separate_detailed(self, wave, sources: Sequence[str], inversion: str | None = None, steps: int | None = None,
                          guidance: float | None = None, inv_prompt: str | None = None, seed: int | None = None,
                          sample_rate: int | None = None, progress: Progress | None = None,
                          passes: int | None = None) -> SeparationResult:
        """Like :meth:`separate`, with the inversion prompts, fp32 retries and model work reported.

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

        Mixtures whose latents have the same shape (and, for a backbone conditioned on the window's length, the
        same length) share their inversions' forwards and denoise all their sources in one batch (still bounded
        by ``batch_size``), so a GPU does several windows' work in the sequential calls of one. Each result is what
        :meth:`separate_detailed` gives for that mixture alone (same seed, so the same noise), up to float
        rounding; its ``unet_evaluations`` is that mixture's own share of the work.
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
        c_invs = [inversion_prompts(s, settings.inv_prompt) for s in source_lists]
        mixtures = [_Mixture(wave, s, c) for (wave, _), s, c in zip(checked, source_lists, c_invs)]
        layouts = [layout for _, layout in checked]
        groups = self._groups(mixtures)
        step_done = _step_counter(2 * settings.steps * len(groups) * settings.passes, progress)

        with torch.no_grad():
            stems, retried = self._separate_mixtures(mixtures, settings, step_done)
            for _ in range(settings.passes - 1):
                stems = self._next_pass(stems, mixtures, layouts, retried, settings, step_done)
        return [self._result(mixture, stem, layout, flags, settings, len(groups[self._group_key(mixture.wave)]))
                for mixture, stem, layout, flags in zip(mixtures, stems, layouts, retried)]

    # -- the steps of one pass -----------------------------------------------------------------------------

    def _group_key(self, wave: torch.Tensor) -> tuple[int, int | None]:
        """Mixtures batch together when their latents have the same shape (and, for a backbone conditioned on
        the window's length, the same length): in practice all the full windows of a recording."""
        length = int(wave.shape[-1])
        return self.backbone.padded_length(length), (length if self.backbone.conditions_on_length else None)

    def _groups(self, mixtures: list[_Mixture]) -> dict[tuple[int, int | None], list[int]]:
        groups: dict[tuple[int, int | None], list[int]] = {}
        for j, mixture in enumerate(mixtures):
            groups.setdefault(self._group_key(mixture.wave), []).append(j)
        return groups

    def _separate_mixtures(self, mixtures: list[_Mixture], settings: SeparationSettings,
                           step_done: Callable[[], None]) -> tuple[list[torch.Tensor], list[list[bool]]]:
        """One pass over ``mixtures``: encode -> invert -> denoise -> decode, a group of same-shaped mixtures at a
        time. Returns each mixture's stems [S, channels, N] (at the input's level) and which of them came out
        non-finite (then recomputed in float32)."""
        stems: list[torch.Tensor] = [torch.empty(0)] * len(mixtures)
        retried: list[list[bool]] = [[] for _ in mixtures]
        for members in self._groups(mixtures).values():
            length = int(mixtures[members[0]].wave.shape[-1])
            seconds = length / self.sample_rate
            self.backbone.check_window(seconds)
            scaled = [self.backbone.scale(mixtures[j].wave) for j in members]
            x0 = torch.cat([self._encode(wave, settings.seed) for wave, _ in scaled])
            jobs = [_Job(x0[k:k + 1], mixtures[j].sources, mixtures[j].c_inv) for k, j in enumerate(members)]
            decoded = self._decode(torch.cat(self._separate_latents(jobs, settings, seconds, step_done)))
            start = 0
            for job, j, (_, unscale) in zip(jobs, members, scaled):
                own = decoded[start:start + len(job.sources), :, :length]
                start += len(job.sources)
                bad = [not bool(torch.isfinite(stem).all()) for stem in own]
                if any(bad):
                    own = self._retry_in_fp32(own, bad, job, settings, seconds)
                stems[j], retried[j] = own * unscale, bad
        return stems, retried

    def _separate_latents(self, jobs: list[_Job], settings: SeparationSettings, seconds: float,
                          step_done: Callable[[], None]) -> list[torch.Tensor]:
        """Invert each mixture once per distinct c_inv, then denoise every source of every mixture in one batch.
        Returns each job's latents [len(job.sources), ...]."""
        # Inversion rows: one per (mixture, distinct c_inv) ("null": one inversion shared by all its sources).
        inv_rows = [(j, c) for j, job in enumerate(jobs) for c in dict.fromkeys(job.c_inv)]
        x0_rows = torch.cat([jobs[j].x0 for j, _ in inv_rows])
        # Denoising rows: every (mixture, source), each starting from its mixture's inversion with its c_inv.
        rev_prompts = [source for job in jobs for source in job.sources]
        row_of = torch.tensor([inv_rows.index((j, c)) for j, job in enumerate(jobs) for c in job.c_inv],
                              device=x0_rows.device)
        noise = GuidedNoise(lambda x, t, prompts: self._predict(x, t, prompts, seconds), settings.guidance,
                            self.batch_size)
        run = SamplingRun(settings.inversion, settings.steps, settings.seed, noise, step_done, self._full_precision,
                          self.batch_size)
        inverted = self.backbone.invert(x0_rows, [c for _, c in inv_rows], run)
        latents = self.backbone.denoise(inverted.select(row_of), rev_prompts, run)
        return list(latents.split([len(job.sources) for job in jobs]))

    def _next_pass(self, stems: list[torch.Tensor], mixtures: list[_Mixture], layouts: list[str],
                   retried: list[list[bool]], settings: SeparationSettings,
                   step_done: Callable[[], None]) -> list[torch.Tensor]:
        """One more pass of iterative separation: every stem of the previous pass is a mixture of its own,
        separated with its source's c_rev and c_inv (a mono input's stem as mono again). ``retried`` is updated."""
        pairs = [(j, i) for j, mixture in enumerate(mixtures) for i in range(len(mixture.sources))]
        alone = [_Mixture(self._as_input(stems[j][i], layouts[j]), [mixtures[j].sources[i]], [mixtures[j].c_inv[i]])
                 for j, i in pairs]
        again, flags = self._separate_mixtures(alone, settings, step_done)
        for k, (j, i) in enumerate(pairs):
            retried[j][i] = retried[j][i] or flags[k][0]
        return [torch.cat([again[k] for k, (owner, _) in enumerate(pairs) if owner == j]) for j in range(len(mixtures))]

    def _as_input(self, stem: torch.Tensor, layout: str) -> torch.Tensor:
        if layout.startswith("mono"):  # the stem the caller gets is the channels' mean
            return stem.mean(dim=0, keepdim=True).expand(self.channels, -1).contiguous()
        return stem

    def _result(self, mixture: _Mixture, stems: torch.Tensor, layout: str, retried: list[bool],
                settings: SeparationSettings, batched: int) -> SeparationResult:
        noise = GuidedNoise(self._predict, settings.guidance)  # only counts: what each prompt's evaluations cost
        shares = [_work_share(noise, mixture.c_inv, mixture.sources, self.backbone, settings)]
        for _ in range(settings.passes - 1):  # each source now inverts its own stem: no c_inv is shared
            own = [_work_share(noise, [c], [s], self.backbone, settings) for s, c in zip(mixture.sources, mixture.c_inv)]
            shares.append((sum(c for c, _ in own), sum(u for _, u in own)))
        conditional, unconditional = sum(c for c, _ in shares), sum(u for _, u in shares)
        if layout == "mono":
            stems = stems.mean(dim=1)
        elif layout == "mono-channels":
            stems = stems.mean(dim=1, keepdim=True)
        length = int(mixture.wave.shape[-1])
        return SeparationResult(
            stems=stems.contiguous(), sources=list(mixture.sources), inversion_prompts=list(mixture.c_inv),
            fp32_retry=retried if self.dtype != torch.float32 else [False] * len(mixture.sources),
            unet_evaluations=conditional + unconditional, sample_rate=self.sample_rate,
            details={"inversion": settings.inversion, "steps": settings.steps, "guidance": settings.guidance,
                     "seed": settings.seed, "passes": settings.passes,
                     "unet_evaluations_per_pass": [c + u for c, u in shares],
                     "padded_samples": self.backbone.padded_length(length), "model": self.model_id,
                     "backbone": self.backbone.name, "sampler": self.backbone.samplers[settings.inversion],
                     "channels": self.channels, "seconds_total": round(length / self.sample_rate, 6),
                     "conditional_evaluations": conditional, "unconditional_evaluations": unconditional,
                     "batched_mixtures": batched},
        )

    def sampler(self, inversion: str = "ddpm") -> str:
        """What ``inversion`` runs on this backbone (the manifest records it)."""
        return self.backbone.samplers[check_inversion(inversion)]

    # -- argument checks ------------------------------------------------------------------------------------

    def _check_wave(self, wave, sample_rate: int | None) -> tuple[torch.Tensor, str]:
        """The wave as float32 CPU samples [model channels, samples] and the caller's layout: ``"mono"``
        ([samples]), ``"mono-channels"`` ([1, samples] into a stereo model) or ``"channels"``."""
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
        if wave.ndim == 1 or (wave.shape[0] == 1 and self.channels > 1):
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
        limit = self.backbone.max_steps
        if settings.steps > limit:
            raise ValueError(
                f"steps must be a whole number from 1 to {limit} (50 is the default), got {settings.steps}")
        return settings

    # -- the model ------------------------------------------------------------------------------------------

    def _set_compute_dtype(self, dtype: torch.dtype) -> None:
        _cast(self.backbone.denoiser, dtype)
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
        if prompt not in self._conditionings:
            if len(self._conditionings) >= _CONDITIONING_CACHE_SIZE:
                self._conditionings.pop(next(iter(self._conditionings)))
            self._conditionings[prompt] = self.backbone.encode(prompt, self.device)
        return self._conditionings[prompt]

    def _predict(self, latents: torch.Tensor, timestep: torch.Tensor, prompts: list[str],
                 seconds: float = 0.0) -> torch.Tensor:
        """One model forward for a batch of (float32 latent, prompt) pairs of a ``seconds`` long window; the
        float32 model output.

        A batch the device has no memory for is split in halves (and later batches are kept to the size that
        fitted), so an unbounded ``batch_size`` never fails where smaller forwards would work; the result is the
        same up to float rounding.
        """
        count = latents.shape[0]
        if self._fits is not None and count > self._fits:
            step = self._fits  # a part may lower self._fits again; each part then splits itself
            return torch.cat([self._predict(latents[i:i + step], _rows(timestep, i, step), prompts[i:i + step],
                                            seconds)
                              for i in range(0, count, step)])
        batch = self.backbone.stack([self._conditioning(p) for p in prompts], self._compute_dtype, seconds)
        try:
            eps = self.backbone.predict(latents, timestep, batch, self._compute_dtype).float()
        except _OUT_OF_MEMORY:
            if count == 1:
                raise
            del batch
            self._fits = count // 2
            logger.warning("a model forward of %d samples did not fit in memory; using at most %d per forward "
                           "from now on (pass batch_size to set the bound yourself)", count, self._fits)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return self._predict(latents, timestep, prompts, seconds)
        self._evaluations += count
        return eps

    def _encode(self, wave: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Latent x0 [1, ...] of a scaled window [channels, N] (or [N]), padded with silence to the model's grid;
        ``seed`` (default: the bound one) for a backbone that samples its VAE posterior."""
        wave = wave.reshape(1, -1) if wave.ndim == 1 else wave
        length = wave.shape[-1]
        padded = torch.nn.functional.pad(wave, (0, self.backbone.padded_length(length) - length))
        return self.backbone.encode_audio(padded, self.settings.seed if seed is None else seed)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, channels, samples] (float32 CPU), decoded ``batch_size`` latents at a time."""
        chunk = self.batch_size or latents.shape[0]
        return torch.cat([self.backbone.decode_audio(latents[start:start + chunk]).float().cpu()
                          for start in range(0, latents.shape[0], chunk)])

    def _retry_in_fp32(self, stems: torch.Tensor, bad: list[bool], job: _Job, settings: SeparationSettings,
                       seconds: float) -> torch.Tensor:
        """Recompute the non-finite stems with the denoiser in float32 (same seed and prompts)."""
        names = ", ".join(source for source, is_bad in zip(job.sources, bad) if is_bad)
        if self._compute_dtype == torch.float32:
            logger.warning("stems %s came out NaN/inf in float32; their bad samples are set to 0", names)
            return torch.nan_to_num(stems, nan=0.0, posinf=0.0, neginf=0.0)
        logger.warning("stems %s came out NaN/inf in %s; recomputing them in float32", names, self._compute_dtype)
        rows = [i for i, is_bad in enumerate(bad) if is_bad]
        # Only the bad sources, each keeping the c_inv it had (not one rebuilt from the smaller source list).
        again = _Job(job.x0, [job.sources[i] for i in rows], [job.c_inv[i] for i in rows])
        with self._full_precision():
            latents = self._separate_latents([again], settings, seconds, lambda: None)
        fixed = stems.clone()
        fixed[rows] = torch.nan_to_num(self._decode(torch.cat(latents))[..., :stems.shape[-1]], nan=0.0,
                                       posinf=0.0, neginf=0.0)
        return fixed


def _work_share(noise: GuidedNoise, c_inv: list[str], sources: list[str], backbone: Backbone,
                settings: SeparationSettings) -> tuple[int, int]:
    """(conditional, unconditional) sample-evaluations one mixture costs: its distinct c_inv at every inversion
    call, its sources at every denoising call."""
    inverting, denoising = backbone.model_calls(settings.inversion, settings.steps)
    conditional = unconditional = 0
    for prompts, count in ((list(dict.fromkeys(c_inv)), inverting), (sources, denoising)):
        for prompt in prompts:
            c, u = noise.branch_counts(prompt)
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
