"""Command line: ``autosep [OPTIONS] INPUT...``, ``autosep tag INPUT...``, ``autosep eval ESTIMATES REFERENCES``,
``autosep models [list|download NAME]``, ``autosep remix FOLDER --gain NAME=DB``, ``autosep web`` (the browser
app, ``pip install "autosep[web]"``).

Exit codes: 0 all inputs done; 1 nothing could run (bad model, no input found, output folder unusable);
2 usage error; 3 some inputs failed and the rest were done; 130 interrupted by Ctrl-C (rerun to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys

from .pipeline.batch import EXIT_INTERRUPTED, EXIT_USAGE, BatchOutcome, run_batch
from .pipeline.progress import LogProgress, Progress, RichProgress

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
  autosep models list | autosep models download audioldm2
  autosep remix separated/mix --gain "Dog=-inf"   mix the stems back with gains (see autosep remix --help)
  autosep web                              the browser app on http://127.0.0.1:7860 (pip install "autosep[web]")

exit codes: 0 done, 1 nothing could run, 2 usage error, 3 some inputs failed, 130 interrupted
"""


def _fraction(text: str) -> float:
    """``0.25`` or ``25%``."""
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.25 or 25%, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"overlap must be at least 0 and below 1 (0%-99%), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosep", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Split recordings into one stem per detected sound source (tag -> plan -> ZeroSep).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio/video files, folders (searched recursively) or glob patterns")
    add_run_arguments(parser)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of the main command except its inputs (shared with ``autosep eval --run``)."""
    from .tag_command import add_tagging_arguments

    sources = parser.add_argument_group("sources")
    sources.add_argument("-s", "--source", dest="sources", action="append", metavar="TEXT",
                         help="separate this prompt (repeatable); skips tagging")
    sources.add_argument("--dry-run", action="store_true", help="show the plan for every input, separate nothing")
    add_tagging_arguments(parser)  # --tagger --tagger-model --threshold --max-sources ... (shared with `autosep tag`)

    add_separation_arguments(parser)

    check = parser.add_argument_group("stems checked by the tagger")
    check.add_argument("--drop-unconfirmed", action="store_true",
                       help="fold a stem the tagger does not find its source in into the residual")
    check.add_argument("--rounds", type=_positive_int, default=1, metavar="N",
                       help="2: separate again with sources found in the residual, up to --max-sources "
                            "(default 1: report them only)")

    out = parser.add_argument_group("output")
    out.add_argument("-o", "--out", default="separated", help="output folder (default: separated)")
    out.add_argument("--format", choices=("wav", "flac", "ogg", "mp3"), default="wav")
    out.add_argument("--bit-depth", choices=("16", "24", "32f"), default=None,
                     help="default: the input's where the format allows")
    out.add_argument("--overwrite", action="store_true",
                     help="redo recordings that are done (otherwise they are skipped, so a batch resumes)")
    mix = out.add_mutually_exclusive_group()
    mix.add_argument("--keep", action="append", metavar="SOURCE",
                     help="also write remix.<format> with only this source (repeatable; name, prompt or stem file name)")
    mix.add_argument("--remove", action="append", metavar="SOURCE",
                     help="also write remix.<format> without this source (repeatable; \"residual\" too)")
    out.add_argument("-q", "--quiet", action="store_true", help="only errors")
    out.add_argument("-v", "--verbose", action="store_true", help="more detail")


def add_separation_arguments(parser: argparse.ArgumentParser) -> None:
    """--model --inversion --steps ... (shared with ``autosep web``, where they are the page's defaults)."""
    sep = parser.add_argument_group("separation")
    sep.add_argument("--model", default="audioldm2", help="separator model: alias, Hugging Face id or local folder")
    sep.add_argument("--inversion", choices=("ddpm", "ddim"), default="ddpm",
                     help="ddpm (edit-friendly, default) or ddim inversion")
    sep.add_argument("--steps", type=_positive_int, default=50, help="diffusion steps (default 50)")
    sep.add_argument("--guidance", type=float, default=1.0, metavar="W",
                     help="guidance weight; 0 to 1 is highlighting: 1 isolates the source (default), 0 gives back "
                          "the mixture, values between bring the source forward with the rest of the mix still "
                          "heard; above 1 is stronger classifier-free guidance. Any W but 0 and 1 runs the UNet "
                          "twice per step")
    sep.add_argument("--passes", type=_positive_int, default=1, metavar="K",
                     help="iterative separation: separate each stem again K-1 times with the same prompts, for "
                          "interferers too loud to remove at once; each pass costs about as much as the first "
                          "(default 1)")
    sep.add_argument("--inv-prompt", choices=("others", "null"), default="others",
                     help="inversion prompt: the other sources in the window, or empty")
    sep.add_argument("--seed", type=int, default=42, help="random seed, recorded in the manifest (default 42)")
    sep.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    sep.add_argument("--dtype", default=None, choices=["auto", "fp32", "fp16", "bf16"],
                     help="UNet and text encoder precision (default: fp16 on CUDA, else fp32)")
    sep.add_argument("--batch-size", type=_positive_int, default=None, help="samples per UNet forward (default: a window's sources at once)")
    sep.add_argument("--window", type=_positive_float, default=None,
                     help="window length in seconds (default: the model's training length: 10.24 for AudioLDM/2, "
                          "47.55 for Stable Audio Open, 30 for Stable Audio 3)")
    sep.add_argument("--overlap", type=_fraction, default=0.25, help="window overlap, 0.25 or 25%% (default)")
    sep.add_argument("--render", choices=("projected", "generative"), default="projected",
                     help="projected: masks on the original + residual (default); generative: raw 16 kHz output")


def options_from_args(args: argparse.Namespace):
    from .pipeline.recording import PipelineOptions
    from .tag_command import planner_options

    return PipelineOptions(
        sources=args.sources, tagger=args.tagger, tagger_model=getattr(args, "tagger_model", None),
        vocab=getattr(args, "vocab", None), planner=planner_options(args), dry_run=args.dry_run,
        model=args.model, inversion=args.inversion, steps=args.steps, guidance=args.guidance,
        passes=args.passes, inv_prompt=args.inv_prompt, seed=args.seed, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, window=args.window, overlap=args.overlap, render=args.render,
        drop_unconfirmed=args.drop_unconfirmed, rounds=args.rounds,
        out=args.out, format=args.format, bit_depth=args.bit_depth, overwrite=args.overwrite,
        keep=getattr(args, "keep", None), remove=getattr(args, "remove", None),
    )


def _source_names(result, empty: str) -> str:
    """The sources of a result, each with the tagger's verdict on its stem (check.py) when it was checked."""
    manifest = result.manifest or {}
    verdicts = {entry.get("name"): entry["check"]["confirmed"] for entry in manifest.get("sources") or []
                if isinstance(entry, dict) and isinstance(entry.get("check"), dict)}
    names = []
    for source in result.plan:
        verdict = verdicts.get(source.label)
        names.append(source.label if verdict is None else
                     f"{source.label} ({'confirmed' if verdict else 'not confirmed'})")
    text = ", ".join(names) or empty
    check = manifest.get("check") if isinstance(manifest.get("check"), dict) else {}
    if check.get("dropped"):
        text += f"; folded into the residual: {', '.join(check['dropped'])}"
    heard = [d.get("label") for d in check.get("discovered") or [] if isinstance(d, dict)]
    if heard:
        text += f"; also heard in the residual: {', '.join(map(str, heard))}"
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
        return int(exc.code or 0)

    from rich.console import Console

    console = Console(stderr=True)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING,
                        format="autosep: %(message)s")
    # huggingface_hub prints through its own handler and also propagates to ours: keep a single copy.
    logging.getLogger("huggingface_hub").propagate = False
    from .errors import AutosepError

    try:
        options = options_from_args(args)
    except (AutosepError, ValueError) as exc:
        print(f"autosep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.verbose:  # the libraries' own download/loading bars would drown autosep's progress
        _quiet_library_progress_bars()
    progress = make_progress(args.quiet, console)
    outcome = run_batch(args.inputs, options, progress)
    if outcome.error:
        progress.close()
        for result in outcome.results:
            if not result.ok:
                print(f"autosep: error: {result.message}", file=sys.stderr)
        print(f"autosep: error: {outcome.error}", file=sys.stderr)
        return outcome.exit_code
    if args.dry_run and not args.quiet:
        _print_plans(outcome, Console())  # the plans are the result of a dry run: stdout, unlike progress
    _print_summary(outcome, console, args.quiet)
    if outcome.interrupted:
        print("autosep: interrupted; finished recordings are kept, rerun the same command to resume",
              file=sys.stderr)
    return outcome.exit_code


def make_progress(quiet: bool, console) -> Progress:
    """Nothing with -q, live bars on a terminal, plain log lines otherwise."""
    if quiet:
        return Progress()
    return RichProgress(console) if console.is_terminal else LogProgress()


def _quiet_library_progress_bars() -> None:
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    except ImportError:  # either library missing: nothing of theirs to silence
        pass


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
            table.add_row(source.label, source.mid or "-",
                          "-" if source.score is None else f"{source.score:.3f}", source.prompt, segments)
        if not result.plan:
            table.add_row("(no sources)", "", "", "", "")
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "tag":
        from .tag_command import main as tag_main

        return tag_main(argv[1:])
    if argv and argv[0] == "eval":
        from .eval.command import main as eval_main

        return eval_main(argv[1:])
    if argv and argv[0] == "models":
        from .models_command import main as models_main

        return models_main(argv[1:])
    if argv and argv[0] == "remix":
        from .remix_command import main as remix_main

        return remix_main(argv[1:])
    if argv and argv[0] == "web":
        from .web.command import main as web_main

        return web_main(argv[1:])
    try:
        return _run(argv)
    except KeyboardInterrupt:  # during model loading or argument handling
        print("autosep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
