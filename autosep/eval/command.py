"""``autosep eval ESTIMATES REFERENCES`` and ``autosep eval --run DATASET``: score stems, print, write eval.json.

``--run`` separates every ``<recording>/mixture.<ext>`` of a dataset folder with the main command's options
(same names, same defaults) into ``<out>/<recording>/mixture/``, loading the models once, then scores the
result against the dataset's own stems; ``--oracle-sources`` gives each recording its true labels as prompts.

Exit codes: 0 every reference recording was scored (without a CLAP model, on the waveform metrics and discovery,
the skipped metrics named in one line); 1 nothing could be scored (no pairs, unusable folders, a CLAP model that
was required or named but cannot load, every separation failed); 2 usage error; 3 some recordings could not be scored or
separated, or some stems could not be read (each named), while the others were; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from ..commands.options import number_at_least
from ..logs import setup_logging

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EVAL_FILE = "eval.json"

_EPILOG = """\
examples:
  autosep eval separated/ references/                 score autosep's output against the true stems
  autosep eval stems/ references/ --match best        pair stems by the best CLAP-A assignment
  autosep eval separated/ references/ --json > scores.json
  autosep eval --run dataset/ -o runs/gen --render generative --steps 50
                                                      separate dataset/*/mixture.wav, then score
  (autosep eval --run --help lists the separation options)

layout: REFERENCES (and a --run DATASET) hold <recording>/mixture.<ext> and one <source>.<ext> per true
source, optionally <recording>/labels.json {"<source>": "<AudioSet class or phrase>"}.

exit codes: 0 all scored, 1 nothing scored, 2 usage error, 3 some recordings not scored, 130 interrupted
"""


def build_parser(run: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosep eval", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Score separated stems against reference stems (SI-SDR, SDR, CLAP-A, CLAP-T, FAD, LPAPS) "
                    "and the planned sources against the true ones (precision, recall, F1).",
    )
    if run:
        parser.add_argument("--run", action="store_true", required=True,
                            help="separate the dataset's mixtures first (main command's options), then score")
        parser.add_argument("dataset", metavar="DATASET",
                            help="folder of <recording>/mixture.<ext> + true stems (+ labels.json)")
        parser.add_argument("--oracle-sources", action="store_true",
                            help="separate each recording with its true labels as prompts (the paper's "
                                 "text-queried protocol) instead of tagging it")
    else:
        parser.add_argument("--run", action="store_true",
                            help="separate a dataset folder first, then score it (see autosep eval --run --help)")
        parser.add_argument("estimates", metavar="ESTIMATES", help="folder of <recording>/<source>.wav stems "
                                                                   "(autosep output or any stems)")
        parser.add_argument("references", metavar="REFERENCES", help="folder of the true stems, same layout")
    group = parser.add_argument_group("evaluation")
    _add_evaluation_arguments(group)
    if run:
        from ..commands.options import add_run_arguments

        add_run_arguments(parser)  # -o, --model, --tagger, --steps, --render, --device, -q, -v, ...
    else:
        group.add_argument("--device", default="auto", help="device for CLAP and PANNs: auto, cpu, cuda, cuda:N or mps")
        group.add_argument("-q", "--quiet", action="store_true", help="only errors")
        group.add_argument("-v", "--verbose", action="store_true", help="more detail")
    return parser


def _add_evaluation_arguments(group) -> None:
    """The options of the scoring itself (both forms of the command have them)."""
    from .evaluate import MATCH_METRICS
    from .layout import MATCH_MODES

    group.add_argument("--labels", metavar="FILE",
                       help='JSON {"<recording>": {"<source>": "<label>"}} for the references\' labels '
                            "(default: each recording's labels.json, else the file names)")
    group.add_argument("--match", choices=MATCH_MODES, default="auto",
                       help="pair stems by labels (through the ontology), by file name, or by the best assignment "
                            "on --match-metric (default auto: labels for autosep output, names otherwise)")
    group.add_argument("--match-metric", choices=MATCH_METRICS, default="clap-a",
                       help="what --match best maximises (default clap-a)")
    group.add_argument("--clap-model", metavar="ID_OR_PATH",
                       help="CLAP for CLAP-A/CLAP-T/FAD/LPAPS (default laion/clap-htsat-unfused; id or local folder)")
    clap = group.add_mutually_exclusive_group()
    clap.add_argument("--no-clap", action="store_true",
                      help="skip the CLAP metrics (CLAP-A, CLAP-T, FAD, LPAPS): no CLAP model needed")
    clap.add_argument("--require-clap", action="store_true",
                      help="fail (exit 1) when the CLAP model cannot load, instead of scoring the waveform metrics "
                           "and naming the skipped ones (for scripts that must have every metric)")
    group.add_argument("--fad-embedding", action="append", choices=("clap", "panns"), metavar="clap|panns",
                       help="embeddings FAD is computed on (repeatable; default clap, as the paper's scripts)")
    group.add_argument("--panns-model", metavar="PTH",
                       help="Cnn14 checkpoint for --fad-embedding panns (default: the PANNs tagger's download)")
    group.add_argument("--sdr-rate", type=number_at_least(1000), default=None, metavar="HZ",
                       help="rate SI-SDR and SDR are computed at (default: each reference's own rate, as mir_eval "
                            "and ZeroSep's scripts; the estimate is resampled to it)")
    group.add_argument("--clap-batch-size", type=number_at_least(1), default=8, metavar="N",
                       help="10 s windows per CLAP or PANNs forward (default 8)")
    group.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    group.add_argument("--output", metavar="FILE",
                       help=f"where to write the report (default: {EVAL_FILE} in ESTIMATES, or in -o with --run)")


def write_report(report: dict, path: Path) -> None:
    """``path`` written through a temporary file in the same folder and renamed: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(report, stream, indent=2, allow_nan=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(report: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    clap = report["models"]["clap"] is not None
    columns = ["SI-SDR", "SI-SDRi", "SDR"] + (["CLAP-A", "CLAP-T", "LPAPS"] if clap else [])
    keys = ["si_sdr", "si_sdri", "sdr"] + (["clap_a", "clap_t", "lpaps"] if clap else [])
    digits = {"clap_a": 3, "clap_t": 3, "lpaps": 3}
    for record in report["recordings"]:
        table = Table(title=escape(record["name"]), title_justify="left", caption_justify="left")
        table.add_column("estimate", overflow="fold")
        table.add_column("reference (label)", overflow="fold")
        for column in columns:
            table.add_column(column, justify="right")
        for pair in record["pairs"]:
            note = " [yellow](silent)[/]" if pair["silent_estimate"] else ""
            table.add_row(escape(pair["estimate"]) + note, escape(f"{pair['reference']} ({pair['label']})"),
                          *[_number(pair[k], digits.get(k, 2)) for k in keys])
        for name in record["unmatched_estimates"]:
            table.add_row(escape(name), "[dim]no reference matched[/]", *["-"] * len(keys))
        for name in record["unmatched_references"]:
            table.add_row("[dim]no estimate matched[/]", escape(name), *["-"] * len(keys))
        d = record["discovery"]
        table.caption = (f"discovery: planned {d['planned_count']}, true {d['true_count']}"
                         f" ({'right' if d['count_correct'] else 'wrong'} count); precision {_number(d['precision'])}, "
                         f"recall {_number(d['recall'])}, F1 {_number(d['f1'])}; matched by {record['match']}")
        console.print(table)

    overall = report["overall"]
    table = Table(title=f"overall: {overall['recordings']} recordings, {overall['pairs']} stem pairs",
                  title_justify="left", caption_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("computed on", overflow="fold")
    names = {"si_sdr": "SI-SDR (dB)", "si_sdri": "SI-SDRi (dB)", "sdr": "SDR (dB)", "clap_a": "CLAP-A",
             "clap_t": "CLAP-T", "lpaps": "LPAPS (lower is better)"}
    for key in keys:
        table.add_row(names[key], _number(overall[key], digits.get(key, 2)), f"{overall[key + '_n']} pairs")
    for name, fad in overall["fad"].items():
        flag = "" if fad["reliable"] else " [yellow](small sets: unstable)[/]"
        table.add_row(f"FAD ({'CLAP' if name == 'clap' else 'PANNs'}, lower is better)", _number(fad["value"], 4),
                      f"{fad['estimates']} estimates vs {fad['references']} references, {fad['dimensions']}-d{flag}")
    d = overall["discovery"]
    table.add_row("discovery precision", _number(d["precision"], 3), f"TP {d['tp']}, FP {d['fp']}")
    table.add_row("discovery recall", _number(d["recall"], 3), f"FN {d['fn']}")
    table.add_row("discovery F1", _number(d["f1"], 3), "micro-averaged over recordings")
    table.add_row("right source count", _number(None if d["count_accuracy"] is None else 100 * d["count_accuracy"], 1)
                  + "%", f"{d['recordings']} recordings")
    table.caption = ("SI-SDR and SDR penalise generative output (a re-synthesised stem can sound right and still "
                     "differ from the reference waveform): read them with the CLAP metrics.")
    console.print(table)


def _separate(args, dataset: Path, references: dict, console) -> list[str]:
    """Separate each recording's mixture into ``<out>/<recording>/mixture/`` (what ``autosep`` writes for a file
    given by name, one output root per recording), loading the models once. Returns the failure messages."""
    from dataclasses import replace

    from ..commands.options import make_progress, options_from_args
    from ..pipeline.batch import run_batch
    from ..pipeline.manifest import MANIFEST_NAME
    from ..pipeline.pipeline import Pipeline
    from ..taggers.audioset import load_ontology

    ontology = load_ontology()
    with_mixture = [r for r in references.values() if r.mixture is not None]
    if not with_mixture:
        raise _Usage(f"{dataset}: no <recording>/mixture.<ext> found; --run needs one mixture per recording "
                     "beside its true stems")
    failures = [f"{r.name}: no mixture.<ext> in {r.folder}; not separated" for r in references.values()
                if r.mixture is None]
    if args.oracle_sources and args.sources:
        raise _Usage("--oracle-sources takes each recording's prompts from its true labels; drop -s/--source, "
                     "or drop --oracle-sources to use the same prompts for every recording")
    if args.dry_run:
        raise _Usage("--dry-run separates nothing, so there is nothing to score; see the plans with "
                     "`autosep tag DATASET` instead")
    from ..pipeline.preflight import check_before_loading

    options = options_from_args(args)
    for warning in check_before_loading(options.settings()):  # every option checked once, before any model loads
        print(f"autosep: warning: {warning}", file=sys.stderr)
    out_root = Path(options.out)

    def options_for(recording):
        # --oracle-sources: the paper's text-queried protocol, each recording separated with its true labels.
        sources = [stem.label.phrase(ontology) for stem in recording.stems] if args.oracle_sources else options.sources
        return replace(options, out=str(out_root / recording.name), sources=sources).settings()

    pending = [r for r in with_mixture if options.overwrite or not (out_root / r.name / "mixture" / MANIFEST_NAME).is_file()]
    loaded = None
    if pending:
        try:
            loaded = Pipeline.load(options_for(pending[0]), make_progress(args.quiet, console))
        except Exception as exc:  # a missing or broken model: nothing can be separated
            raise _NothingRan(f"could not load the models (separator {options.model}): {exc}") from None
    for recording in with_mixture:
        recording_options = options_for(recording)
        progress = make_progress(args.quiet, console)
        pipeline = Pipeline(recording_options, loaded.tagger if loaded else None,
                            loaded.separator if loaded else None, progress)
        if loaded is not None:  # the picture's models too are loaded once, on the first video mixture
            pipeline.visual = loaded.visual.sharing_models(recording_options.visual, progress)
        outcome = run_batch([str(recording.mixture)], recording_options, progress, pipeline=pipeline)
        if outcome.interrupted:
            raise KeyboardInterrupt
        failures.extend(r.message for r in outcome.results if not r.ok)
        if outcome.error and not outcome.results:
            failures.append(f"{recording.name}: {outcome.error}")
    return failures


class _NothingRan(Exception):
    pass


class _Usage(Exception):
    pass


def main(argv: list[str]) -> int:
    run = "--run" in argv
    parser = build_parser(run)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    setup_logging(args.verbose, args.quiet)
    try:
        return _main(args, run)
    except KeyboardInterrupt:
        print("autosep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class _Failed(Exception):
    """A step of :func:`_main` could not go on: the message for the user and the exit code."""

    def __init__(self, message: object, code: int):
        super().__init__(str(message))
        self.code = code


def _main(args, run: bool) -> int:
    """In steps: the settings and the references; the estimates (separated first with ``--run``); the recordings
    paired; scored; the report written and shown. Exit code 3 when something was missing or unreadable."""
    try:
        settings, references_root, references = _read_references(args, run)
        estimates_root, failures = _estimates_root(args, run, references_root, references)
        pairs, missing = _pair(args, run, estimates_root, references_root, references)
        report = _score(args, settings, pairs, missing)
    except _Failed as exc:
        print(f"autosep: error: {exc}", file=sys.stderr)
        return exc.code
    report["estimates_root"] = str(estimates_root.resolve())
    report["references_root"] = str(references_root.resolve())
    report["separation_failures"] = failures
    if run:  # the separation options as given (argparse values are plain JSON types)
        evaluation = set(vars(build_parser(False).parse_args(["e", "r"])))
        report["separation"] = {k: v for k, v in vars(args).items() if k not in evaluation or k == "device"}
    output = Path(args.output) if args.output else estimates_root / EVAL_FILE
    try:
        write_report(report, output)
    except OSError as exc:
        print(f"autosep: error: {output}: cannot write the report ({exc}); pass --output with a writable path",
              file=sys.stderr)
        return EXIT_NOTHING
    _show(args, report, output)
    return EXIT_PARTIAL if (missing or failures or report["unreadable_files"]) else EXIT_OK


def _read_references(args, run: bool):
    """The evaluation settings (checked) and the reference recordings, with their labels."""
    from ..errors import AutosepError
    from .evaluate import EvalSettings
    from .layout import read_labels_file, read_references

    settings = EvalSettings(match=args.match, match_metric=args.match_metric, clap_model=args.clap_model,
                            clap=not args.no_clap, device=args.device, sdr_rate=args.sdr_rate,
                            batch_size=args.clap_batch_size,
                            fad_embeddings=tuple(args.fad_embedding) if args.fad_embedding else None,
                            panns_model=args.panns_model, require_clap=args.require_clap)
    try:
        settings.validate()
        labels = read_labels_file(args.labels) if args.labels else None
        references_root = Path(args.dataset if run else args.references)
        references = read_references(references_root, labels)
        if not references:
            raise _Usage(f"{references_root}: no reference stems found; expected <recording>/<source>.wav files")
    except (AutosepError, _Usage) as exc:
        raise _Failed(exc, EXIT_USAGE) from None
    return settings, references_root, references


def _estimates_root(args, run: bool, references_root: Path, references: dict) -> tuple[Path, list[str]]:
    """The folder of the estimates: separated now from the dataset's mixtures (``--run``), or the one given;
    and the separation failures (each said now; the rest is still scored)."""
    from rich.console import Console

    from ..errors import AutosepError

    if not run:
        estimates_root = Path(args.estimates)
        if not estimates_root.is_dir():
            raise _Failed(f"{estimates_root}: not a folder; give the folder of separated stems (autosep's -o "
                          "folder, or any <recording>/<source>.wav tree)", EXIT_USAGE)
        return estimates_root, []
    try:
        failures = _separate(args, references_root, references, Console(stderr=True))
    except (_Usage, AutosepError, ValueError) as exc:  # bad options (checked before any model loads)
        raise _Failed(exc, EXIT_USAGE) from None
    except _NothingRan as exc:
        raise _Failed(exc, EXIT_NOTHING) from None
    for message in failures:
        print(f"autosep: error: {message}", file=sys.stderr)
    return Path(args.out), failures


def _pair(args, run: bool, estimates_root: Path, references_root: Path, references: dict):
    """(estimates, references) recording pairs, and the references with no estimates."""
    from ..errors import AutosepError
    from .layout import pair_recordings, read_estimates

    try:
        estimates = read_estimates(estimates_root) if estimates_root.is_dir() else {}
    except AutosepError as exc:
        raise _Failed(exc, EXIT_NOTHING) from None
    pairs, missing, extra = pair_recordings(estimates, references)
    if not pairs:
        raise _Failed(f"no recording of {estimates_root} matches one of {references_root} (expected the same "
                      "<recording> folder names, or <recording>/mixture as autosep writes for a dataset)",
                      EXIT_NOTHING)
    if extra and not run:
        logging.getLogger("autosep").warning("%d estimate recording(s) have no references and are not scored: %s",
                                             len(extra), ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
    return pairs, missing


def _score(args, settings, pairs: list, missing: list[str]) -> dict:
    """The report of :func:`autosep.eval.evaluate.evaluate`, saying which recording is being scored."""
    from ..errors import AutosepError
    from .evaluate import evaluate

    def on_recording(name: str, index: int, total: int) -> None:
        if not args.quiet:
            print(f"autosep: scoring {name} ({index}/{total})", file=sys.stderr)

    try:
        return evaluate(pairs, settings, missing=missing, on_recording=on_recording)
    except (AutosepError, ImportError) as exc:  # ImportError: the eval extra is missing
        raise _Failed(exc, EXIT_NOTHING) from None


def _show(args, report: dict, output: Path) -> None:
    """The warnings and skipped metrics, then the report (tables, or JSON with ``--json``) and its place."""
    from rich.console import Console

    for warning in report["warnings"]:
        print(f"autosep: warning: {warning}", file=sys.stderr)
    if report["skipped"]:
        print(f"autosep: note: {', '.join(report['skipped']['metrics'])} skipped: {report['skipped']['reason']} "
              "(--no-clap skips them without this note; --require-clap makes it an error)", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, Console())
    if not args.quiet:
        print(f"autosep: report written to {output}", file=sys.stderr)
