"""The separator backbones autosep knows by name, and how a user's model argument resolves to a hub id or folder."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from autosep.registry import KnownModel

DEFAULT_MODEL = "audioldm2"

# Short names users type -> Hugging Face repo ids of the diffusers checkpoints.
MODEL_ALIASES: dict[str, str] = {
    "audioldm2": "cvssp/audioldm2",
    "audioldm2-large": "cvssp/audioldm2-large",
    "audioldm2-music": "cvssp/audioldm2-music",
    "audioldm-s": "cvssp/audioldm-s-full-v2",
    "audioldm-l": "cvssp/audioldm-l-full",
    # Tango / Tango 2 (declare-lab): not diffusers pipelines; autosep.separator.tango rebuilds them.
    "tango": "declare-lab/tango",
    "tango-full": "declare-lab/tango-full-ft-audiocaps",
    "tango2": "declare-lab/tango2",
    "tango2-full": "declare-lab/tango2-full",
    # Full-band stereo (44.1 kHz). Both are gated on the hub (accept the licence, then `hf auth login`).
    "stable-audio-open": "stabilityai/stable-audio-open-1.0",
    "stable-audio-3": "stabilityai/stable-audio-3-medium-base",  # the base (non-distilled) checkpoint: w = 1 is real
    "stable-audio-3-distilled": "stabilityai/stable-audio-3-medium",  # guidance baked in: generates, warns
}

_LICENCE = "CC BY-NC-SA 4.0"  # all cvssp AudioLDM/AudioLDM2 and declare-lab Tango weights (model cards on the hub)
STABILITY_LICENCE = "Stability AI Community License"  # stable-audio-open-1.0 and stable-audio-3 model cards

def _download(alias: str) -> Path:
    # The same download a run makes (only the files the pipeline loads), so a later offline run finds them.
    from .loading import locate_pipeline

    return locate_pipeline(alias)[1]


def _is_cached(alias: str) -> bool:
    from .loading import pipeline_is_cached

    return pipeline_is_cached(alias)


def _entry(alias: str, size: str, description: str, licence: str = _LICENCE) -> KnownModel:
    return KnownModel(alias, "separator", MODEL_ALIASES[alias], size, licence, description,
                      fetch=partial(_download, alias), is_cached=partial(_is_cached, alias))


KNOWN_MODELS: list[KnownModel] = [
    _entry("audioldm2", "~4.5 GB",
           "AudioLDM2 (CLAP + Flan-T5 + GPT-2 conditioning, 350M UNet): general sounds; the default"),
    _entry("audioldm2-large", "~6 GB", "AudioLDM2 with the 750M UNet: general sounds, slower, sometimes cleaner"),
    _entry("audioldm2-music", "~4.5 GB", "AudioLDM2 trained on music: instruments and ensembles"),
    _entry("audioldm-s", "~1.7 GB", "AudioLDM v1 small (CLAP text embedding as class label): fastest, lower quality"),
    _entry("audioldm-l", "~3 GB", "AudioLDM v1 large (739M UNet)"),
    # Sizes: pytorch_model_main.bin 4.83 GB (UNet + Flan-T5 encoder) + pytorch_model_vae.bin 443 MB + Flan-T5's
    # tokenizer and config.
    _entry("tango", "~5.3 GB", "Tango (Flan-T5-large text encoder, 866M UNet, trained on AudioCaps): ZeroSep's Table 2"),
    _entry("tango-full", "~5.3 GB", "Tango pre-trained on TangoPromptBank, fine-tuned on AudioCaps"),
    _entry("tango2", "~5.3 GB", "Tango 2: Tango-full-FT aligned with DPO on Audio-alpaca preferences"),
    _entry("tango2-full", "~5.3 GB", "Tango 2's second published checkpoint (declare-lab/tango2-full), DPO-aligned like tango2"),
    # Sizes: parameter counts of the diffusers components (DiT, VAE, text encoder) in float32.
    _entry("stable-audio-open", "~5.3 GB",
           "Stable Audio Open 1.0: 44.1 kHz stereo, up to 47 s windows (1.06B DiT, T5-base, Oobleck VAE); "
           "full-band stems of music and effects. Gated: needs torchsde and an accepted licence",
           STABILITY_LICENCE),
    _entry("stable-audio-3", "~10 GB",
           "Stable Audio 3 medium base (non-distilled): 44.1 kHz stereo rectified flow (1.45B DiT, T5Gemma, "
           "SAME-L VAE); full-band stems. Gated; the hub holds the original checkpoint (convert it once)",
           STABILITY_LICENCE),
    _entry("stable-audio-3-distilled", "~10 GB",
           "Stable Audio 3 medium, distilled (guidance baked in): not guidance-free at w = 1, so it generates "
           "rather than separates; use stable-audio-3", STABILITY_LICENCE),
]


def resolve_model_name(name: str | None) -> str:
    """An alias (case-insensitive) becomes its hub id; anything else (hub id, folder) is returned unchanged."""
    if name is None or not str(name).strip():
        name = DEFAULT_MODEL
    text = str(name).strip()
    return MODEL_ALIASES.get(text.lower(), text)


def alias_for(model_id: str) -> str | None:
    """The short name of a known hub id, if it has one (for messages that tell users what to type)."""
    for alias, repo in MODEL_ALIASES.items():
        if repo == model_id:
            return alias
    return None
