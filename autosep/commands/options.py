"""The command-line options the commands share, and what they become: the tagging and planning options
(``autosep`` and ``autosep tag``), the main command's options (``autosep`` and ``autosep eval --run``) turned
into :class:`autosep.pipeline.settings.PipelineOptions`, and the progress display.

Part of the command line (beside ``cli.py``): parsing only converts text to numbers; every range is checked
once, when the settings are built. The defaults shown are the stages' own.
"""

from __future__ import annotations

import argparse
import os

from ..devices import DTYPE_NAMES
from ..pipeline.progress import LogProgress, Progress, RichProgress
from ..pipeline.render import RENDER_MODES
from ..errors import SettingsError
from ..pipeline.settings import CheckSettings, PipelineOptions, parse_overlap
from ..pipeline.write import BIT_DEPTHS, FORMATS
from ..separator.loading import default_model, model_aliases
from ..separator.settings import INVERSION_PROMPT_CHOICES, INVERSIONS
from ..taggers.prompts import load_prompt_overrides
from ..taggers import registry as taggers
from ..taggers.settings import PlanningSettings, TaggingSettings
from ..video import DEFAULT_DESCRIBE_MODEL, DEFAULT_VISUAL_MODEL


def positive_number(text: str) -> float:
    """An argparse type for server limits (seconds, megabytes): a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def number_at_least(minimum: int):
    """An argparse type for counts that are no setting of a stage (how many rows to show, a rate to score at)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {text!r}")
        return value
    return parse


def usage_hint(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """After a usage error: a hint when an argument that starts with ``-`` is a file (``-mix.wav``), which
    argparse can only read as an option, or when an input was taken as the value of an option whose value may
    be left out (``--video-out clip.mp4``, ``--ray clip.mp4``), so that no input was left."""
    from ..pipeline.recording import is_media_file

    def is_file(token: str) -> bool:
        return os.path.exists(token) or is_media_file(token)

    for before, token in zip([None, *argv], argv):
        if token == "--":
            return None  # everything after it is an input already
        if token.startswith("-") and token not in parser._option_string_actions and is_file(token):
            return (f"{token} starts with '-', so it is read as an option; to give it as an input write "
                    f"./{token}, or put -- before the inputs (autosep -- {token})")
        action = parser._option_string_actions.get(before or "")
        if action is not None and action.nargs == "?" and not token.startswith("-") and is_file(token):
            return (f"{token} was taken as the value of {before}; put the inputs before it "
                    f"({token} {before}), or write {before}={action.metavar or 'VALUE'} when it has one")
    return None


def add_tagging_arguments(parser: argparse.ArgumentParser) -> None:
    """The tagger and planner options, shared by ``autosep tag`` and the main ``autosep`` command."""
    group = parser.add_argument_group("tagging and source planning")
    # no argparse choices: the registry checks the name (aliases too) and names the valid ones (exit 2)
    group.add_argument("--tagger", metavar="|".join(taggers.tagger_names()), default=TaggingSettings.tagger,
                       help=f"audio tagger (default: {TaggingSettings.tagger}); {taggers.help_text()}")
    group.add_argument("--tagger-model", metavar="ID_OR_PATH",
                       help="tagger weights: Hugging Face id, local folder, or a Cnn14 .pth for panns")
    group.add_argument("--threshold", type=float, metavar="P",
                       help="presence threshold on per-window probabilities (default: the tagger's own)")
    group.add_argument("--max-sources", type=int, default=PlanningSettings.max_sources, metavar="N",
                       help=f"most sources to keep, highest scores first (default: {PlanningSettings.max_sources})")
    group.add_argument("--min-active", type=float, metavar="SECONDS",
                       help="a source must be active this long in total (default: one window)")
    group.add_argument("--hierarchy", default=PlanningSettings.hierarchy, metavar="leaf|level:N|none",
                       help="leaf: most specific class only (default); level:N: collapse to ontology depth N; "
                            "none: keep all")
    group.add_argument("--include", action="append", default=[], metavar="NAME",
                       help="always keep this source (class name, mid or prompt); repeatable")
    group.add_argument("--exclude", action="append", default=[], metavar="NAME",
                       help="never keep this source; repeatable")
    group.add_argument("--vocab", metavar="FILE", help="clap: your own phrases, one per line")
    group.add_argument("--prompts", metavar="FILE",
                       help="prompt overrides, lines 'Display name = prompt'")


def add_visual_arguments(parser: argparse.ArgumentParser, describe: bool = True) -> None:
    """What is on screen in a video input (``autosep`` and ``autosep tag``), and ``--describe`` (``autosep``)."""
    d = PipelineOptions
    group = parser.add_argument_group("video inputs (see docs/video.md)")
    group.add_argument("--no-visual", dest="visual", action="store_false",
                       help="do not look at the picture (on by default for inputs with a video stream)")
    group.add_argument("--visual-model", default=d.visual_model, metavar="ID_OR_PATH",
                       help="zero-shot image-text model scoring what is on screen (CLIP or SigLIP; default: "
                            f"{DEFAULT_VISUAL_MODEL})")
    group.add_argument("--visual-threshold", type=float, default=d.visual_threshold, metavar="P",
                       help=f"a frame shows a source at this score (default {d.visual_threshold:g})")
    if describe:
        group.add_argument("--describe", action="append", metavar="TEXT",
                           help='an object on screen to separate, e.g. "the woman with the red guitar" (repeatable): '
                                "a vision-language model names the sound it makes, and that becomes its prompt")
        group.add_argument("--describe-model", default=d.describe_model, metavar="ID_OR_PATH",
                           help=f"image-text-to-text model for --describe (default: {DEFAULT_DESCRIBE_MODEL})")


def planning_settings(args: argparse.Namespace) -> PlanningSettings:
    """The planner's settings from parsed options (the threshold left unset: the tagger's own).

    Raises :class:`AutosepError` for an unreadable ``--prompts`` file or a value out of range.
    """
    return PlanningSettings(
        threshold=args.threshold, max_sources=args.max_sources, min_active=args.min_active,
        hierarchy=args.hierarchy, include=tuple(args.include or ()), exclude=tuple(args.exclude or ()),
        prompts=load_prompt_overrides(args.prompts) if getattr(args, "prompts", None) else None,
    )


def _overlap(text: str) -> float | str:
    """``1s`` (a fade length in seconds), ``0.25`` or ``25%`` (a fraction of the window)."""
    try:
        return parse_overlap(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--overlap must be", "expected")) from None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of the main command except its inputs (shared with ``autosep eval --run``). The defaults
    are :class:`PipelineOptions`' (the stages' own); the ranges are checked once, when the settings are built."""
    d = PipelineOptions
    sources = parser.add_argument_group("sources")
    sources.add_argument("-s", "--source", dest="sources", action="append", metavar="TEXT",
                         help="separate this prompt (repeatable); skips tagging. PROMPT@12-18 or PROMPT@0:12-0:18 "
                              "(spans comma separated, 40- to the end) keeps it to those times: its stem is "
                              "silent elsewhere and that audio stays in the residual")
    sources.add_argument("--dry-run", action="store_true", help="show the plan for every input, separate nothing")
    add_tagging_arguments(parser)  # --tagger --tagger-model --threshold --max-sources ... (shared with `autosep tag`)
    add_visual_arguments(parser)
    add_separation_arguments(parser)

    check = parser.add_argument_group("stems checked by the tagger")
    check.add_argument("--drop-unconfirmed", action="store_true",
                       help="fold a stem the tagger does not find its source in into the residual")
    check.add_argument("--rounds", type=int, default=d.rounds, metavar="N",
                       help="2: separate again with sources found in the residual, up to --max-sources; "
                            f"1: report them only (default {CheckSettings.rounds}; 1 with -s)")

    out = parser.add_argument_group("output")
    out.add_argument("-o", "--out", default=d.out, help=f"output folder (default: {d.out})")
    out.add_argument("--format", choices=tuple(FORMATS), default=d.format,
                     help=f"the stems' file format (default: {d.format})")
    out.add_argument("--bit-depth", choices=tuple(BIT_DEPTHS), default=d.bit_depth,
                     help="default: the input's where the format allows")
    out.add_argument("--overwrite", action="store_true",
                     help="redo recordings that are done (otherwise they are skipped, so a batch resumes)")
    mix = out.add_mutually_exclusive_group()
    mix.add_argument("--keep", action="append", metavar="SOURCE",
                     help="also write remix.<format> with only this source (repeatable; name, prompt or stem file name)")
    mix.add_argument("--remove", action="append", metavar="SOURCE",
                     help="also write remix.<format> without this source (repeatable; \"residual\" too)")
    out.add_argument("--video-out", nargs="?", const=True, default=None, metavar="STEM",
                     help="for a video input, also write the video back beside the stems (the picture copied "
                          "untouched) with the --keep/--remove remix as its soundtrack (remix.<ext>), or with one "
                          "stem (--video-out=STEM writes <stem>.<ext>)")
    out.add_argument("-q", "--quiet", action="store_true", help="only errors")
    out.add_argument("-v", "--verbose", action="store_true", help="more detail")


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS] and the worker pool's size (the main command's)."""
    d = PipelineOptions
    cluster = parser.add_argument_group('cluster (pip install "autosep[ray]")')
    cluster.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                         help="process the recordings on Ray workers: a local instance, or the cluster at ADDRESS "
                              "(auto, ray://HOST:10001); -o must be a folder every node sees")
    cluster.add_argument("--ray-workers", type=int, default=d.ray_workers, metavar="N",
                         help="workers, each loading the models once (default: one per GPU, else one per "
                              "--ray-cpus-per-worker CPUs)")
    cluster.add_argument("--ray-cpus-per-worker", type=float, default=d.ray_cpus_per_worker, metavar="N",
                         help=f"CPUs reserved per worker (default {d.ray_cpus_per_worker:g})")
    cluster.add_argument("--ray-gpus-per-worker", type=float, default=d.ray_gpus_per_worker, metavar="N",
                         help="GPUs per worker (default 1 when the cluster has GPUs, else 0)")
    cluster.add_argument("--ray-retries", type=int, default=d.ray_retries, metavar="N",
                         help=f"re-runs of a recording whose worker died (default {d.ray_retries})")
    cluster.add_argument("--ray-timeout", type=float, default=d.ray_timeout, metavar="S",
                         help="seconds to wait for the cluster at ADDRESS to answer before giving up (exit 1; "
                              f"default {d.ray_timeout:g})")


def add_separation_arguments(parser: argparse.ArgumentParser) -> None:
    """--model --inversion --steps ... (shared with ``autosep web``, where they are the page's defaults)."""
    d = PipelineOptions
    sep = parser.add_argument_group("separation")
    sep.add_argument("--model", default=d.model,
                     help=f"separator model: one of {', '.join(model_aliases())} (default {default_model()}; "
                          "`autosep models list` says more), a Hugging Face id or a local folder")
    sep.add_argument("--inversion", choices=INVERSIONS, default=d.inversion,
                     help=f"ddpm (edit-friendly) or ddim inversion (default {d.inversion})")
    sep.add_argument("--steps", type=int, default=d.steps, help=f"diffusion steps (default {d.steps})")
    sep.add_argument("--guidance", type=float, default=d.guidance, metavar="W",
                     help="guidance weight; 0 to 1 is highlighting: 1 isolates the source (default), 0 gives back "
                          "the mixture, values between bring the source forward with the rest of the mix still "
                          "heard; above 1 is stronger classifier-free guidance. Any W but 0 and 1 runs the UNet "
                          "twice per step")
    sep.add_argument("--passes", type=int, default=d.passes, metavar="K",
                     help="iterative separation: separate each stem again K-1 times with the same prompts, for "
                          "interferers too loud to remove at once; each pass costs about as much as the first "
                          f"(default {d.passes})")
    sep.add_argument("--inv-prompt", choices=INVERSION_PROMPT_CHOICES, default=d.inv_prompt,
                     help="inversion prompt: the other sources in the window, or empty")
    sep.add_argument("--seed", type=int, default=d.seed,
                     help=f"random seed, recorded in the manifest (default {d.seed})")
    sep.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    sep.add_argument("--dtype", default=d.dtype, choices=DTYPE_NAMES,
                     help="UNet/DiT precision (default: fp16 on CUDA, else fp32; text encoders, VAE and vocoder "
                          "always run in fp32)")
    sep.add_argument("--batch-size", type=int, default=d.batch_size,
                     help="samples per UNet forward (default: a window's sources at once)")
    sep.add_argument("--window", type=float, default=d.window,
                     help="window length in seconds (default: the model's own, e.g. 10.24 for the AudioLDM and "
                          "Tango families; docs/models.md lists each)")
    sep.add_argument("--overlap", type=_overlap, default=d.overlap,
                     help="cross-fade between windows: seconds (1s) or a fraction of the window (0.25, 25%%) "
                          "(default 1s; a quarter of a window shorter than 4 s)")
    sep.add_argument("--window-batch", type=int, default=d.window_batch, metavar="N",
                     help="windows separated together in the same UNet forwards (default: 1 on a CPU, 2 on CUDA)")
    sep.add_argument("--render", choices=RENDER_MODES, default=d.render,
                     help="projected: masks on the original + residual (default); generative: the model's raw output")


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(
        sources=args.sources, tagger=args.tagger, tagger_model=getattr(args, "tagger_model", None),
        vocab=getattr(args, "vocab", None), planner=planning_settings(args), dry_run=args.dry_run,
        model=args.model, inversion=args.inversion, steps=args.steps, guidance=args.guidance,
        inv_prompt=args.inv_prompt, seed=args.seed, passes=args.passes, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, window=args.window, overlap=args.overlap, window_batch=args.window_batch,
        render=args.render,
        drop_unconfirmed=args.drop_unconfirmed, rounds=args.rounds,
        keep=getattr(args, "keep", None), remove=getattr(args, "remove", None),
        video_out=getattr(args, "video_out", None),
        **_visual_options(args),
        out=args.out, format=args.format, bit_depth=args.bit_depth, overwrite=args.overwrite,
        **_engine_options(args),
    )


def _visual_options(args: argparse.Namespace) -> dict:
    """The video options, where the command has them (``autosep web`` has none: its defaults then)."""
    names = ("visual", "visual_model", "visual_threshold", "describe", "describe_model")
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _engine_options(args: argparse.Namespace) -> dict:
    """``--ray [ADDRESS]`` and its pool options, where the command has them."""
    if getattr(args, "ray", None) is None:
        return {}
    return {"engine": "ray", "ray_address": args.ray, "ray_workers": args.ray_workers,
            "ray_cpus_per_worker": args.ray_cpus_per_worker, "ray_gpus_per_worker": args.ray_gpus_per_worker,
            "ray_retries": args.ray_retries, "ray_timeout": args.ray_timeout}


def make_progress(quiet: bool, console) -> Progress:
    """Nothing with -q, live bars on a terminal, plain log lines otherwise."""
    if quiet:
        return Progress()
    return RichProgress(console) if console.is_terminal else LogProgress()
