"""``autosep tag INPUT...``: tag recordings and print the planned sources, without separating anything.

Exit codes: 0 every input was tagged; 1 nothing could run (no inputs found, tagger unavailable, every input
failed); 2 usage error; 3 some inputs failed (each named on stderr) while the others were tagged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .options import (add_tagging_arguments, add_visual_arguments, usage_hint, number_at_least,
                      planning_settings)
from ..errors import EXIT_NOTHING_RAN, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, AutosepError, SettingsError
from ..pipeline.inputs import collect_inputs
from ..pipeline.recording import open_audio
from ..pipeline.tagging import TaggedRecording, plan_recording
from ..taggers import load_tagger_for
from ..taggers.base import Tagger
from ..taggers.planner import resolve_threshold
from ..taggers.settings import TaggingSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosep tag",
        description="Tag recordings and show the sources autosep would separate, with their prompts.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio/video files, folders or glob patterns")
    add_tagging_arguments(parser)
    add_visual_arguments(parser, describe=False)
    parser.add_argument("--all", action="store_true", help="also show the raw top classes of the tagger")
    parser.add_argument("--top", type=number_at_least(0), default=10, metavar="N",
                        help="how many raw classes --all shows (default: 10)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    return parser


def main(argv: list[str] | None = None) -> int:
    """In steps: the settings, the inputs (all checked before a model loads: loading is slow and may download,
    a typo should not wait), the tagger loaded once, then each recording tagged and planned and its report
    printed."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        hint = usage_hint(parser, argv) if exit_.code else None
        if hint:
            print(f"autosep: hint: {hint.replace('autosep --', 'autosep tag --')}", file=sys.stderr)
        return int(exit_.code or 0)
    err = Console(stderr=True, highlight=False)
    try:
        tagging = TaggingSettings(args.tagger, args.tagger_model, args.vocab)
        options = planning_settings(args).as_dict()  # checked once here; the planner resolves the threshold
        visual = _visual(args)
    except AutosepError as exc:
        message = exc.for_command_line() if isinstance(exc, SettingsError) else str(exc)
        _say(err, f"autosep tag: {message}")
        return EXIT_USAGE
    found, missing = collect_inputs(args.inputs)
    failures = [{"file": absent.given, "error": f"{absent.given}: {absent.reason}"} for absent in missing]
    for failure in failures:
        _say(err, failure["error"])
    if not found:
        _say(err, "autosep tag: no audio or video files found in the given inputs; nothing was tagged")
        return EXIT_NOTHING_RAN
    tagger = _load(err, args, tagging)
    if tagger is None:
        return EXIT_NOTHING_RAN
    reports = []
    out = Console(highlight=False)
    for path in (item.path for item in found):
        report = _tag_one(err, path, tagger, options, visual, args, failures)
        if report is not None:
            reports.append(report)
            if not args.json:
                _print_report(out, report, why=args.all)
    if args.json:
        print(json.dumps({"files": reports, "errors": failures}, indent=2))
    if not reports:
        return EXIT_NOTHING_RAN
    return EXIT_PARTIAL if failures else EXIT_OK


def _say(err: Console, message: str, style: str = "red") -> None:
    err.print(message, style=style, markup=False, soft_wrap=True)


def _load(err: Console, args, tagging: TaggingSettings) -> Tagger | None:
    """The tagger, loaded once; None (and the reason said) when it cannot be."""
    try:
        with err.status(f"loading the {args.tagger} tagger...", spinner="dots"):
            return load_tagger_for(tagging, args.device)
    except (AutosepError, ValueError) as exc:
        _say(err, f"autosep tag: {exc}")
    except Exception as exc:  # a broken model folder can fail in many ways; say which model, not a traceback
        _say(err, f"autosep tag: could not load the {args.tagger} tagger "
                  f"({args.tagger_model or 'default model'}): {type(exc).__name__}: {exc}")
    return None


def _tag_one(err: Console, path: Path, tagger: Tagger, options: dict, visual, args, failures: list[dict]
             ) -> dict | None:
    """One recording tagged, planned and looked at (:func:`_tag_file`), its notes said; its report, or None
    (the failure added to ``failures``: the batch goes on)."""
    try:
        duration, tagged, on_screen = _tag_file(path, tagger, options, visual, err)
    except AutosepError as exc:
        message = str(exc)
    except Exception as exc:  # keep the batch going; name the file instead of printing a traceback
        message = f"{path}: tagging failed ({type(exc).__name__}: {exc})"
    else:
        message = f"{path}: no audio to tag" if tagged.result is None else None
    if message is not None:
        failures.append({"file": str(path), "error": message})
        _say(err, message)
        return None
    for note in tagged.result.notes:
        _say(err, f"{path}: {note}", "yellow")
    if tagged.silent:
        _say(err, f"{path}: the recording is silent; no sources", "yellow")
    return _report(path, duration, tagger, tagged, options, args.top if args.all else 0, on_screen)


def _tag_file(path: Path, tagger: Tagger, options: dict, visual, err: Console):
    """(duration, tagged and planned recording, on-screen record or None) of one file: the streamed block
    tagging the main run and --dry-run use, so all three plan a file alike, then what is on screen in a video."""
    with err.status(f"tagging {path.name}...", spinner="dots"), open_audio(path) as reader:
        duration = reader.duration
        tagged = plan_recording(reader, tagger, options)
    notes: list[str] = []
    with err.status(f"looking at {path.name}...", spinner="dots"):
        on_screen = visual.apply(path, duration, tagged, options, notes)
    for note in notes:
        err.print(note, style="yellow", markup=False, soft_wrap=True)
    return duration, tagged, on_screen


def _visual(args: argparse.Namespace):
    """The same on-screen evidence as the main run (pipeline/visual.py), its model loaded on the first video."""
    from ..pipeline.progress import Progress
    from ..pipeline.visual import VisualEvidence
    from ..video.settings import VisualSettings

    return VisualEvidence(VisualSettings(args.visual, args.visual_model, args.visual_threshold), args.device,
                          Progress())


def _report(path: Path, duration: float, tagger: Tagger, tagged: TaggedRecording, options: dict,
            top: int, on_screen: dict | None = None) -> dict:
    result = tagged.result
    threshold = resolve_threshold(options.get("threshold"), result.default_threshold, result.window_seconds,
                                  result.window_times)
    report = {
        "file": str(path), "duration": round(duration, 3), "tagger": tagger.name, "model": tagger.model_id,
        "threshold": round(threshold, 4), "windows": len(result.window_times),
        "sources": [source.to_dict() for source in tagged.plan],
    }
    seen = {entry["source"]: entry for entry in (on_screen or {}).get("sources") or []}
    if on_screen is not None:
        for source in report["sources"]:
            entry = seen.get(source["label"])
            source["on_screen"] = None if entry is None else {"max_score": entry["max_score"],
                                                              "spans": entry["spans"]}
    if top:
        report["top_classes"] = [{"label": t["label"], "mid": t["mid"], "score": t["max_score"]}
                                 for t in tagged.top_tags(top)]
    if result.notes:
        report["notes"] = list(result.notes)
    return report


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


def _spans(spans: list) -> str:
    """At most four spans as clock times, then how many more."""
    text = ", ".join(f"{_clock(s)}-{_clock(e)}" for s, e in spans[:4])
    return text + (f" (+{len(spans) - 4})" if len(spans) > 4 else "")


def _print_report(console: Console, report: dict, why: bool = False) -> None:
    title = escape(f"{report['file']}  ({_clock(report['duration'])}, {report['tagger']}, "
                   f"threshold {report['threshold']:g})")
    # The heading is a line of its own, never wrapped: as a table title rich folds a long path mid-name at the
    # console width (80 columns when piped), so `autosep tag ... | grep` would not find the file.
    console.print(f"[bold]{title}[/bold]", soft_wrap=True)
    if not report["sources"]:
        console.print("  no separable sources detected (try a lower --threshold, or --all to see the raw scores)")
    else:
        table = Table()
        video = any("on_screen" in source for source in report["sources"])
        for column, justify in (("#", "right"), ("source", "left"), ("score", "right"), ("active", "right"),
                                ("prompt", "left"), ("segments", "left")) + ((("on screen", "left"),) if video else ()):
            table.add_column(column, justify=justify)
        for i, source in enumerate(report["sources"], start=1):
            row = [str(i), escape(source["label"]), f"{source['score']:.2f}", f"{source['active_seconds']:.1f} s",
                   escape(source["prompt"]), _spans(source["segments"])]
            if video:
                seen = source.get("on_screen")
                row.append("-" if not seen or not seen["spans"] else
                           f"{_spans(seen['spans'])} ({seen['max_score']:.2f})")
            table.add_row(*row)
        console.print(table)
        if why:  # --all: why each source is planned, and the classes it holds
            for i, source in enumerate(report["sources"], start=1):
                held = ", ".join(f"{c['label']} {c['score']:.2f}" for c in source["classes"])
                console.print(f"  {i}. {escape(source['label'])}: {escape(source['why'])} [{escape(held)}]",
                              soft_wrap=True)
    if "top_classes" in report:
        table = Table(title="top classes", title_justify="left", caption="file-level score: max over windows")
        table.add_column("class")
        table.add_column("score", justify="right")
        for entry in report["top_classes"]:
            table.add_row(escape(entry["label"]), f"{entry['score']:.3f}")
        console.print(table)
