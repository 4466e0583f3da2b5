"""Command line: ``autosep [OPTIONS] INPUT...``, ``autosep tag INPUT...``, ``autosep eval ESTIMATES REFERENCES``,
``autosep models [list|download NAME]``.

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
  autosep tag mix.wav                      tags and plan only (see autosep tag --help)
  autosep eval separated/ references/      score stems against true ones (see autosep eval --help)
  autosep models list | autosep models download audioldm2

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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
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

    sep = parser.add_argument_group("separation")
    sep.add_argument("--model", default="audioldm2", help="separator model: alias, Hugging Face id or local folder")
    sep.add_argument("--inversion", choices=("ddpm", "ddim"), default="ddpm",
                     help="ddpm (edit-friendly, default) or ddim inversion")
    sep.add_argument("--steps", type=_positive_int, default=50, help="diffusion steps (default 50)")
    sep.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance (default 1.0)")
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

    out = parser.add_argument_group("output")
    out.add_argument("-o", "--out", default="separated", help="output folder (default: separated)")
    out.add_argument("--format", choices=("wav", "flac", "ogg", "mp3"), default="wav")
    out.add_argument("--bit-depth", choices=("16", "24", "32f"), default=None,
                     help="default: the input's where the format allows")
    out.add_argument("--overwrite", action="store_true",
                     help="redo recordings that are done (otherwise they are skipped, so a batch resumes)")
    cluster = parser.add_argument_group("cluster (pip install \"autosep[ray]\")")
    cluster.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                         help="process the recordings on Ray workers: a local instance, or the cluster at ADDRESS "
                              "(auto, ray://HOST:10001); -o must be a folder every node sees")
    cluster.add_argument("--ray-workers", type=_positive_int, default=None, metavar="N",
                         help="workers, each loading the models once (default: one per GPU, else one per "
                              "--ray-cpus-per-worker CPUs)")
    cluster.add_argument("--ray-cpus-per-worker", type=_positive_float, default=1.0, metavar="N",
                         help="CPUs reserved per worker (default 1)")
    cluster.add_argument("--ray-gpus-per-worker", type=_non_negative_float, default=None, metavar="N",
                         help="GPUs per worker (default 1 when the cluster has GPUs, else 0)")
    cluster.add_argument("--ray-retries", type=_non_negative_int, default=2, metavar="N",
                         help="re-runs of a recording whose worker died (default 2)")
    out.add_argument("-q", "--quiet", action="store_true", help="only errors")
    out.add_argument("-v", "--verbose", action="store_true", help="more detail")


def options_from_args(args: argparse.Namespace):
    from .pipeline.recording import PipelineOptions
    from .tag_command import planner_options

    return PipelineOptions(
        sources=args.sources, tagger=args.tagger, tagger_model=getattr(args, "tagger_model", None),
        vocab=getattr(args, "vocab", None), planner=planner_options(args), dry_run=args.dry_run,
        model=args.model, inversion=args.inversion, steps=args.steps, guidance=args.guidance,
        inv_prompt=args.inv_prompt, seed=args.seed, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, window=args.window, overlap=args.overlap, render=args.render,
        out=args.out, format=args.format, bit_depth=args.bit_depth, overwrite=args.overwrite,
    )


def ray_settings_from_args(args: argparse.Namespace):
    """The Ray engine's settings, or None for a local run; Ray itself must be importable (else exit 2)."""
    if args.ray is None:
        return None
    from .pipeline.ray_engine import RaySettings, import_ray

    settings = RaySettings(address=args.ray, workers=args.ray_workers, cpus_per_worker=args.ray_cpus_per_worker,
                           gpus_per_worker=args.ray_gpus_per_worker, retries=args.ray_retries)
    import_ray()
    return settings


def _print_summary(outcome: BatchOutcome, console, quiet: bool) -> None:
    if quiet or not console.is_terminal:  # logs and pipes get one plain line per input, easy to grep
        for result in outcome.results:
            if not result.ok:
                print(f"autosep: error: {result.message}", file=sys.stderr)
            elif not quiet:
                names = ", ".join(source.label for source in result.plan) or "no sources"
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
        names = ", ".join(source.label for source in result.plan) or "-"
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
        ray = ray_settings_from_args(args)
    except (AutosepError, ValueError) as exc:
        print(f"autosep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.verbose:  # the libraries' own download/loading bars would drown autosep's progress
        _quiet_library_progress_bars()
    progress = make_progress(args.quiet, console)
    outcome = run_batch(args.inputs, options, progress, ray=ray)
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
    try:
        return _run(argv)
    except KeyboardInterrupt:  # during model loading or argument handling
        print("autosep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
