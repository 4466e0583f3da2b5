"""Text conditioning and noise prediction for each diffusion backbone, through the pipeline's own encoders.

A backbone turns one prompt into the conditioning its UNet was trained with, stacks several of them into one
batch, and runs the UNet. Prompts are always encoded one at a time, so a prompt's conditioning never depends on
which other prompts share the batch (AudioLDM2's GPT-2 step would otherwise see padding in the middle of its input).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

Conditioning = dict[str, torch.Tensor]


class Backbone:
    """What the separator needs from a text-to-audio latent diffusion pipeline."""

    name = "backbone"

    def __init__(self, pipe: Any):
        self.pipe = pipe

    @property
    def text_modules(self) -> list[nn.Module]:
        """The text encoders (cast with the UNet to the compute precision)."""
        raise NotImplementedError

    def encode(self, prompt: str, device: torch.device) -> Conditioning:
        """The conditioning of one prompt, batch size 1."""
        raise NotImplementedError

    def stack(self, conditionings: list[Conditioning], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """One batch of UNet keyword arguments from per-prompt conditionings."""
        raise NotImplementedError

    def predict_noise(self, latents: torch.Tensor, timestep: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class AudioLDM2Backbone(Backbone):
    """AudioLDM2: CLAP + T5 through the projection model, GPT-2 generated embeddings, T5 states for cross-attention."""

    name = "audioldm2"

    @property
    def text_modules(self) -> list[nn.Module]:
        p = self.pipe
        return [p.text_encoder, p.text_encoder_2, p.projection_model, p.language_model]

    def encode(self, prompt: str, device: torch.device) -> Conditioning:
        with warnings.catch_warnings():
            # diffusers' GPT-2 loop passes past_key_values=None, which transformers 5 flags as deprecated.
            warnings.simplefilter("ignore", FutureWarning)
            t5_states, t5_mask, generated = self.pipe.encode_prompt(
                prompt=[prompt], device=device, num_waveforms_per_prompt=1, do_classifier_free_guidance=False
            )
        return {"t5": t5_states, "t5_mask": t5_mask, "generated": generated}

    def stack(self, conditionings: list[Conditioning], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        # T5 sequences differ in length between prompts: pad with masked positions (the UNet turns the mask
        # into a -10000 attention bias, so padded keys get zero weight).
        longest = max(c["t5"].shape[1] for c in conditionings)
        states, masks = [], []
        for c in conditionings:
            missing = longest - c["t5"].shape[1]
            states.append(nn.functional.pad(c["t5"], (0, 0, 0, missing)))
            masks.append(nn.functional.pad(c["t5_mask"], (0, missing)))
        return {
            "encoder_hidden_states": torch.cat([c["generated"] for c in conditionings]).to(dtype),
            "encoder_hidden_states_1": torch.cat(states).to(dtype),
            "encoder_attention_mask_1": torch.cat(masks),
        }

    def predict_noise(self, latents, timestep, batch):
        return self.pipe.unet(latents, timestep, return_dict=False, **batch)[0]


class AudioLDMBackbone(Backbone):
    """AudioLDM (v1): the L2-normalised CLAP text embedding, given to the UNet as its class label."""

    name = "audioldm"

    @property
    def text_modules(self) -> list[nn.Module]:
        return [self.pipe.text_encoder]

    def encode(self, prompt: str, device: torch.device) -> Conditioning:
        embedding = self.pipe._encode_prompt(
            prompt=[prompt], device=device, num_waveforms_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"clap": embedding}

    def stack(self, conditionings: list[Conditioning], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        return {"class_labels": torch.cat([c["clap"] for c in conditionings]).to(dtype)}

    def predict_noise(self, latents, timestep, batch):
        return self.pipe.unet(latents, timestep, encoder_hidden_states=None, return_dict=False, **batch)[0]


class TangoBackbone(Backbone):
    """Tango: the Flan-T5 last hidden state (with its attention mask) as the UNet's cross-attention context.

    Prompts are tokenised as Tango does (truncated at the tokenizer's maximum length) one at a time; a batch pads
    shorter prompts with masked positions, which the UNet's attention bias ignores, so a prompt's conditioning
    does not depend on its batch.
    """

    name = "tango"

    @property
    def text_modules(self) -> list[nn.Module]:
        return [self.pipe.text_encoder]

    def encode(self, prompt: str, device: torch.device) -> Conditioning:
        tokenizer = self.pipe.tokenizer
        tokens = tokenizer([prompt], max_length=tokenizer.model_max_length, padding=True, truncation=True,
                           return_tensors="pt")
        ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
        states = self.pipe.text_encoder(input_ids=ids, attention_mask=mask)[0]
        return {"t5": states, "t5_mask": mask}

    def stack(self, conditionings: list[Conditioning], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        longest = max(c["t5"].shape[1] for c in conditionings)
        states = [nn.functional.pad(c["t5"], (0, 0, 0, longest - c["t5"].shape[1])) for c in conditionings]
        masks = [nn.functional.pad(c["t5_mask"], (0, longest - c["t5_mask"].shape[1])) for c in conditionings]
        return {"encoder_hidden_states": torch.cat(states).to(dtype), "encoder_attention_mask": torch.cat(masks)}

    def predict_noise(self, latents, timestep, batch):
        # The model output is v (the scheduler converts it); "noise" is the separator's name for any prediction.
        return self.pipe.unet(latents, timestep, return_dict=False, **batch)[0]


def backbone_for(pipe: Any) -> Backbone:
    from diffusers import AudioLDM2Pipeline, AudioLDMPipeline

    if isinstance(pipe, AudioLDM2Pipeline):
        return AudioLDM2Backbone(pipe)
    if isinstance(pipe, AudioLDMPipeline):
        return AudioLDMBackbone(pipe)
    from .tango import pipeline_class

    if isinstance(pipe, pipeline_class()):
        return TangoBackbone(pipe)
    raise TypeError(f"no ZeroSep backbone for {type(pipe).__name__}: use an AudioLDM2, AudioLDM or Tango pipeline")
