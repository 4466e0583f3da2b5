"""The separator models autosep knows by name, and how one is found (alias, hub id or folder) and loaded with
diffusers, on today's transformers.

Loading never runs code from the checkpoint (no ``trust_remote_code``), honours Hugging Face offline mode and
cache settings, and turns "not cached and cannot be downloaded" into a ModelNotAvailableError that says how to
fetch the model. diffusers and transformers are imported only when a model is found or loaded, so listing the
models stays light.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ModelNotAvailableError
from ..logs import library_quiet
from ..paths import converted_root, offline_mode, unavailable_because
from ..known_models import KnownModel
from .lookup import check_model_name

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

SUPPORTED_PIPELINES = ("AudioLDM2Pipeline", "AudioLDMPipeline", "StableAudioPipeline", "StableAudio3Pipeline")
DEFAULT_MAX_NEW_TOKENS = 8  # cvssp/audioldm2's language_model/config.json


def _fetch_hint(model_id: str) -> str:
    alias = alias_for(model_id)
    command = f"autosep models download {alias}" if alias else f"hf download {model_id}"
    return (
        f"fetch it once while online with `{command}` (or `hf download {model_id}`), "
        "or pass the path of a folder that holds the pipeline (model_index.json and its subfolders, or Tango's "
        "main_config.json and pytorch_model_*.bin)"
    )


def locate_pipeline(model: str | os.PathLike | None) -> tuple[str, Path]:
    """Resolve ``model`` (alias, hub id or folder) to (model id, local folder with model_index.json)."""
    model_id = resolve_model_name(None if model is None else os.fspath(model))
    candidate = Path(model_id).expanduser()
    if candidate.exists():
        if (candidate / "main_config.json").is_file():  # Tango's published layout (autosep.separator.tango)
            return str(candidate), candidate
        from . import sa3_convert

        if sa3_convert.is_original_checkpoint(candidate):  # Stable Audio 3 as Stability publishes it
            return str(candidate), _converted(lambda: sa3_convert.local_original_checkpoint(candidate, offline_mode()))
        if not (candidate / "model_index.json").is_file():
            from .stable_audio import original_checkpoint_hint

            raise ModelNotAvailableError(
                f"{candidate} is not a diffusers pipeline folder (it has no model_index.json) nor a Tango checkpoint "
                "(main_config.json): pass an AudioLDM2, AudioLDM or Stable Audio folder saved with save_pretrained / "
                f"downloaded from the hub, a Tango folder, or a model name{original_checkpoint_hint(candidate)}"
            )
        return str(candidate), candidate
    check_model_name(model_id, list(MODEL_ALIASES))
    from diffusers import DiffusionPipeline

    from . import tango

    offline = offline_mode()
    try:
        from . import sa3_convert

        converted = None
        if "stable-audio" in model_id.lower():  # Stable Audio 3's repositories hold the original checkpoint
            converted = _converted(lambda: sa3_convert.hub_original_checkpoint(model_id, offline))
        if tango.is_tango_repo(model_id):  # six plain checkpoint files, not a diffusers pipeline
            folder = tango.download(model_id, offline)
        elif converted is not None:
            folder = converted
        else:
            # Downloads only the files the pipeline needs (or finds them in the HF cache when offline).
            folder = DiffusionPipeline.download(model_id, local_files_only=offline)
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # hub errors come as OSError, ValueError, HTTP errors...; all mean "not available"
        from .stable_audio import hub_error_message

        special = hub_error_message(model_id, exc)
        if special is not None:
            raise ModelNotAvailableError(special) from exc
        raise ModelNotAvailableError(
            f"separator model {model_id!r} is not in the local Hugging Face cache and cannot be downloaded: "
            f"{unavailable_because(exc)}. To use it, {_fetch_hint(model_id)}."
        ) from exc
    return model_id, Path(folder)


def _converted(convert) -> Path | None:
    """Run a checkpoint conversion, its failures as ModelNotAvailableError (hub errors pass through)."""
    from .sa3_convert import ConversionError

    try:
        return convert()
    except ConversionError as exc:
        raise ModelNotAvailableError(f"cannot convert the Stable Audio 3 checkpoint: {exc}") from exc


def pipeline_is_cached(model: str) -> bool:
    """True when the files ``locate_pipeline`` needs for this hub model are already in the Hugging Face cache.

    Answered from the cache itself (huggingface_hub only, no torch or diffusers), so ``autosep models list``
    stays fast: the snapshot must hold ``model_index.json`` and, for every component it names, a folder with
    that component's config and (for the networks) weights. Tango checkpoints are checked file by file, and a
    Stable Audio 3 checkpoint converted once counts as cached.
    """
    from huggingface_hub import try_to_load_from_cache

    model_id = resolve_model_name(model)
    if model_id.lower().startswith("declare-lab/tango"):
        if not isinstance(try_to_load_from_cache(model_id, "main_config.json"), str):
            return False  # not even its config: no need to import the Tango loader (and torch) to say so
        from . import tango

        return tango.is_cached(model_id)
    if any(converted_root(model_id).glob("*/model_index.json")):  # converted from the original checkpoint
        return True
    index = try_to_load_from_cache(model_id, "model_index.json")
    if not isinstance(index, str):
        return False
    snapshot = Path(index).parent
    try:
        components = json.loads(Path(index).read_text())
    except (OSError, ValueError):
        return False
    for name, spec in components.items():
        if name.startswith("_") or not isinstance(spec, list) or not spec or spec[0] is None:
            continue
        files = [p.name for p in (snapshot / name).glob("*")] if (snapshot / name).is_dir() else []
        if not any(f.endswith(".json") for f in files):
            return False
        if name not in ("tokenizer", "tokenizer_2", "scheduler", "feature_extractor") and not any(
                f.endswith((".safetensors", ".bin")) for f in files):
            return False
    return True


def _pipeline_class_name(folder: Path) -> str:
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot read {folder / 'model_index.json'}: {exc}") from exc
    name = index.get("_class_name", "")
    if name not in SUPPORTED_PIPELINES:
        raise ModelNotAvailableError(
            f"{folder} holds a {name or 'unknown'} pipeline; ZeroSep needs one of {', '.join(SUPPORTED_PIPELINES)} "
            "(e.g. cvssp/audioldm2)"
        )
    return name


def _language_model(folder: Path) -> Any:
    """AudioLDM2's GPT-2, loaded as GPT2LMHeadModel.

    The published checkpoints list it as ``GPT2Model``, which in transformers >= 4.52 no longer carries the
    generation helpers diffusers' ``generate_language_model`` calls (AttributeError on
    ``_update_model_kwargs_for_generation``; diffusers issue #12630). The LM-head class reads the same weights
    (the head is tied to the input embeddings) and has those helpers; its hidden states are identical.
    """
    from transformers import GPT2LMHeadModel

    language_model = GPT2LMHeadModel.from_pretrained(folder, subfolder="language_model")
    if getattr(language_model.config, "max_new_tokens", None) is None:
        language_model.config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    return language_model


def load_pipeline(folder: Path) -> Any:
    """Load the AudioLDM2 / AudioLDM pipeline (or Tango checkpoint) in ``folder`` in float32 on the CPU."""
    import diffusers

    if (folder / "main_config.json").is_file():
        from . import tango

        return tango.load(folder)
    class_name = _pipeline_class_name(folder)
    if class_name == "StableAudioPipeline":
        from .stable_audio import require_torchsde

        require_torchsde(folder)
    pipeline_class = getattr(diffusers, class_name)
    components: dict[str, Any] = {}
    try:
        with library_quiet():
            if class_name == "AudioLDM2Pipeline":
                config = json.loads((folder / "language_model" / "config.json").read_text())
                if config.get("model_type") == "gpt2":
                    components["language_model"] = _language_model(folder)
            pipe = pipeline_class.from_pretrained(folder, **components)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotAvailableError(f"could not load the {class_name} in {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _download(alias: str) -> Path:
    # The same download a run makes (only the files the pipeline loads), so a later offline run finds them.
    return locate_pipeline(alias)[1]


def _entry(alias: str, size: str, description: str, licence: str = _LICENCE) -> KnownModel:
    return KnownModel(alias, "separator", MODEL_ALIASES[alias], size, licence, description,
                      fetch=partial(_download, alias), is_cached=partial(pipeline_is_cached, alias))


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
    _entry("tango2-full", "~5.3 GB",
           "Tango 2's second published checkpoint (declare-lab/tango2-full), DPO-aligned like tango2"),
    # Sizes: parameter counts of the diffusers components (DiT, VAE, text encoder) in float32.
    _entry("stable-audio-open", "~5.3 GB",
           "Stable Audio Open 1.0: 44.1 kHz stereo, up to 47 s windows (1.06B DiT, T5-base, Oobleck VAE); "
           "full-band stems of music and effects. Gated: needs torchsde and an accepted licence",
           STABILITY_LICENCE),
    _entry("stable-audio-3", "~10 GB",
           "Stable Audio 3 medium base (non-distilled): 44.1 kHz stereo rectified flow (1.45B DiT, T5Gemma, "
           "SAME-L VAE); full-band stems. Gated; converted from the original checkpoint on first load",
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
