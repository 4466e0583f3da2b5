"""How a separator model is found (alias, hub id or folder) and loaded, for every backbone family in the registry
(:mod:`autosep.separator.backbones`): AudioLDM2, AudioLDM, Tango, Stable Audio Open and Stable Audio 3 ship with
autosep, and the model names, the model list and the loader's choice all come from their classes.

Loading never runs code from the checkpoint (no ``trust_remote_code``), honours Hugging Face offline mode and
cache settings, and turns "not cached and cannot be downloaded" into a ModelNotAvailableError that says how to
fetch the model. diffusers and transformers are imported only when a model is found or loaded, so listing the
models stays light.
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ModelNotAvailableError
from ..model_files import KnownModel
from ..model_files import offline_mode, unavailable_because
from .backbones import Backbone, families, family_for_folder, family_for_repo, model_cards
from .lookup import check_model_name


def model_aliases() -> dict[str, str]:
    """Short names users type -> Hugging Face repo ids, from every registered family's model cards."""
    return {card.alias: card.repo for card in model_cards()}


def default_model() -> str:
    """The alias of the card marked default (the separator used when no model is named)."""
    return next(card.alias for card in model_cards() if card.default)


def known_models() -> list[KnownModel]:
    """The separator entries of ``autosep models``: one per model card, downloaded the way a run loads it."""
    return [KnownModel(card.alias, "separator", card.repo, card.size, card.licence, card.description,
                       fetch=partial(_download, card.alias), is_cached=partial(pipeline_is_cached, card.alias))
            for card in model_cards()]


def _fetch_hint(model_id: str) -> str:
    alias = alias_for(model_id)
    command = f"autosep models download {alias}" if alias else f"hf download {model_id}"
    layouts = "; ".join(family.layout for family in families() if family.layout)
    return (f"fetch it once while online with `{command}` (or `hf download {model_id}`), or pass the path of a "
            f"folder that holds the model ({layouts})")


def _hints(model: str) -> str:
    advice = [text for text in (family.hint(model) for family in families()) if text]
    return "".join(f". {text}" for text in advice)


def locate_pipeline(model: str | os.PathLike | None) -> tuple[str, Path]:
    """Resolve ``model`` (alias, hub id or folder) to (model id, local folder that :func:`load_pipeline` reads)."""
    model_id = resolve_model_name(None if model is None else os.fspath(model))
    candidate = Path(model_id).expanduser()
    if candidate.exists():
        family = family_for_folder(candidate)
        if family is None:
            layouts = "; ".join(f.layout for f in families() if f.layout)
            raise ModelNotAvailableError(
                f"{candidate} holds no model autosep loads: pass {layouts}, or a model name{_hints(str(candidate))}"
            )
        return str(candidate), _fetching(str(candidate), lambda: family.prepare_folder(candidate))
    check_model_name(model_id, list(model_aliases()))
    family = family_for_repo(model_id) or Backbone  # an unknown hub id: a diffusers pipeline repository
    return model_id, Path(_fetching(model_id, lambda: family.download(model_id, offline_mode())))


def _fetching(model_id: str, fetch) -> Path:
    """``fetch()`` (a download, or a conversion that may download), hub errors turned into what to do."""
    try:
        return fetch()
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # hub errors come as OSError, ValueError, HTTP errors...; all mean "not available"
        special = hub_error_message(model_id, exc)
        if special is not None:
            raise ModelNotAvailableError(special) from exc
        raise ModelNotAvailableError(
            f"separator model {model_id!r} is not in the local Hugging Face cache and cannot be downloaded: "
            f"{unavailable_because(exc)}. To use it, {_fetch_hint(model_id)}."
        ) from exc


def pipeline_is_cached(model: str) -> bool:
    """True when the files ``locate_pipeline`` needs for this hub model are already on disk (answered by its
    family from the caches alone, no torch or diffusers, so ``autosep models list`` stays fast)."""
    model_id = resolve_model_name(model)
    return (family_for_repo(model_id) or Backbone).is_cached(model_id)


def load_pipeline(folder: Path) -> Any:
    """Load the model in ``folder`` (as :func:`locate_pipeline` returns it) in float32 on the CPU."""
    family = family_for_folder(Path(folder))
    if family is None:
        from .backbones.base import pipeline_class_name

        name = pipeline_class_name(Path(folder))
        supported = ", ".join(c for f in families() for c in f.pipeline_classes)
        raise ModelNotAvailableError(
            f"{folder} holds a {name or 'unknown'} pipeline; ZeroSep needs one of {supported} (e.g. cvssp/audioldm2)")
    return family.load(Path(folder))


def _download(alias: str) -> Path:
    # The same download a run makes (only the files the pipeline loads), so a later offline run finds them.
    return locate_pipeline(alias)[1]


def resolve_model_name(name: str | None) -> str:
    """An alias (case-insensitive) becomes its hub id; anything else (hub id, folder) is returned unchanged."""
    if name is None or not str(name).strip():
        name = default_model()
    text = str(name).strip()
    return model_aliases().get(text.lower(), text)


def alias_for(model_id: str) -> str | None:
    """The short name of a known hub id, if it has one (for messages that tell users what to type)."""
    return next((alias for alias, repo in model_aliases().items() if repo == model_id), None)


def exception_chain(exc: BaseException | None):
    """``exc`` and the errors it was raised from or during, outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def hub_error_message(model_id: str, exc: BaseException) -> str | None:
    """A message saying what to do for the hub errors that need the user's action, or None for the others.

    Gated repositories (both Stable Audio checkpoints, Stable Audio 3's T5Gemma) fail until the licence is
    accepted on the model page and a token is given; a repository without ``model_index.json`` holds no diffusers
    pipeline (the families' hints say what it may be instead).
    """
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError

    for error in exception_chain(exc):
        if isinstance(error, GatedRepoError):
            return gated_message(model_id, error)
        if isinstance(error, EntryNotFoundError) and "model_index.json" in str(error):
            return f"the hub repository {model_id!r} holds no diffusers pipeline (no model_index.json){_hints(model_id)}"
    return None


def gated_message(model_id: str, error: BaseException) -> str:
    """What to do about a gated repository (the one the error names: it may be another one the model needs)."""
    found = re.search(r"huggingface\.co/(?:api/models/)?([\w.-]+/[\w.-]+)", str(error))
    repo = found.group(1).rstrip(".") if found else model_id
    needed = "" if repo == model_id else f" (needed by {model_id!r})"
    return (
        f"the Hugging Face repository {repo!r}{needed} is gated and this machine has no access to it. To use it: "
        f"(1) open https://huggingface.co/{repo}, sign in and accept its licence (the Stability AI Community "
        "License for Stability's models, Gemma's terms for google/t5gemma); (2) give autosep a token of that "
        "account: run `hf auth login`, or set HF_TOKEN=hf_...; then rerun this command (or `autosep models "
        "download`)"
    )


def __getattr__(name: str) -> Any:
    # Computed from the registry on each access, so a family defined later (a plugin, a test's toy) is listed too.
    computed = {"DEFAULT_MODEL": default_model, "MODEL_ALIASES": model_aliases, "KNOWN_MODELS": known_models}
    if name in computed:
        return computed[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
