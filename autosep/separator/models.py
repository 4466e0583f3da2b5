"""The separator backbones autosep knows by name, and how a user's model argument resolves to a hub id or folder."""

from __future__ import annotations

from autosep.registry import KnownModel

DEFAULT_MODEL = "audioldm2"

# Short names users type -> Hugging Face repo ids of the diffusers checkpoints.
MODEL_ALIASES: dict[str, str] = {
    "audioldm2": "cvssp/audioldm2",
    "audioldm2-large": "cvssp/audioldm2-large",
    "audioldm2-music": "cvssp/audioldm2-music",
    "audioldm-s": "cvssp/audioldm-s-full-v2",
    "audioldm-l": "cvssp/audioldm-l-full",
}

_LICENCE = "CC BY-NC-SA 4.0"  # all cvssp AudioLDM/AudioLDM2 weights (model cards on the hub)

KNOWN_MODELS: list[KnownModel] = [
    KnownModel("audioldm2", "separator", MODEL_ALIASES["audioldm2"], "~4.5 GB", _LICENCE,
               "AudioLDM2 (CLAP + Flan-T5 + GPT-2 conditioning, 350M UNet): general sounds; the default"),
    KnownModel("audioldm2-large", "separator", MODEL_ALIASES["audioldm2-large"], "~6 GB", _LICENCE,
               "AudioLDM2 with the 750M UNet: general sounds, slower, sometimes cleaner"),
    KnownModel("audioldm2-music", "separator", MODEL_ALIASES["audioldm2-music"], "~4.5 GB", _LICENCE,
               "AudioLDM2 trained on music: instruments and ensembles"),
    KnownModel("audioldm-s", "separator", MODEL_ALIASES["audioldm-s"], "~1.7 GB", _LICENCE,
               "AudioLDM v1 small (CLAP text embedding as class label): fastest, lower quality"),
    KnownModel("audioldm-l", "separator", MODEL_ALIASES["audioldm-l"], "~3 GB", _LICENCE,
               "AudioLDM v1 large (739M UNet)"),
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
