"""Tango and Tango 2 (declare-lab): Flan-T5 text, a v-predicting UNet over AudioLDM's mel latents, HiFi-GAN.

Not diffusers pipelines: a hub repository holds six plain checkpoint files, which
:mod:`autosep.separator.tango_checkpoint` reads into diffusers and transformers classes (nothing from Tango's
repository runs). Recognised one way each: a folder by :func:`is_tango_folder`, a hub id by :func:`is_tango_repo`,
a loaded pipeline by its class (``TangoPipeline``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import ModelNotAvailableError
from .audioldm import CVSSP_LICENCE, MelBackbone, pad_and_cat
from .base import Conditioning, ModelCard

CHECKPOINT_FILES = (
    "main_config.json", "vae_config.json", "stft_config.json",
    "pytorch_model_main.bin", "pytorch_model_vae.bin", "pytorch_model_stft.bin",
)
# What the T5 tokenizer and config need from the text encoder's hub repo (its weights are in pytorch_model_main.bin).
TEXT_ENCODER_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",
    "added_tokens.json",
)
TEXT_ENCODER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "model-*.safetensors")


def is_tango_folder(folder: str | os.PathLike) -> bool:
    """True for a folder in Tango's published layout (it has main_config.json and the main weights)."""
    folder = Path(folder)
    return (folder / "main_config.json").is_file() and (folder / "pytorch_model_main.bin").is_file()


def is_tango_repo(model_id: str) -> bool:
    """Hub ids of the Tango family (declare-lab/tango*, not TangoFlux, which is a different model)."""
    name = model_id.lower()
    return name.startswith("declare-lab/tango") and "flux" not in name


def _card(alias: str, repo: str, description: str) -> ModelCard:
    # pytorch_model_main.bin 4.83 GB (UNet + Flan-T5 encoder) + pytorch_model_vae.bin 443 MB + Flan-T5's
    # tokenizer and config.
    return ModelCard(alias, repo, "~5.3 GB", description, CVSSP_LICENCE)


class TangoBackbone(MelBackbone):
    """Tango: the Flan-T5 last hidden state (with its attention mask) as the UNet's cross-attention context.

    Prompts are tokenised as Tango does (truncated at the tokenizer's maximum length) one at a time; a batch pads
    shorter prompts with masked positions, which the UNet's attention bias ignores, so a prompt's conditioning
    does not depend on its batch.
    """

    name = "tango"
    pipeline_classes = ("TangoPipeline",)
    layout = "a Tango checkpoint folder (main_config.json and pytorch_model_*.bin)"
    models = (
        _card("tango", "declare-lab/tango",
              "Tango (Flan-T5-large text encoder, 866M UNet, trained on AudioCaps): ZeroSep's Table 2"),
        _card("tango-full", "declare-lab/tango-full-ft-audiocaps",
              "Tango pre-trained on TangoPromptBank, fine-tuned on AudioCaps"),
        _card("tango2", "declare-lab/tango2", "Tango 2: Tango-full-FT aligned with DPO on Audio-alpaca preferences"),
        _card("tango2-full", "declare-lab/tango2-full",
              "Tango 2's second published checkpoint (declare-lab/tango2-full), DPO-aligned like tango2"),
    )

    @classmethod
    def claims_folder(cls, folder: Path) -> bool:
        return is_tango_folder(folder)

    @classmethod
    def claims_repo(cls, model_id: str) -> bool:
        return is_tango_repo(model_id)

    @classmethod
    def download(cls, model_id: str, offline: bool) -> Path:
        """The local snapshot of a Tango hub checkpoint (its six files) and its text encoder's tokenizer."""
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(model_id, allow_patterns=list(CHECKPOINT_FILES), local_files_only=offline))
        missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{model_id} has no {', '.join(missing)}: it is not a Tango checkpoint")
        import json

        text_encoder_folder(json.loads((folder / "main_config.json").read_text())["text_encoder_name"], folder)
        return folder

    @classmethod
    def is_cached(cls, model_id: str) -> bool:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model_id, "main_config.json"), str):
            return False
        try:
            cls.download(model_id, offline=True)
        except Exception:  # any flavour of "not (completely) in the cache"
            return False
        return True

    @classmethod
    def load(cls, folder: Path) -> Any:
        from .. import tango_checkpoint

        return tango_checkpoint.load(folder)

    @property
    def text_modules(self):
        return [self.pipe.text_encoder]

    def encode_audio(self, wave, seed):
        """A sample of the VAE posterior, as Tango's reference computation takes its latents
        (``get_first_stage_encoding``: ``encoder_posterior.sample()``, declare-lab/tango audioldm/ldm.py), drawn
        on the CPU from the run's seed, so a run is reproducible on any machine."""
        import torch

        generator = torch.Generator("cpu").manual_seed(int(seed))
        return self.posterior(wave).sample(generator=generator).float() * self.pipe.vae.config.scaling_factor

    def encode(self, prompt, device) -> Conditioning:
        tokenizer = self.pipe.tokenizer
        tokens = tokenizer([prompt], max_length=tokenizer.model_max_length, padding=True, truncation=True,
                           return_tensors="pt")
        ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
        states = self.pipe.text_encoder(input_ids=ids, attention_mask=mask)[0]
        return {"t5": states, "t5_mask": mask}

    def stack(self, conditionings, dtype, seconds=0.0):
        return {"encoder_hidden_states": pad_and_cat([c["t5"] for c in conditionings], dtype),
                "encoder_attention_mask": pad_and_cat([c["t5_mask"] for c in conditionings])}


def text_encoder_folder(name: str, checkpoint: Path, weights: bool = False) -> Path:
    """The local folder of the text encoder ``main_config.json`` names: a folder, or a hub model (downloaded once)."""
    for candidate in (Path(name).expanduser(), checkpoint / name):
        if candidate.is_dir():
            return candidate
    from huggingface_hub import snapshot_download

    from ...model_files import offline_mode, unavailable_because

    patterns = list(TEXT_ENCODER_FILES) + (list(TEXT_ENCODER_WEIGHTS) if weights else [])
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=offline_mode()))
    except Exception as exc:  # hub errors come as OSError, ValueError, HTTP errors...; all mean "not available"
        raise ModelNotAvailableError(
            f"Tango's text encoder {name!r} is not in the local Hugging Face cache and cannot be downloaded: "
            f"{unavailable_because(exc)}. Fetch it once while online (`hf download {name}`)."
        ) from exc
