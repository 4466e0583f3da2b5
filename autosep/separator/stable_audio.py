"""Full-band stereo backbones: Stable Audio Open 1.0 and Stable Audio 3 (44.1 kHz stereo), through diffusers.

A full-band backbone works on the waveform itself (the VAE encodes [channels, samples] at the model's rate: no
mel front end, no vocoder), conditions its DiT on the text and on the window's real length in seconds, and brings
its own sampler with the two inversions of :mod:`flow_inversion` (``ddpm`` = edit-friendly, ``ddim`` = the
deterministic ODE). :func:`separate_full_band` is ZeroSep on such a backbone: one latent for both channels, one
inversion per distinct c_inv (computed once and shared with the null c_inv), every source denoised in one batch,
guidance evaluating only the branches its weight needs.

The "null" prompt is each model's own unconditional input, as its pipeline uses it for classifier-free guidance:
all-zero cross-attention context for Stable Audio Open, the encoded empty prompt for Stable Audio 3.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

import torch
from torch import nn

from .backbones import Backbone, Conditioning
from .guidance import UNCONDITIONAL, GuidedNoise

logger = logging.getLogger(__name__)


class FullBandBackbone(Backbone):
    """A waveform-domain text-to-audio DiT (see the module docstring)."""

    full_band = True
    samplers: dict[str, str] = {}  # inversion name -> what the manifest records

    @property
    def sample_rate(self) -> int:
        return int(self.pipe.vae.config.sampling_rate)

    @property
    def channels(self) -> int:
        return int(self.pipe.vae.config.audio_channels)

    @property
    def denoiser(self) -> nn.Module:
        return self.pipe.transformer

    @property
    def float32_modules(self) -> list[nn.Module]:
        return [self.pipe.vae]  # the VAE runs once per window and stays in float32

    @property
    def hop(self) -> int:
        """Waveform samples per latent frame."""
        raise NotImplementedError

    @property
    def default_window(self) -> float:
        """The window length (seconds) separations use by default."""
        raise NotImplementedError

    @property
    def max_steps(self) -> int:
        return 1000

    def padded_length(self, samples: int) -> int:
        """The waveform length the VAE encodes for a window of ``samples`` (silence after the audio)."""
        return max(1, math.ceil(samples / self.hop)) * self.hop

    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """Latent x0 [1, latent channels, frames] of ``wave`` [channels, padded samples] (float32)."""
        raise NotImplementedError

    def decode_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, channels, samples] (float32) of latents [B, ...]."""
        return self.pipe.vae.decode(latents.float()).sample.float()

    def stack(self, conditionings: list[Conditioning], dtype: torch.dtype, seconds: float = 0.0) -> dict:
        raise NotImplementedError

    def predict(self, latents: torch.Tensor, sigma: torch.Tensor, batch: dict,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The raw model output for float32 latents at noise level ``sigma`` [B], the DiT running in ``dtype``."""
        raise NotImplementedError

    def separate(self, x0: torch.Tensor, sources: list[str], distinct: list[str], row_of: torch.Tensor,
                 inversion: str, steps: int, noise_for: GuidedNoise, seed: int,
                 step_done: Callable[[], None]) -> torch.Tensor:
        """Invert ``x0`` [len(distinct), ...] with the distinct c_inv and denoise every source: latents [S, ...]."""
        raise NotImplementedError


class StableAudioOpenBackbone(FullBandBackbone):
    """Stable Audio Open 1.0: T5 text + seconds_start/seconds_total through the projection model, v-prediction DiT,
    Oobleck VAE, SDE DPM-Solver++ (``CosineDPMSolverMultistepScheduler``)."""

    name = "stable-audio-open"
    samplers = {"ddpm": "dpmsolver++-sde edit-friendly", "ddim": "probability-flow ode euler"}

    def __init__(self, pipe: Any):
        super().__init__(pipe)
        from diffusers import CosineDPMSolverMultistepScheduler

        # Its preconditioning (c_in, c_noise, c_out) depends on the config only.
        self._precondition = CosineDPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        self._rotary: dict[int, Any] = {}
        self._seconds: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def text_modules(self) -> list[nn.Module]:
        return [self.pipe.text_encoder, self.pipe.projection_model]

    @property
    def hop(self) -> int:
        return int(self.pipe.vae.hop_length)

    @property
    def training_frames(self) -> int:
        return int(self.pipe.transformer.config.sample_size)

    @property
    def default_window(self) -> float:
        # The DiT was trained on sample_size latent frames (47.55 s for the real model).
        return self.training_frames * self.hop / self.sample_rate

    def padded_length(self, samples: int) -> int:
        # The pipeline always generates sample_size frames (shorter audio is silence after seconds_total), so a
        # window shorter than that is padded to it: the model sees what it was trained on.
        return max(super().padded_length(samples), self.training_frames * self.hop)

    def encode(self, prompt: str, device: torch.device) -> Conditioning:
        text = self.pipe.encode_prompt([prompt], device, do_classifier_free_guidance=False)
        null = torch.tensor([prompt == UNCONDITIONAL])
        return {"text": text, "null": null}

    def _duration(self, seconds: float, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (round(float(seconds), 6), dtype)
        if key not in self._seconds:
            limit = float(self.pipe.projection_model.config.max_value)
            start, end = self.pipe.encode_duration(0.0, min(float(seconds), limit), device, False, 1)
            self._seconds = {key: (start.to(dtype), end.to(dtype))}  # one window length at a time
        return self._seconds[key]

    def stack(self, conditionings: list[Conditioning], dtype: torch.dtype, seconds: float = 0.0) -> dict:
        device = conditionings[0]["text"].device
        start, end = self._duration(seconds, dtype, device)
        contexts = []
        for c in conditionings:
            context = torch.cat([c["text"].to(dtype), start, end], dim=1)
            # The pipeline's unconditional branch: the whole cross-attention context zeroed, seconds included.
            contexts.append(torch.zeros_like(context) if bool(c["null"]) else context)
        batch = len(conditionings)
        return {"encoder_hidden_states": torch.cat(contexts),
                "global_hidden_states": torch.cat([start, end], dim=2).expand(batch, -1, -1)}

    def _rotary_embedding(self, frames: int):
        if frames not in self._rotary:
            from diffusers.models.embeddings import get_1d_rotary_pos_embed

            self._rotary = {frames: get_1d_rotary_pos_embed(
                self.pipe.rotary_embed_dim, frames + 1, use_real=True, repeat_interleave_real=False)}
        return self._rotary[frames]

    def predict(self, latents, sigma, batch, dtype=torch.float32):
        pre = self._precondition
        view = sigma.reshape(-1, *([1] * (latents.ndim - 1))).to(latents.device, torch.float32)
        # Scaled by c_in in float32 first: the latents reach sigma_max = 500 before it, the DiT's input is ~1.
        scaled = pre.precondition_inputs(latents.float(), view).to(dtype)
        timestep = pre.precondition_noise(sigma.float()).to(latents.device)
        return self.pipe.transformer(
            scaled, timestep, encoder_hidden_states=batch["encoder_hidden_states"],
            global_hidden_states=batch["global_hidden_states"],
            rotary_embedding=self._rotary_embedding(latents.shape[-1]), return_dict=False,
        )[0]

    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        return self.pipe.vae.encode(wave[None].float()).latent_dist.mode().float()

    def separate(self, x0, sources, distinct, row_of, inversion, steps, noise_for, seed, step_done):
        from . import flow_inversion as fi

        device = x0.device
        config = self.pipe.scheduler.config

        def invert_fn(x, sigma):
            return noise_for(x, sigma, distinct * (x.shape[0] // len(distinct)))

        def reverse_fn(x, sigma):
            return noise_for(x, sigma, sources)

        if inversion == "ddpm":
            noise = [n.to(device) for n in fi.auxiliary_noise(tuple(x0.shape[1:]), steps, seed)]
            x_top, zs, residual = fi.sde_edit_friendly_invert(fi.sde_scheduler(config, steps, device), x0, invert_fn,
                                                              [n[None] for n in noise], on_step=step_done)
            zs = [z.index_select(0, row_of) for z in zs]
            return fi.sde_reverse(fi.sde_scheduler(config, steps, device), x_top.index_select(0, row_of), reverse_fn,
                                  zs, residual.index_select(0, row_of), on_step=step_done)
        scheduler = fi.sde_scheduler(config, steps, device)
        x_top = fi.sde_ode_invert(scheduler, x0, invert_fn, on_step=step_done)
        return fi.sde_ode_reverse(scheduler, x_top.index_select(0, row_of), reverse_fn, on_step=step_done)


class StableAudio3Backbone(FullBandBackbone):
    """Stable Audio 3: T5Gemma text (+ the duration token) for cross-attention, duration for AdaLN, rectified-flow
    velocity DiT, SAME VAE, Euler (``FlowMatchEulerDiscreteScheduler``)."""

    name = "stable-audio-3"
    samplers = {"ddpm": "rectified-flow euler edit-friendly", "ddim": "rectified-flow euler ode"}
    DEFAULT_WINDOW = 30.0  # seconds; the DiT takes any length (its duration conditioner spans 0-384 s)

    def __init__(self, pipe: Any):
        super().__init__(pipe)
        self._duration_cache: dict = {}
        if getattr(pipe.scheduler.config, "stochastic_sampling", False):
            # The distilled checkpoint (ping-pong sampler) has classifier-free guidance baked into its weights:
            # at w = 1 its prediction is not the conditional model ZeroSep inverts, so it generates more than it
            # separates.
            logger.warning(
                "this Stable Audio 3 checkpoint is the distilled one (stochastic ping-pong sampler, guidance baked "
                "into the weights): ZeroSep's w = 1 is not guidance-free there and the stems will be generated "
                "rather than separated. Use the base checkpoint (autosep alias stable-audio-3, "
                "stabilityai/stable-audio-3-medium-base); autosep samples it with deterministic Euler steps."
            )

    @property
    def text_modules(self) -> list[nn.Module]:
        return [self.pipe.text_encoder, self.pipe.duration_embedder]

    @property
    def hop(self) -> int:
        return int(self.pipe.vae.downsampling_ratio)

    @property
    def default_window(self) -> float:
        return self.DEFAULT_WINDOW

    def encode(self, prompt: str, device: torch.device) -> Conditioning:
        embeds, mask = self.pipe.encode_prompt([prompt], device, 1)
        return {"text": embeds, "mask": mask}

    def _global(self, seconds: float, dtype: torch.dtype, device) -> torch.Tensor:
        key = (round(float(seconds), 6), dtype)
        if key not in self._duration_cache:
            embedding = self.pipe.encode_duration(float(seconds), device, 1, 1)
            self._duration_cache = {key: embedding.to(dtype)}
        return self._duration_cache[key]

    def stack(self, conditionings: list[Conditioning], dtype: torch.dtype, seconds: float = 0.0) -> dict:
        device = conditionings[0]["text"].device
        global_states = self._global(seconds, dtype, device)
        contexts, masks = [], []
        for c in conditionings:
            context, mask = self.pipe.prepare_cross_attention(c["text"].to(dtype), c["mask"], global_states)
            contexts.append(context)
            masks.append(mask)
        batch = len(conditionings)
        return {"encoder_hidden_states": torch.cat(contexts), "encoder_attention_mask": torch.cat(masks),
                "global_hidden_states": global_states.expand(batch, -1)}

    def predict(self, latents, sigma, batch, dtype=torch.float32):
        # The pipeline feeds scheduler.timesteps = sigmas x num_train_timesteps.
        timestep = (sigma.float() * self.pipe.scheduler.config.num_train_timesteps).to(latents.device)
        return self.pipe.transformer(latents.to(dtype), timestep, return_dict=False, **batch)[0]

    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        return self.pipe.vae.encode(wave[None].float()).latents.float()

    def separate(self, x0, sources, distinct, row_of, inversion, steps, noise_for, seed, step_done):
        from . import flow_inversion as fi

        device = x0.device
        scheduler = fi.flow_scheduler(self.pipe.scheduler.config, steps, device=device)

        def invert_fn(x, sigma):
            return noise_for(x, sigma, distinct * (x.shape[0] // len(distinct)))

        def reverse_fn(x, sigma):
            return noise_for(x, sigma, sources)

        if inversion == "ddpm":
            noise = [n.to(device)[None] for n in fi.auxiliary_noise(tuple(x0.shape[1:]), steps, seed)]
            x_top, zs = fi.flow_edit_friendly_invert(scheduler, x0, invert_fn, noise, on_step=step_done)
            zs = [z.index_select(0, row_of) for z in zs]
            return fi.flow_reverse(scheduler, x_top.index_select(0, row_of), reverse_fn, zs, on_step=step_done)
        x_top = fi.flow_ode_invert(scheduler, x0, invert_fn, on_step=step_done)
        return fi.flow_reverse(scheduler, x_top.index_select(0, row_of), reverse_fn, None, on_step=step_done)


def full_band_backbone_for(pipe: Any) -> FullBandBackbone | None:
    """The full-band backbone for a Stable Audio pipeline, or None for other pipelines."""
    import diffusers

    if isinstance(pipe, diffusers.StableAudioPipeline):
        return StableAudioOpenBackbone(pipe)
    if isinstance(pipe, diffusers.StableAudio3Pipeline):
        return StableAudio3Backbone(pipe)
    return None


# -- loading -------------------------------------------------------------------------------------------------

def require_torchsde(folder) -> None:
    """Stable Audio Open's scheduler needs ``torchsde`` (without it diffusers substitutes a dummy that fails)."""
    import importlib.util

    from ..errors import ModelNotAvailableError

    if importlib.util.find_spec("torchsde") is None:
        raise ModelNotAvailableError(
            f"the Stable Audio Open pipeline in {folder} samples with CosineDPMSolverMultistepScheduler, which needs "
            "the torchsde package: install it with `pip install 'autosep[stable-audio]'` (or `pip install torchsde`)"
        )


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def hub_error_message(model_id: str, exc: BaseException) -> str | None:
    """A message saying what to do for the hub errors that need the user's action, or None for the others.

    Gated repositories (both Stable Audio checkpoints) fail until the licence is accepted on the model page and a
    token is given; a repository without ``model_index.json`` holds no diffusers pipeline (Stable Audio 3's hub
    repositories hold the original stable-audio-tools checkpoint).
    """
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError

    import re

    for error in _chain(exc):
        if isinstance(error, GatedRepoError):
            # The gated repository may be another one the model needs (Stable Audio 3's T5Gemma tokenizer).
            found = re.search(r"huggingface\.co/(?:api/models/)?([\w.-]+/[\w.-]+)", str(error))
            repo = found.group(1).rstrip(".") if found else model_id
            needed = "" if repo == model_id else f" (needed by {model_id!r})"
            return (
                f"the Hugging Face repository {repo!r}{needed} is gated and this machine has no access to it. To "
                f"use it: (1) open https://huggingface.co/{repo}, sign in and accept its licence (the Stability AI "
                "Community License for Stability's models); (2) give autosep a token of that account: run "
                "`hf auth login`, or set HF_TOKEN=hf_...; then rerun this command (or `autosep models download`)"
            )
        if isinstance(error, EntryNotFoundError) and "model_index.json" in str(error):
            return (
                f"the hub repository {model_id!r} holds no diffusers pipeline (no model_index.json). "
                f"{_CONVERSION_ADVICE}"
            )
    return None


_CONVERSION_ADVICE = (
    "If it is an original stable-audio-tools checkpoint (model.safetensors + model_config.json, as Stability AI "
    "publishes Stable Audio 3), convert it once with diffusers' scripts/convert_stable_audio_3_to_diffusers.py "
    "(from the diffusers source repository, not part of the installed package): `python "
    "convert_stable_audio_3_to_diffusers.py --checkpoint_path REPO --output_dir DIR`, then pass --model DIR"
)


def original_checkpoint_hint(folder) -> str:
    """Advice for a local folder that holds an original stable-audio-tools checkpoint instead of a pipeline."""
    from pathlib import Path

    folder = Path(folder)
    if folder.is_dir() and (folder / "model_config.json").is_file():
        return f". {folder} looks like an original stable-audio-tools checkpoint. {_CONVERSION_ADVICE}"
    return ""
