"""``autosep models [list|download NAME]``: the models autosep knows, their size and licence, and a way to
download one ahead of an offline run (into the Hugging Face cache, or autosep's cache for non-hub files)."""

from __future__ import annotations

import argparse
import sys

from ..model_files import KnownModel


def known_models() -> list[KnownModel]:
    """Separator models first, then taggers, then the video models, as the areas declare them."""
    from ..separator import KNOWN_MODELS as separator_models
    from ..taggers import KNOWN_MODELS as tagger_models
    from ..video import KNOWN_MODELS as video_models

    return list(separator_models) + list(tagger_models) + list(video_models)


def find_model(name: str, models: list[KnownModel]) -> KnownModel | None:
    wanted = name.strip().lower()
    for model in models:
        if wanted in (model.alias.lower(), model.source.lower()):
            return model
    return None


def _is_cached(model: KnownModel) -> str:
    if model.fetch is not None:
        if model.is_cached is None:
            return "-"
        return "yes" if model.is_cached() else "no"
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(model.source, local_files_only=True)
        return "yes"
    except Exception:  # any "not found locally" flavour
        return "no"


def list_models(models: list[KnownModel]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="autosep models")
    for column in ("name", "role", "source", "size", "licence", "downloaded", "description"):
        table.add_column(column, overflow="fold")
    for model in models:
        table.add_row(model.alias, model.role, model.source, model.size, model.licence, _is_cached(model),
                      model.description)
    console = Console()
    if not console.is_terminal:  # piped: no wrapping inside cells, so names and licences stay greppable
        console = Console(width=250)
    console.print(table)


def download_model(model: KnownModel) -> str:
    """Fetch ``model`` and return where it is. Raises AutosepError subclasses with a message that says what is
    wrong (offline mode, no network, the hub's own refusal) and what to do; never advice to run this again."""
    from ..errors import DownloadError
    from ..model_files import offline_mode

    try:
        if model.fetch is not None:
            return str(model.fetch())  # offline, a complete copy in the cache is found and kept
        from huggingface_hub import snapshot_download

        return snapshot_download(model.source, local_files_only=offline_mode())
    except Exception as exc:  # offline, network, auth, disk: say which
        if offline_mode():
            raise DownloadError(f"cannot download {model.alias} ({model.source}): offline mode is on "
                                "(HF_HUB_OFFLINE / AUTOSEP_OFFLINE) and it is not in the cache; unset it on a "
                                "machine with network access") from None
        raise DownloadError(f"could not download {model.alias} ({model.source}): {_root_cause(exc)}") from None


def _root_cause(error: BaseException) -> str:
    """The innermost reason behind a download error (a library's wrapper text points at a traceback the user
    never sees); a connection failure is named as such."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (ConnectionError, TimeoutError)) or "connect" in type(error).__name__.lower():
        return f"no connection to the Hugging Face hub ({text[:200]}); check the network and try again"
    return text[:300]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="autosep models", description="The models autosep knows, their size and licence, and a way to download "
        "one ahead of an offline run (into the Hugging Face cache, or autosep's cache for non-hub files).")
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("list", help="known models with size and licence (default)")
    download = sub.add_parser("download", help="download a model for offline use")
    download.add_argument("name", help="model name from `autosep models list`, or its Hugging Face id")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    models = known_models()
    if args.action in (None, "list"):
        list_models(models)
        return 0
    model = find_model(args.name, models)
    if model is None:
        names = ", ".join(m.alias for m in models)
        print(f"autosep models: unknown model {args.name!r}; known: {names}", file=sys.stderr)
        return 2
    from ..errors import AutosepError

    print(f"autosep: downloading {model.alias} ({model.source}, {model.size}, licence {model.licence})",
          file=sys.stderr)
    try:
        location = download_model(model)
    except AutosepError as exc:
        print(f"autosep models: error: {exc}", file=sys.stderr)
        return 1
    print(f"autosep: {model.alias} is ready in {location}", file=sys.stderr)
    return 0
