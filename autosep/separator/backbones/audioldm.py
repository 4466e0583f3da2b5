"""AudioLDM2 and AudioLDM (cvssp, diffusers pipelines), and what every 16 kHz mel-latent family shares.

:class:`MelBackbone` is a latent diffusion model over 16 kHz mono log-mel features (:mod:`autosep.separator.mel`):
the VAE encodes the features, a HiFi-GAN vocoder turns decoded features back into audio, and the sampler is
diffusers' DDIM scheduler with the two inversions of :mod:`autosep.separator.inversion` (``ddpm`` = edit-friendly,
``ddim`` = deterministic). AudioLDM2 conditions its UNet on CLAP + Flan-T5 through GPT-2; AudioLDM on a CLAP
embedding given as the class label. Tango (:mod:`.tango`) is a MelBackbone too.
"""

from __future__ import annotations

import warnings
from abc import ABC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Backbone, Conditioning, Inverted, ModelCard, SamplingRun

if TYPE_CHECKING:
    import torch
    from torch import nn

CVSSP_LICENCE = "CC BY-NC-SA 4.0"  # all cvssp AudioLDM/AudioLDM2 and declare-lab Tango weights (model cards)
DEFAULT_MAX_NEW_TOKENS = 8  # cvssp/audioldm2's language_model/config.json


class MelBackbone(Backbone, ABC):
    """A 16 kHz mono log-mel latent diffusion model with a UNet, a VAE and a vocoder (see the module docstring)."""

    samplers = {"ddpm": "ddpm edit-friendly (ddim scheduler, eta 1)", "ddim": "ddim (eta 0)"}
    WINDOW = 10.24  # seconds: the 1024 mel frames (100 a second) AudioLDM, AudioLDM2 and Tango were trained on

    @classmethod
    def known_window(cls, folder: Path | None = None) -> float | None:
        return cls.WINDOW

    @property
    def sample_rate(self) -> int:
        from .. import mel

        return mel.SAMPLE_RATE

    @property
    def channels(self) -> int:
        return 1

    @property
    def default_window(self) -> float:
        return self.WINDOW

    @property
    def float32_modules(self) -> list["nn.Module"]:
        return [self.pipe.vae, self.pipe.vocoder]

    @property
    def frame_multiple(self) -> int:
        """Samples the padded window is a multiple of: the VAE's and the UNet's downsampling of mel frames."""
        from .. import mel

        blocks = len(self.pipe.unet.config.block_out_channels)
        return mel.frame_multiple(int(self.pipe.vae_scale_factor), 2 ** (blocks - 1))

    def scale(self, wave):
        from .. import mel

        # Peak-normalised as the models' training audio; the factor brings the stems back to the input's level.
        return mel.normalise(wave)

    def padded_length(self, samples: int) -> int:
        multiple = self.frame_multiple
        return max(1, -(-samples // multiple)) * multiple

    def encode_audio(self, wave, seed):
        """The posterior mode of the VAE (ZeroSep's AudioLDM2 code encodes the mixture deterministically)."""
        return self.posterior(wave).mode().float() * self.pipe.vae.config.scaling_factor

    def posterior(self, wave):
        """The VAE's posterior over latents for ``wave`` [1, padded samples] (its log-mel features)."""
        from .. import mel

        features = mel.log_mel(wave.reshape(-1).cpu())[None, None].to(self.pipe.device)  # [1, 1, frames, 64]
        return self.pipe.vae.encode(features).latent_dist

    def decode_audio(self, latents):
        vae = self.pipe.vae
        features = vae.decode(latents.float() / vae.config.scaling_factor).sample
        return self.pipe.mel_spectrogram_to_waveform(features).float()[:, None, :]

    def predict(self, latents, t, batch, dtype):
        # AudioLDM/AudioLDM2 predict noise, Tango v; the scheduler's steps convert either.
        return self.pipe.unet(latents.to(dtype), t, return_dict=False, **batch)[0]

    # -- ZeroSep on the DDIM scheduler -------------------------------------------------------------------------

    def invert(self, x0, prompts, run: SamplingRun) -> Inverted:
        from .. import inversion as inv

        config, device = self.pipe.scheduler.config, x0.device
        if run.inversion == "ddpm":
            scheduler = inv.make_scheduler(config, run.steps, device)
            noise = [n.to(device) for n in inv.auxiliary_noise(tuple(x0[:1].shape), run.steps, run.seed)]
            x_top, zs = inv.ddpm_invert_batched(scheduler, x0, inversion_eps(run, prompts), noise)
            run.step_done()  # the last inversion step (z = 0) needs no model call
            return Inverted(x_top, zs)
        # DDIM inversion chains every step on the last and amplifies rounding: at bf16 the inverted x_T drifts
        # ~20% from float32's and the stems ~50% at 50 steps (benchmarks/inversion_precision.txt), so it runs in
        # float32 on every device; the reverse pass stays in the compute precision.
        inverse = inv.make_inverse_scheduler(config, run.steps, device)
        with run.full_precision():
            x_top = inv.ddim_invert(inverse, x0, lambda x, t: run.noise(x, t, prompts), on_step=run.step_done)
        return Inverted(x_top)

    def denoise(self, start: Inverted, prompts, run: SamplingRun):
        from .. import inversion as inv

        scheduler = inv.make_scheduler(self.pipe.scheduler.config, run.steps, start.x_top.device)
        return inv.reverse(scheduler, start.x_top, lambda x, t: run.noise(x, t, prompts), start.noise_maps,
                           on_step=run.step_done)


def inversion_eps(run: SamplingRun, prompts: list[str]):
    """``eps_all`` for :func:`~autosep.separator.inversion.ddpm_invert_batched`: all (timestep, row) pairs in
    forwards of at most ``run.batch_size`` sample-evaluations (one forward when unbounded), progress reported per
    finished timestep."""

    def eps_all(latents, timesteps):
        steps_count, rows = latents.shape[:2]
        flat = latents.reshape(steps_count * rows, *latents.shape[2:])
        flat_t = timesteps.to(latents.device).repeat_interleave(rows)
        flat_prompts = prompts * steps_count
        per_sample = [run.noise.evaluations(p) for p in flat_prompts]
        limit = run.batch_size or sum(per_sample)
        outputs = []
        start = reported = 0
        while start < len(flat_prompts):
            end, cost = start, 0
            # Fill the forward up to the bound; a sample needing both branches never straddles two forwards.
            while end < len(flat_prompts) and (end == start or cost + per_sample[end] <= limit):
                cost += per_sample[end]
                end += 1
            outputs.append(run.noise(flat[start:end], flat_t[start:end], flat_prompts[start:end]))
            start = end
            for _ in range(start // rows - reported):
                run.step_done()
            reported = start // rows
        import torch

        return torch.cat(outputs).reshape(latents.shape)

    return eps_all


def _pad_sequences(tensors: list, lengths_dim: int = 1) -> list:
    """Right-pad per-prompt tensors [1, L_i, ...] (or masks [1, L_i]) to the longest L with zeros."""
    from torch import nn

    longest = max(t.shape[lengths_dim] for t in tensors)
    return [nn.functional.pad(t, (0, 0) * (t.ndim - 1 - lengths_dim) + (0, longest - t.shape[lengths_dim]))
            for t in tensors]


def pad_and_cat(tensors: list, dtype=None):
    """One batch from per-prompt sequences of different lengths, padded with masked (zero) positions."""
    import torch

    batch = torch.cat(_pad_sequences(tensors))
    return batch if dtype is None else batch.to(dtype)


def _card(alias: str, repo: str, size: str, description: str, default: bool = False) -> ModelCard:
    return ModelCard(alias, repo, size, description, CVSSP_LICENCE, default)


class AudioLDM2Backbone(MelBackbone):
    """AudioLDM2: CLAP + T5 through the projection model, GPT-2 generated embeddings, T5 states for cross-attention."""

    name = "audioldm2"
    pipeline_classes = ("AudioLDM2Pipeline",)
    layout = "a diffusers AudioLDM2Pipeline folder (model_index.json and its subfolders)"
    # UNet sizes: what the published unet/config.json files give built with random weights (issue 19's audit of
    # the hub configs; they are not shipped here): about 269M (base, music) and 422M-570M (large).
    models = (
        _card("audioldm2", "cvssp/audioldm2", "~4.5 GB",
              "AudioLDM2 (CLAP + Flan-T5 + GPT-2 conditioning, ~270M UNet): general sounds; the default", True),
        _card("audioldm2-large", "cvssp/audioldm2-large", "~6 GB",
              "AudioLDM2 with the larger UNet (~420M-570M): general sounds, slower, sometimes cleaner"),
        _card("audioldm2-music", "cvssp/audioldm2-music", "~4.5 GB",
              "AudioLDM2 trained on music: instruments and ensembles"),
    )

    @classmethod
    def components(cls, folder: Path) -> dict[str, Any]:
        import json

        config = json.loads((folder / "language_model" / "config.json").read_text())
        return {"language_model": language_model(folder)} if config.get("model_type") == "gpt2" else {}

    @property
    def text_modules(self):
        p = self.pipe
        return [p.text_encoder, p.text_encoder_2, p.projection_model, p.language_model]

    def encode(self, prompt, device) -> Conditioning:
        with warnings.catch_warnings():
            # diffusers' GPT-2 loop passes past_key_values=None, which transformers 5 flags as deprecated.
            warnings.simplefilter("ignore", FutureWarning)
            t5_states, t5_mask, generated = self.pipe.encode_prompt(
                prompt=[prompt], device=device, num_waveforms_per_prompt=1, do_classifier_free_guidance=False
            )
        return {"t5": t5_states, "t5_mask": t5_mask, "generated": generated}

    def stack(self, conditionings, dtype, seconds=0.0):
        import torch

        # T5 sequences differ in length between prompts: pad with masked positions (the UNet turns the mask into
        # a -10000 attention bias, so padded keys get zero weight).
        return {
            "encoder_hidden_states": torch.cat([c["generated"] for c in conditionings]).to(dtype),
            "encoder_hidden_states_1": pad_and_cat([c["t5"] for c in conditionings], dtype),
            "encoder_attention_mask_1": pad_and_cat([c["t5_mask"] for c in conditionings]),
        }


class AudioLDMBackbone(MelBackbone):
    """AudioLDM (v1): the L2-normalised CLAP text embedding, given to the UNet as its class label."""

    name = "audioldm"
    pipeline_classes = ("AudioLDMPipeline",)
    layout = "a diffusers AudioLDMPipeline folder"
    models = (
        _card("audioldm-s", "cvssp/audioldm-s-full-v2", "~1.7 GB",
              "AudioLDM v1 small (CLAP text embedding as class label): fastest, lower quality"),
        _card("audioldm-l", "cvssp/audioldm-l-full", "~3 GB", "AudioLDM v1 large (739M UNet)"),
    )

    @property
    def text_modules(self):
        return [self.pipe.text_encoder]

    def encode(self, prompt, device) -> Conditioning:
        embedding = self.pipe._encode_prompt(
            prompt=[prompt], device=device, num_waveforms_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"clap": embedding}

    def stack(self, conditionings, dtype, seconds=0.0):
        import torch

        return {"class_labels": torch.cat([c["clap"] for c in conditionings]).to(dtype)}

    def predict(self, latents, t, batch, dtype):
        return self.pipe.unet(latents.to(dtype), t, encoder_hidden_states=None, return_dict=False, **batch)[0]


def language_model(folder: Path) -> Any:
    """AudioLDM2's GPT-2, loaded as GPT2LMHeadModel.

    The published checkpoints list it as ``GPT2Model``, which in transformers >= 4.52 no longer carries the
    generation helpers diffusers' ``generate_language_model`` calls (AttributeError on
    ``_update_model_kwargs_for_generation``; diffusers issue #12630). The LM-head class reads the same weights
    (the head is tied to the input embeddings) and has those helpers; its hidden states are identical.
    """
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder, subfolder="language_model")
    if getattr(model.config, "max_new_tokens", None) is None:
        model.config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    return model
