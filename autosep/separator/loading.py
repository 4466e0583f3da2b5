"""Find a separator checkpoint (hub id, alias or folder) and load it with diffusers, on today's transformers.

Loading never runs code from the checkpoint (no ``trust_remote_code``), honours Hugging Face offline mode and
cache settings, and turns "not cached and cannot be downloaded" into a ModelNotAvailableError that says how to
fetch the model.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from autosep.errors import ModelNotAvailableError
from autosep.paths import offline_mode

from .models import alias_for, resolve_model_name

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
        if not (candidate / "model_index.json").is_file():
            from .stable_audio import original_checkpoint_hint

            raise ModelNotAvailableError(
                f"{candidate} is not a diffusers pipeline folder (it has no model_index.json) nor a Tango checkpoint "
                "(main_config.json): pass an AudioLDM2, AudioLDM or Stable Audio folder saved with save_pretrained / "
                f"downloaded from the hub, a Tango folder, or a model name{original_checkpoint_hint(candidate)}"
            )
        return str(candidate), candidate
    if model_id.count("/") != 1 or model_id.startswith((".", "/", "~")):
        raise ModelNotAvailableError(
            f"model {model_id!r} is neither a known name ({', '.join(_known_names())}), a Hugging Face id "
            "(owner/name) nor an existing folder"
        )
    from diffusers import DiffusionPipeline

    from . import tango

    offline = offline_mode()
    try:
        if tango.is_tango_repo(model_id):  # six plain checkpoint files, not a diffusers pipeline
            folder = tango.download(model_id, offline)
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
        where = "offline mode is on (HF_HUB_OFFLINE / AUTOSEP_OFFLINE)" if offline else f"the download failed ({exc})"
        raise ModelNotAvailableError(
            f"separator model {model_id!r} is not in the local Hugging Face cache and cannot be downloaded: "
            f"{where}. To use it, {_fetch_hint(model_id)}."
        ) from exc
    return model_id, Path(folder)


def pipeline_is_cached(model: str) -> bool:
    """True when the files ``locate_pipeline`` needs for this hub model are already in the Hugging Face cache."""
    from diffusers import DiffusionPipeline

    from . import tango

    model_id = resolve_model_name(model)
    if tango.is_tango_repo(model_id):
        return tango.is_cached(model_id)
    try:
        with library_quiet(progress_bars=True, warnings=True):
            DiffusionPipeline.download(model_id, local_files_only=True)
    except Exception:  # any flavour of "not (completely) in the cache"
        return False
    return True


def _known_names() -> list[str]:
    from .models import MODEL_ALIASES

    return list(MODEL_ALIASES)


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


@contextlib.contextmanager
def library_quiet(progress_bars: bool = True, warnings: bool = False):
    """Silence diffusers' and transformers' per-component progress bars (and, if asked, their warnings).

    Hub download bars (huggingface_hub) are left alone: a first download takes minutes and should show progress.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(lib, lib.is_progress_bar_enabled(), lib.get_verbosity())
             for lib in (diffusers_logging, transformers_logging)]
    for lib, _, _ in saved:
        if progress_bars:
            lib.disable_progress_bar()
        if warnings:
            lib.set_verbosity_error()
    try:
        yield
    finally:
        for lib, bars_on, level in saved:
            if bars_on:
                lib.enable_progress_bar()
            lib.set_verbosity(level)


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
