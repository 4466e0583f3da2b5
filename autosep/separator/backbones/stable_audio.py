"""Full-band stereo backbones: Stable Audio Open 1.0 and Stable Audio 3 (44.1 kHz stereo), through diffusers.

A full-band backbone works on the waveform itself (the VAE encodes [channels, samples] at the model's rate: no
mel front end, no vocoder), conditions its DiT on the text and on the window's real length in seconds, and brings
its own sampler with the two inversions of :mod:`autosep.separator.flow_inversion` (``ddpm`` = edit-friendly,
``ddim`` = the deterministic ODE). Stereo is separated as stereo: one latent for both channels.

The "null" prompt is each model's own unconditional input, as its pipeline uses it for classifier-free guidance:
all-zero cross-attention context for Stable Audio Open, the encoded empty prompt for Stable Audio 3.
"""

from __future__ import annotations

import logging
import math
from abc import ABC
from pathlib import Path
from typing import Any

from ...errors import ModelNotAvailableError
from .base import Backbone, Conditioning, Inverted, ModelCard, SamplingRun, diffusers_pipeline_is_cached

logger = logging.getLogger(__name__)

STABILITY_LICENCE = "Stability AI Community License"  # stable-audio-open-1.0 and stable-audio-3 model cards


class FullBandBackbone(Backbone, ABC):
    """A waveform-domain text-to-audio DiT (see the module docstring)."""

    conditions_on_length = True

    @property
    def sample_rate(self) -> int:
        return int(self.pipe.vae.config.sampling_rate)

    @property
    def channels(self) -> int:
        return int(self.pipe.vae.config.audio_channels)

    @property
    def denoiser(self):
        return self.pipe.transformer

    @property
    def max_steps(self) -> int:
        return 1000

    @property
    def hop(self) -> int:
        """Waveform samples per latent frame."""
        raise NotImplementedError

    def padded_length(self, samples: int) -> int:
        return max(1, math.ceil(samples / self.hop)) * self.hop

    def decode_audio(self, latents):
        return self.pipe.vae.decode(latents.float()).sample.float()

    @staticmethod
    def _edit_noise(x0, run: SamplingRun) -> list:
        """The edit-friendly inversion's noise maps [1, ...] on ``x0``'s device (one per step, from the run's seed),
        shared by every row of ``x0``."""
        from .. import flow_inversion as fi

        return [n.to(x0.device)[None] for n in fi.auxiliary_noise(tuple(x0.shape[1:]), run.steps, run.seed)]

    @staticmethod
    def _model_fn(run: SamplingRun, prompts: list[str]):
        """``fn(x, sigma)`` for the flow samplers: rows of ``x`` are ``prompts`` repeated (an edit-friendly
        inversion evaluates every step's latents in one call, step-major)."""
        return lambda x, sigma: run.noise(x, sigma, prompts * (x.shape[0] // len(prompts)))


class StableAudioOpenBackbone(FullBandBackbone):
    """Stable Audio Open 1.0: T5 text + seconds_start/seconds_total through the projection model, v-prediction DiT,
    Oobleck VAE, SDE DPM-Solver++ (``CosineDPMSolverMultistepScheduler``)."""

    name = "stable-audio-open"
    pipeline_classes = ("StableAudioPipeline",)
    layout = "a diffusers StableAudioPipeline folder"
    samplers = {"ddpm": "dpmsolver++-sde edit-friendly", "ddim": "probability-flow ode euler"}
    # Sizes: parameter counts of the diffusers components (DiT, VAE, text encoder) in float32.
    models = (ModelCard(
        "stable-audio-open", "stabilityai/stable-audio-open-1.0", "~5.3 GB",
        "Stable Audio Open 1.0: 44.1 kHz stereo, up to 47 s windows (1.06B DiT, T5-base, Oobleck VAE); full-band "
        "stems of music and effects. Gated: needs torchsde and an accepted licence", STABILITY_LICENCE),)

    # The published checkpoint's window: transformer/config.json sample_size 1024 latent frames, vae/config.json
    # downsampling_ratios [2, 4, 4, 8, 8] (2048 samples a frame) at sampling_rate 44100: 47.55 s.
    PUBLISHED_WINDOW = 1024 * 2048 / 44100

    @classmethod
    def known_window(cls, folder: Path | None = None) -> float | None:
        if folder is None:
            return cls.PUBLISHED_WINDOW
        import json

        try:  # the DiT's training length: sample_size latent frames
            transformer = json.loads((folder / "transformer" / "config.json").read_text())
            vae = json.loads((folder / "vae" / "config.json").read_text())
            return int(transformer["sample_size"]) * math.prod(int(r) for r in vae["downsampling_ratios"]) \
                / int(vae["sampling_rate"])
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def __init__(self, pipe: Any):
        super().__init__(pipe)
        from diffusers import CosineDPMSolverMultistepScheduler

        # Its preconditioning (c_in, c_noise, c_out) depends on the config only.
        self._precondition = CosineDPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        self._rotary: dict[int, Any] = {}
        self._seconds: dict = {}
        self._long_window_warned = False

    @classmethod
    def load(cls, folder: Path) -> Any:
        import importlib.util

        if importlib.util.find_spec("torchsde") is None:  # without it diffusers substitutes a dummy that fails
            raise ModelNotAvailableError(
                f"the Stable Audio Open pipeline in {folder} samples with CosineDPMSolverMultistepScheduler, which "
                "needs the torchsde package: install it with `pip install 'autosep[stable-audio]'` (or `pip install "
                "torchsde`)"
            )
        return super().load(folder)

    @property
    def text_modules(self):
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

    def check_window(self, seconds: float) -> None:
        if seconds > self.default_window * 1.001 and not self._long_window_warned:
            self._long_window_warned = True  # once per separator, not once per window
            logger.warning("a %.2f s window is longer than the %.2f s Stable Audio Open was trained on; the DiT "
                           "runs on it, but shorter windows (--window) stay in what it has seen", seconds,
                           self.default_window)

    def encode(self, prompt, device) -> Conditioning:
        import torch

        from ..guidance import UNCONDITIONAL

        text = self.pipe.encode_prompt([prompt], device, do_classifier_free_guidance=False)
        return {"text": text, "null": torch.tensor([prompt == UNCONDITIONAL])}

    def _duration(self, seconds: float, dtype, device):
        key = (round(float(seconds), 6), dtype)
        if key not in self._seconds:
            limit = float(self.pipe.projection_model.config.max_value)
            start, end = self.pipe.encode_duration(0.0, min(float(seconds), limit), device, False, 1)
            self._seconds = {key: (start.to(dtype), end.to(dtype))}  # one window length at a time
        return self._seconds[key]

    def stack(self, conditionings, dtype, seconds=0.0):
        import torch

        device = conditionings[0]["text"].device
        start, end = self._duration(seconds, dtype, device)
        contexts = []
        for c in conditionings:
            context = torch.cat([c["text"].to(dtype), start, end], dim=1)
            # The pipeline's unconditional branch: the whole cross-attention context zeroed, seconds included.
            contexts.append(torch.zeros_like(context) if bool(c["null"]) else context)
        return {"encoder_hidden_states": torch.cat(contexts),
                "global_hidden_states": torch.cat([start, end], dim=2).expand(len(conditionings), -1, -1)}

    def _rotary_embedding(self, frames: int):
        if frames not in self._rotary:
            from diffusers.models.embeddings import get_1d_rotary_pos_embed

            self._rotary = {frames: get_1d_rotary_pos_embed(
                self.pipe.rotary_embed_dim, frames + 1, use_real=True, repeat_interleave_real=False)}
        return self._rotary[frames]

    def predict(self, latents, t, batch, dtype):
        import torch

        pre = self._precondition
        view = t.reshape(-1, *([1] * (latents.ndim - 1))).to(latents.device, torch.float32)
        # Scaled by c_in in float32 first: the latents reach sigma_max = 500 before it, the DiT's input is ~1.
        scaled = pre.precondition_inputs(latents.float(), view).to(dtype)
        timestep = pre.precondition_noise(t.float()).to(latents.device)
        return self.pipe.transformer(
            scaled, timestep, encoder_hidden_states=batch["encoder_hidden_states"],
            global_hidden_states=batch["global_hidden_states"],
            rotary_embedding=self._rotary_embedding(latents.shape[-1]), return_dict=False,
        )[0]

    def encode_audio(self, wave, seed):
        return self.pipe.vae.encode(wave[None].to(self.pipe.device).float()).latent_dist.mode().float()

    def model_calls(self, inversion: str, steps: int) -> tuple[int, int]:
        from .. import flow_inversion as fi

        inverting, denoising = super().model_calls(inversion, steps)
        # The ODE inversion refines its first step (from sigma = 0) with a few more calls.
        return inverting + (fi.FIRST_STEP_ITERATIONS if inversion == "ddim" else 0), denoising

    def invert(self, x0, prompts, run: SamplingRun) -> Inverted:
        from .. import flow_inversion as fi

        scheduler = fi.sde_scheduler(self.pipe.scheduler.config, run.steps, x0.device)
        model_fn = self._model_fn(run, prompts)
        if run.inversion == "ddpm":
            noise = self._edit_noise(x0, run)
            x_top, zs, residual = fi.sde_edit_friendly_invert(scheduler, x0, model_fn, noise, on_step=run.step_done)
            return Inverted(x_top, zs, {"residual": residual})
        return Inverted(fi.sde_ode_invert(scheduler, x0, model_fn, on_step=run.step_done))

    def denoise(self, start: Inverted, prompts, run: SamplingRun):
        from .. import flow_inversion as fi

        scheduler = fi.sde_scheduler(self.pipe.scheduler.config, run.steps, start.x_top.device)
        model_fn = self._model_fn(run, prompts)
        if start.noise_maps is not None:
            return fi.sde_reverse(scheduler, start.x_top, model_fn, start.noise_maps, start.extra["residual"],
                                  on_step=run.step_done)
        return fi.sde_ode_reverse(scheduler, start.x_top, model_fn, on_step=run.step_done)


class StableAudio3Backbone(FullBandBackbone):
    """Stable Audio 3: T5Gemma text (+ the duration token) for cross-attention, duration for AdaLN, rectified-flow
    velocity DiT, SAME VAE, Euler (``FlowMatchEulerDiscreteScheduler``).

    Stability AI publishes it as an original stable-audio-tools checkpoint, which :mod:`autosep.separator.sa3_convert`
    converts to a diffusers pipeline once (a folder or a hub repository holding ``model.safetensors`` +
    ``model_config.json``); a diffusers ``StableAudio3Pipeline`` folder loads as it is.
    """

    name = "stable-audio-3"
    pipeline_classes = ("StableAudio3Pipeline",)
    layout = ("a diffusers StableAudio3Pipeline folder, or Stable Audio 3's original checkpoint (model.safetensors "
              "+ model_config.json)")
    samplers = {"ddpm": "rectified-flow euler edit-friendly", "ddim": "rectified-flow euler ode"}
    # The longest window the medium model is documented to do well, so a recording has as few seams as it can:
    # Stability-AI/stable-audio-3 docs/guides/model-overview.md gives the medium DiT a "Max Duration" of ~4.75
    # min (trained at variable length up to it); its README's model table allows generating up to 380 s and the
    # duration conditioner spans 0-384 s, but beyond 4.75 min is past what it was trained on. --window overrides.
    DEFAULT_WINDOW = 285.0
    models = (
        ModelCard("stable-audio-3", "stabilityai/stable-audio-3-medium-base", "~10 GB",
                  "Stable Audio 3 medium base (non-distilled): 44.1 kHz stereo rectified flow (1.45B DiT, T5Gemma, "
                  "SAME-L VAE); full-band stems. Gated; converted from the original checkpoint on first load",
                  STABILITY_LICENCE),
        ModelCard("stable-audio-3-distilled", "stabilityai/stable-audio-3-medium", "~10 GB",
                  "Stable Audio 3 medium, distilled (guidance baked in): not guidance-free at w = 1, so it generates "
                  "rather than separates; use stable-audio-3", STABILITY_LICENCE),
    )

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

    # -- finding and converting the original checkpoint ---------------------------------------------------------

    @classmethod
    def claims_folder(cls, folder: Path) -> bool:
        return super().claims_folder(folder) or is_original_checkpoint(folder)

    @classmethod
    def claims_repo(cls, model_id: str) -> bool:
        return super().claims_repo(model_id) or "stable-audio-3" in model_id.lower()

    @classmethod
    def prepare_folder(cls, folder: Path) -> Path:
        from .. import sa3_convert
        from ...model_files import offline_mode

        if not is_original_checkpoint(folder):
            return folder
        return _converted(lambda: sa3_convert.local_original_checkpoint(folder, offline_mode()))

    @classmethod
    def download(cls, model_id: str, offline: bool) -> Path:
        from .. import sa3_convert

        # Stability's repositories hold the original checkpoint; a diffusers-format repository downloads as usual.
        converted = _converted(lambda: sa3_convert.hub_original_checkpoint(model_id, offline))
        return converted if converted is not None else super().download(model_id, offline)

    @classmethod
    def hint(cls, model: str) -> str:
        return _hint(model)

    @classmethod
    def known_window(cls, folder: Path | None = None) -> float | None:
        return cls.DEFAULT_WINDOW

    @classmethod
    def is_cached(cls, model_id: str) -> bool:
        from ...model_files import converted_root

        return any(converted_root(model_id).glob("*/model_index.json")) or diffusers_pipeline_is_cached(model_id)

    # -- the model ----------------------------------------------------------------------------------------------

    @property
    def text_modules(self):
        return [self.pipe.text_encoder, self.pipe.duration_embedder]

    @property
    def hop(self) -> int:
        return int(self.pipe.vae.downsampling_ratio)

    @property
    def default_window(self) -> float:
        return self.DEFAULT_WINDOW

    def encode(self, prompt, device) -> Conditioning:
        embeds, mask = self.pipe.encode_prompt([prompt], device, 1)
        return {"text": embeds, "mask": mask}

    def _global(self, seconds: float, dtype, device):
        key = (round(float(seconds), 6), dtype)
        if key not in self._duration_cache:
            embedding = self.pipe.encode_duration(float(seconds), device, 1, 1)
            self._duration_cache = {key: embedding.to(dtype)}
        return self._duration_cache[key]

    def stack(self, conditionings, dtype, seconds=0.0):
        import torch

        device = conditionings[0]["text"].device
        global_states = self._global(seconds, dtype, device)
        contexts, masks = [], []
        for c in conditionings:
            context, mask = self.pipe.prepare_cross_attention(c["text"].to(dtype), c["mask"], global_states)
            contexts.append(context)
            masks.append(mask)
        return {"encoder_hidden_states": torch.cat(contexts), "encoder_attention_mask": torch.cat(masks),
                "global_hidden_states": global_states.expand(len(conditionings), -1)}

    def predict(self, latents, t, batch, dtype):
        # The pipeline feeds scheduler.timesteps = sigmas x num_train_timesteps.
        timestep = (t.float() * self.pipe.scheduler.config.num_train_timesteps).to(latents.device)
        return self.pipe.transformer(latents.to(dtype), timestep, return_dict=False, **batch)[0]

    def encode_audio(self, wave, seed):
        return self.pipe.vae.encode(wave[None].to(self.pipe.device).float()).latents.float()

    def invert(self, x0, prompts, run: SamplingRun) -> Inverted:
        from .. import flow_inversion as fi

        scheduler = fi.flow_scheduler(self.pipe.scheduler.config, run.steps, device=x0.device)
        model_fn = self._model_fn(run, prompts)
        if run.inversion == "ddpm":
            noise = self._edit_noise(x0, run)
            return Inverted(*fi.flow_edit_friendly_invert(scheduler, x0, model_fn, noise, on_step=run.step_done))
        return Inverted(fi.flow_ode_invert(scheduler, x0, model_fn, on_step=run.step_done))

    def denoise(self, start: Inverted, prompts, run: SamplingRun):
        from .. import flow_inversion as fi

        scheduler = fi.flow_scheduler(self.pipe.scheduler.config, run.steps, device=start.x_top.device)
        return fi.flow_reverse(scheduler, start.x_top, self._model_fn(run, prompts), start.noise_maps,
                               on_step=run.step_done)


def is_original_checkpoint(folder: Path) -> bool:
    """A folder holding Stable Audio 3 as Stability publishes it (stable-audio-tools layout), not a pipeline."""
    folder = Path(folder)
    return ((folder / "model.safetensors").is_file() and (folder / "model_config.json").is_file()
            and not (folder / "model_index.json").is_file())


def _converted(convert) -> Path | None:
    """Run a Stable Audio 3 checkpoint conversion, its failures as ModelNotAvailableError (hub errors pass)."""
    from ..sa3_convert import ConversionError

    try:
        return convert()
    except ConversionError as exc:
        raise ModelNotAvailableError(f"cannot convert the Stable Audio 3 checkpoint: {exc}") from exc


_CONVERSION_ADVICE = (
    "If it is an original stable-audio-tools checkpoint (model.safetensors + model_config.json, as Stability AI "
    "publishes Stable Audio 3), autosep converts it when both files are there; or convert it once with diffusers' "
    "scripts/convert_stable_audio_3_to_diffusers.py (from the diffusers source repository, not part of the "
    "installed package): `python convert_stable_audio_3_to_diffusers.py --checkpoint_path REPO --output_dir DIR`, "
    "then pass --model DIR"
)


def _hint(model: str) -> str:
    folder = Path(model)
    if folder.is_dir():
        if (folder / "model_config.json").is_file():
            return f"{folder} looks like an original stable-audio-tools checkpoint. {_CONVERSION_ADVICE}"
        return ""
    return _CONVERSION_ADVICE if "stable-audio" in model.lower() else ""

