"""Command line: ``autosep [OPTIONS] INPUT...``, ``autosep tag INPUT...``, ``autosep eval ESTIMATES REFERENCES``,
``autosep models [list|download NAME]``, ``autosep remix FOLDER --gain NAME=DB``, ``autosep web`` (the browser
app, ``pip install "autosep[web]"``).

Built on the Python API: the options become the run's checked settings (``PipelineOptions.settings``) and an
:class:`autosep.AutoSep` processes the inputs; this module only parses, displays and returns the exit code.
The subcommands are the modules named in ``SUBCOMMANDS`` (``commands/``: tag, models, remix; ``eval.command`` and
``web.command``), and the options they share are in ``commands.options``.
Exit codes: 0 all inputs done; 1 nothing could run (bad model, no input found, output folder unusable);
2 usage error; 3 some inputs failed and the rest were done; 130 interrupted by Ctrl-C, 143 terminated by SIGTERM
(rerun to resume).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import stopping
from .commands.options import add_ray_arguments, add_run_arguments, usage_hint, make_progress, options_from_args
from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, AutosepError, SettingsError
from .logs import quiet_library_progress_bars, setup_logging
from .pipeline.api import AutoSep
from .pipeline.batch import BatchOutcome

log = logging.getLogger("autosep")

_EPILOG = """\
examples:
  autosep mix.wav                          tag, plan and separate; stems in separated/mix/
  autosep recordings/ -o stems --format flac
  autosep "field/*.wav" --dry-run          show the planned sources, separate nothing
  autosep mix.wav -s "dog barking" -s "man speaking"
  autosep mix.wav --remove "dog barking"   also write separated/mix/remix.wav without the dog
  autosep tag mix.wav                      tags and plan only (see autosep tag --help)
  autosep eval separated/ references/      score stems against true ones (see autosep eval --help)
  autosep models list                      known models, size, licence, whether downloaded
  autosep models download audioldm2        fetch a model ahead of an offline run
  autosep remix separated/mix --gain "Dog=-inf"   mix the stems back with gains (see autosep remix --help)
  autosep web                              the browser app on http://127.0.0.1:7860 (pip install "autosep[web]")

exit codes: 0 done, 1 nothing could run, 2 usage error, 3 some inputs failed, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosep", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Split recordings into one stem per detected sound source (tag -> plan -> ZeroSep).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio/video files, folders (searched recursively) or glob patterns")
    add_run_arguments(parser)
    add_ray_arguments(parser)
    return parser


SHOWN_CHARS = 80  # a prompt longer than this is shown cut (the manifest keeps it whole)


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 1]}… ({len(text)} characters)"


def _source_names(result, empty: str) -> str:
    """The sources of a result, each with the tagger's verdict on its stem (check.py) when it was checked."""
    manifest = result.manifest
    verdicts = {stem.name: stem.confirmed for stem in manifest.sources} if manifest is not None else {}
    names = []
    for source in result.plan:
        verdict = verdicts.get(source.label)
        label = _shown(source.label)
        names.append(label if verdict is None else f"{label} ({'confirmed' if verdict else 'not confirmed'})")
    text = ", ".join(names) or empty
    check = manifest.check if manifest is not None else None
    if check is not None and check.dropped:
        text += f"; folded into the residual: {', '.join(check.dropped)}"
    if check is not None and check.discovered:
        text += f"; also heard in the residual: {', '.join(d.label for d in check.discovered)}"
    return text


def _print_summary(outcome: BatchOutcome, console, quiet: bool) -> None:
    if quiet or not console.is_terminal:  # logs and pipes get one plain line per input, easy to grep
        for result in outcome.results:
            if not result.ok:
                print(f"autosep: error: {result.message}", file=sys.stderr)
            elif not quiet:
                names = _source_names(result, "no sources")
                status = "already done" if result.status == "skipped" else result.status
                print(f"autosep: {result.input}: {status} ({names}) -> {result.output}", file=sys.stderr)
        if outcome.interrupted and outcome.interrupted_at is not None and not quiet:
            print(f"autosep: {outcome.interrupted_at}: interrupted", file=sys.stderr)
        return
    from rich.table import Table

    table = Table(title="autosep", show_lines=False)
    table.add_column("input", overflow="fold")
    table.add_column("result")
    table.add_column("sources", overflow="fold")
    table.add_column("output / message", overflow="fold")
    for result in outcome.results:
        names = _source_names(result, "-")
        status = {"done": "[green]done", "skipped": "[cyan]already done", "planned": "[blue]planned",
                  "failed": "[red]failed"}.get(result.status, result.status)
        detail = str(result.output) if result.ok and result.output else result.message
        if result.ok and result.warnings:
            detail += "\n" + "\n".join(result.warnings)
        table.add_row(str(result.input), status, names, detail)
    if outcome.interrupted and outcome.interrupted_at is not None:
        table.add_row(str(outcome.interrupted_at), "[yellow]interrupted", "-", "rerun the same command to resume")
    console.print(table)


def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        hint = usage_hint(parser, argv) if exc.code else None
        if hint:
            print(f"autosep: hint: {hint}", file=sys.stderr)
        return int(exc.code or 0)

    from rich.console import Console

    console = Console(stderr=True)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    try:
        settings = options_from_args(args).settings()
        separator = AutoSep(settings=settings)  # every check that needs no model, before any loads
    except (AutosepError, ValueError) as exc:
        message = exc.for_command_line() if isinstance(exc, SettingsError) else str(exc)
        print(f"autosep: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    if not args.verbose:  # the libraries' own download/loading bars would drown autosep's progress
        quiet_library_progress_bars()
    separator.progress = progress = make_progress(args.quiet, console)
    outcome = separator.process(args.inputs)
    if outcome.error:
        progress.close()
        for result in outcome.results:
            if not result.ok and result.message not in outcome.error:  # each error said once
                print(f"autosep: error: {result.message}", file=sys.stderr)
        print(f"autosep: error: {outcome.error}", file=sys.stderr)
        return outcome.exit_code
    if args.dry_run and not args.quiet:
        _print_plans(outcome, Console())  # the plans are the result of a dry run: stdout, unlike progress
    _print_summary(outcome, console, args.quiet)
    if outcome.interrupted:
        what = "terminated (SIGTERM)" if stopping.terminated() else "interrupted"
        print(f"autosep: {what}; finished recordings are kept, rerun the same command to resume", file=sys.stderr)
        return EXIT_TERMINATED if stopping.terminated() else EXIT_INTERRUPTED
    return outcome.exit_code


def _print_plans(outcome: BatchOutcome, console) -> None:
    from rich.table import Table

    for result in outcome.results:
        if result.status != "planned":
            continue
        table = Table(title=str(result.input))
        for column in ("source", "mid", "score", "prompt", "active"):
            table.add_column(column, overflow="fold")
        for source in result.plan:
            segments = ", ".join(f"{a:.1f}-{b:.1f}s" for a, b in source.segments)
            table.add_row(_shown(source.label), source.mid or "-",
                          "-" if source.score is None else f"{source.score:.3f}", _shown(source.prompt), segments)
        if not result.plan:
            table.add_row("(no sources)", "", "", "", "")
        console.print(table)


# The subcommands: a first argument named here runs that module's ``main(argv) -> exit code`` on the rest. Each is
# imported only when used, so the main run never pays for the web app or the metrics. (A file named like one is
# given as ``./tag``.) To add one, see CONTRIBUTING.md, "Adding a subcommand".
SUBCOMMANDS = {
    "tag": "autosep.commands.tag",
    "models": "autosep.commands.models",
    "remix": "autosep.commands.remix",
    "eval": "autosep.eval.command",
    "web": "autosep.web.command",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    # Ctrl-C and SIGTERM stop the run at the next checkpoint of the recording being written (its temporaries
    # removed, finished ones kept; exit 130 or 143 = 128 + 15), or at once outside one (loading the models).
    with stopping.handling_signals():
        try:
            return _run(argv)
        except KeyboardInterrupt:  # during model loading or argument handling
            print("autosep: terminated" if stopping.terminated() else "autosep: interrupted", file=sys.stderr)
            return EXIT_TERMINATED if stopping.terminated() else EXIT_INTERRUPTED
