"""The options of a run, and the typed settings of each stage they become, each checked once when built.

``PipelineOptions`` is the flat set of options the Python API and the command line take (the long option names
with ``_``). :meth:`PipelineOptions.settings` turns it into :class:`RunSettings`, one typed, checked set per
stage: tagging and planning (:mod:`autosep.taggers.settings`), separation (bound by the separator when it
loads), the models to load, windowing and output. Everything downstream takes these; no stage checks or
defaults a setting again. A bad value raises an :class:`autosep.errors.AutosepError` (a usage error, exit 2)
before any model loads.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..separator.loading import DEFAULT_MODEL
from ..separator.settings import SeparationSettings, check_batch_size
from ..taggers.settings import PlanningSettings, TaggingSettings
from ..video.settings import VisualSettings
from .naming import REMIX
from .render import RENDERERS
from .spans import Span, SpanPrompt, given_span_prompts
from .write import choose_subtype


@dataclass(frozen=True)
class ModelSettings:
    """Which separator to load, and where the models run (device, precision and batch bound are checked when
    they load: they depend on the machine)."""

    separator: str = DEFAULT_MODEL  # alias, Hugging Face id or local folder
    device: str = "auto"
    dtype: str | None = None  # None/"auto": fp16 on CUDA, else fp32
    batch_size: int | None = None  # samples per UNet forward; None: a window's sources at once

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", check_batch_size(self.batch_size))


DEFAULT_WINDOW_S = 10.24  # AudioLDM/AudioLDM2's training length, for a separator that does not name its own
MIN_HOP_S = 0.5  # windows overlapping more than this would separate the same audio many times over


DEFAULT_OVERLAP_S = 1.0  # benchmarks/overlap_seams.txt: longer fades cost windows and did not lower the seam error


def parse_overlap(value: float | str | None) -> float | str | None:
    """An overlap as the user gave it, checked and normalised: a fraction of the window (``0.25``, ``"25%"``)
    comes back as a float, a length in seconds (``"1s"``, ``"0.5 s"``) as a string like ``"1s"``; None (the
    default) stays None: 1 s, or a quarter of a window shorter than 4 s."""
    if value is None:
        return None
    text = str(value).strip().lower()
    try:
        if isinstance(value, str) and text.endswith("s"):
            seconds = float(text[:-1])
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError
            return f"{seconds:g}s"
        fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise SettingsError(f"--overlap must be a fade length in seconds (1s) or a fraction of the window (0.25 or "
                            f"25%), got {value!r}", "--overlap") from None
    if not math.isfinite(fraction) or not 0 <= fraction < 1:
        seconds = f"; for a fade of {value} s write --overlap {value}s" if fraction >= 1 else ""
        raise SettingsError(f"--overlap as a fraction must be at least 0 and below 1 (0%-99%), got {value!r}"
                            f"{seconds}", "--overlap")
    return fraction


@dataclass(frozen=True)
class WindowSettings:
    """How a recording is cut for the separator: window length (None: the separator's own training length),
    overlap (seconds like ``"1s"``, or a fraction of the window), the margin around a source's tagged segments in
    which it is still separated, and how many windows go through the separator together (None: chosen by
    device, see :func:`default_window_batch`)."""

    window_s: float | None = None
    overlap: float | str | None = None  # None: DEFAULT_OVERLAP_S, a quarter of a window shorter than 4 s, and
    # never more than leaves MIN_HOP_S between windows
    margin_s: float = 1.0
    window_batch: int | None = None

    def __post_init__(self) -> None:
        if self.window_s is not None and (not _finite(self.window_s) or self.window_s <= 0):
            raise SettingsError(f"--window must be a positive number of seconds, got {self.window_s}", "--window")
        object.__setattr__(self, "overlap", parse_overlap(self.overlap))
        if self.window_s is not None and self.overlap_s >= self.window_s:
            raise SettingsError(f"--overlap {self.overlap} must be shorter than the {self.window_s:g} s window",
                                "--overlap")
        hop = None if self.window_s is None else self.window_s - self.overlap_s
        if self.overlap_s > 0 and hop is not None and hop < MIN_HOP_S:
            raise SettingsError(
                f"--overlap {self.overlap} with --window {self.window_s:g} leaves {hop:.3g} s between windows "
                f"(every {hop:.3g} s of audio would be separated again); keep the hop at {MIN_HOP_S} s or more: "
                f"--overlap at most {_largest_overlap(self.overlap, self.window_s)}" if self.window_s > MIN_HOP_S else
                f"--overlap {self.overlap} with --window {self.window_s:g} leaves {hop:.3g} s between windows; "
                f"use --overlap 0 with windows this short", "--overlap")
        if not _finite(self.margin_s) or self.margin_s < 0:
            raise SettingsError(f"the margin must be >= 0 seconds, got {self.margin_s}")
        if self.window_batch is not None and (isinstance(self.window_batch, bool) or not isinstance(
                self.window_batch, int) or self.window_batch < 1):
            raise SettingsError(f"--window-batch must be a whole number of windows >= 1, got {self.window_batch!r}",
                                "--window-batch")

    @property
    def overlap_s(self) -> float:
        """The overlap (the cross-fade) in seconds, of resolved settings when given as a fraction."""
        window_s = self.window_s or DEFAULT_WINDOW_S
        if self.overlap is None:  # never so long that the default itself breaks the minimum hop
            return min(DEFAULT_OVERLAP_S, window_s / 4, max(0.0, window_s - MIN_HOP_S))
        if isinstance(self.overlap, str):
            return float(self.overlap[:-1])
        return self.overlap * window_s

    def resolved(self, separator_window_s: float | None, device: Any = None) -> "WindowSettings":
        """These settings with the window length chosen (the one given, else the separator's, else the default)
        and the window batch chosen for ``device`` (the separator's) unless given."""
        window_s = self.window_s if self.window_s is not None else float(separator_window_s or DEFAULT_WINDOW_S)
        window_batch = self.window_batch or default_window_batch(device)
        resolved = replace(self, window_s=window_s, window_batch=window_batch)
        if resolved.overlap is None:  # recorded as the fade it is
            resolved = replace(resolved, overlap=f"{resolved.overlap_s:g}s")
        return resolved

    def frames(self, sample_rate: int) -> tuple[int, int, int]:
        """(window, hop, cross-fade) in frames at ``sample_rate`` (of resolved settings)."""
        window = max(1, round(self.window_s * sample_rate))
        if isinstance(self.overlap, float):
            fade = round(window * self.overlap)
        else:
            fade = round(self.overlap_s * sample_rate)
        fade = min(fade, window - 1)
        return window, max(1, window - fade), fade


def default_window_batch(device: Any) -> int:
    """Windows separated together when ``--window-batch`` is not given: 1 on a CPU or an unknown device (an idle
    CPU was barely faster per sample in bigger batches: 2.6 s at batch 1, 2.5 s at 3), 2 on CUDA (their inversions then share one forward; not measured on
    a GPU yet, so kept small: an unbounded forward that does not fit is split anyway)."""
    return 2 if getattr(device, "type", str(device or "")) == "cuda" else 1


@dataclass(frozen=True)
class CheckSettings:
    """The stem check (``pipeline/check.py``): each stem is tagged after separation. ``drop_unconfirmed`` folds
    the stems the tagger does not find their source in into the residual; ``rounds`` > 1 separates again with
    the sources discovered in the residual. Two rounds by default: with a perfect separator a second round adds
    0.05-0.08 F1 and 0.11 recall to the planner (``benchmarks/planner_f1.txt``, oracle second round), and it
    costs a second separation only when the residual holds a source the plan lacks."""

    drop_unconfirmed: bool = False
    rounds: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or int(self.rounds) != self.rounds or self.rounds < 1:
            raise SettingsError(f"--rounds must be a whole number of at least 1, got {self.rounds}", "--rounds")
        object.__setattr__(self, "rounds", int(self.rounds))


@dataclass(frozen=True)
class OutputSettings:
    """Where and how stems are written."""

    out: Path = Path("separated")
    format: str = "wav"
    bit_depth: str | None = None  # "16", "24", "32f"; None: the input's where the format allows
    render: str = "projected"
    overwrite: bool = False
    # remix.<format> written beside the stems: only these sources, or all but these (names, prompts or stem file
    # names; "residual" too).
    keep: tuple[str, ...] | None = None
    remove: tuple[str, ...] | None = None
    # A video input written back with a new soundtrack (video_out.py): "remix" (the --keep/--remove remix) or a
    # stem's name; None: no video.
    video_out: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", str(self.format).lower())
        if self.keep is not None and self.remove is not None:
            raise SettingsError("--keep and --remove exclude each other: keep some sources, or remove some")
        for name, flag in (("keep", "--keep"), ("remove", "--remove")):
            names = getattr(self, name)
            if names is not None:
                names = tuple(str(n).strip() for n in ([names] if isinstance(names, str) else names))
                if not any(names):
                    raise SettingsError(f"{flag} needs a source name", flag)
                object.__setattr__(self, name, tuple(n for n in names if n))
        if self.video_out is not None:
            object.__setattr__(self, "video_out", str(self.video_out).strip() or REMIX)
            if self.video_out == REMIX and self.keep is None and self.remove is None:
                raise SettingsError("--video-out needs a soundtrack: a remix (--keep or --remove SOURCE), or one "
                                    "stem (--video-out STEM)", "--video-out")
        if self.render not in RENDERERS:
            raise SettingsError(f"--render must be one of {', '.join(RENDERERS)}, got {self.render!r}", "--render")
        choose_subtype(self.format, self.bit_depth, None)  # raises for impossible format/bit-depth pairs

    def subtype(self, input_subtype: str | None) -> str:
        return choose_subtype(self.format, self.bit_depth, input_subtype)


RAY_INSTALL_HINT = 'pip install "autosep[ray]"'
_RAY_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/]+(:\d+)?|[\w.\-]+:\d+|\[[0-9a-fA-F:.]+\]:\d+)$")
DEFAULT_RAY_TIMEOUT_S = 30.0


def ray_client_refusal(address: str) -> str | None:
    """Why ``address`` cannot be used here: a ``ray://`` address needs Ray Client (grpcio); None when it can."""
    if not address.startswith("ray://"):
        return None
    try:
        if importlib.util.find_spec("grpc") is not None:
            return None
    except (ImportError, ValueError):
        pass
    return (f"--ray {address} goes through the Ray client, which is not installed here: {RAY_INSTALL_HINT} "
            '(it installs ray[data,client]), or pip install "ray[client]"')


@dataclass(frozen=True)
class RaySettings:
    """The Ray engine (``--ray``, :mod:`autosep.pipeline.ray_engine`): where the cluster is and how the worker pool
    is sized. Ray must be installed (it is an optional extra); that is checked here too, without importing it."""

    address: str = "local"  # "local" (start an instance on this machine), "auto", "ray://host:10001", "host:port"
    workers: int | None = None  # None: one per GPU, else one per ``cpus_per_worker`` CPUs
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    retries: int = 2  # re-runs of a recording whose worker died
    timeout_s: float = DEFAULT_RAY_TIMEOUT_S  # how long to wait for the cluster at ``address`` to answer

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not _RAY_ADDRESS.match(self.address):
            raise SettingsError(f"--ray got {self.address!r}, which is not a Ray address: use auto, ray://HOST:PORT "
                                "or HOST:PORT (or --ray alone for a local instance), and put it after the inputs or "
                                "write --ray=ADDRESS", "--ray")
        if self.workers is not None and (isinstance(self.workers, bool) or int(self.workers) != self.workers
                                         or self.workers < 1):
            raise SettingsError(f"--ray-workers must be a whole number of at least 1, got {self.workers}",
                                "--ray-workers")
        if not _finite(self.cpus_per_worker) or self.cpus_per_worker <= 0:
            raise SettingsError(f"--ray-cpus-per-worker must be above 0, got {self.cpus_per_worker}",
                                "--ray-cpus-per-worker")
        if self.gpus_per_worker is not None and (not _finite(self.gpus_per_worker) or self.gpus_per_worker < 0):
            raise SettingsError(f"--ray-gpus-per-worker must be 0 or more, got {self.gpus_per_worker}",
                                "--ray-gpus-per-worker")
        if isinstance(self.retries, bool) or int(self.retries) != self.retries or self.retries < 0:
            raise SettingsError(f"--ray-retries must be a whole number >= 0, got {self.retries}", "--ray-retries")
        if not _finite(self.timeout_s) or self.timeout_s <= 0:
            raise SettingsError(f"--ray-timeout must be a number of seconds above 0, got {self.timeout_s}",
                                "--ray-timeout")
        if not _ray_installed():
            raise SettingsError(f"--ray needs Ray, which is not installed here: {RAY_INSTALL_HINT}", "--ray")
        refusal = ray_client_refusal(self.address)
        if refusal:
            raise SettingsError(refusal, "--ray")


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (blocked)
        return False


@dataclass
class PipelineOptions:
    """Every knob of a run. Field names match the command line's long options; the defaults are the stages'
    own (the command line shows these)."""

    # Sources: given prompts skip tagging; "dog barking@12-18" (or ("dog barking", [(12, 18)])) keeps one to spans.
    sources: list[str | tuple] | None = None
    tagger: str = TaggingSettings.tagger
    tagger_model: str | None = None
    vocab: str | None = None
    planner: dict[str, Any] | PlanningSettings = field(default_factory=dict)  # plan_sources keyword arguments
    dry_run: bool = False
    # Separation.
    model: str = ModelSettings.separator
    inversion: str = SeparationSettings.inversion
    steps: int = SeparationSettings.steps
    guidance: float = SeparationSettings.guidance  # [0, 1]: highlighting, from the mixture to the isolated source
    inv_prompt: str = SeparationSettings.inv_prompt
    seed: int = SeparationSettings.seed
    passes: int = SeparationSettings.passes  # iterative separation: each stem separated again passes - 1 times
    device: str = ModelSettings.device
    dtype: str | None = ModelSettings.dtype
    batch_size: int | None = ModelSettings.batch_size
    window: float = WindowSettings.window_s
    overlap: float | str | None = WindowSettings.overlap  # seconds ("1s") or a fraction (0.25, "25%"); None: 1 s
    margin: float = WindowSettings.margin_s  # seconds around a source's tagged segments where it is still separated
    window_batch: int | None = WindowSettings.window_batch  # windows through the separator together; None: by device
    render: str = OutputSettings.render
    # Stems checked by the tagger (check.py).
    drop_unconfirmed: bool = CheckSettings.drop_unconfirmed
    rounds: int | None = None  # None: CheckSettings.rounds when the tagger finds the sources, 1 with -s (no check)
    # Output.
    out: str | Path = str(OutputSettings.out)
    format: str = OutputSettings.format
    bit_depth: str | None = OutputSettings.bit_depth
    overwrite: bool = OutputSettings.overwrite
    keep: list[str] | None = None
    remove: list[str] | None = None
    video_out: bool | str | None = None  # True: the video with the remix as soundtrack; a stem's name: that stem
    # Video inputs (video/): on-screen evidence for the sources heard, objects described in words as sources.
    visual: bool = VisualSettings.enabled
    visual_model: str | None = VisualSettings.model
    visual_threshold: float = VisualSettings.threshold
    describe: list[str] | None = None
    describe_model: str | None = VisualSettings.describe_model
    # Engine: "local" (this process) or "ray" (a Ray cluster; the ray_* fields are RaySettings').
    engine: str = "local"
    ray_address: str | None = None  # None: a local Ray instance
    ray_workers: int | None = RaySettings.workers
    ray_cpus_per_worker: float = RaySettings.cpus_per_worker
    ray_gpus_per_worker: float | None = RaySettings.gpus_per_worker
    ray_retries: int = RaySettings.retries
    ray_timeout: float = RaySettings.timeout_s

    def _rounds(self) -> int:
        """``rounds`` as given; unset, the default second round where the tagger finds the sources and one round
        with -s (the stem check needs the tagger, which -s skips, so only an explicit --rounds 2 is refused)."""
        if self.rounds is not None:
            return self.rounds
        return 1 if self.sources else CheckSettings.rounds

    def settings(self) -> "RunSettings":
        """The checked settings of every stage. Raises AutosepError (a usage error) for a bad value."""
        planning = self.planner if isinstance(self.planner, PlanningSettings) else PlanningSettings(**self.planner)
        if self.engine not in ("local", "ray"):
            raise SettingsError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        ray = None if self.engine == "local" else RaySettings(
            self.ray_address or "local", self.ray_workers, self.ray_cpus_per_worker, self.ray_gpus_per_worker,
            self.ray_retries, self.ray_timeout)
        given = None if self.sources is None else given_span_prompts(
            [self.sources] if isinstance(self.sources, str) else self.sources)
        return RunSettings(
            sources=None if given is None else tuple(g.prompt for g in given),
            spans={g.prompt: g.spans for g in given or () if g.spans},
            tagging=TaggingSettings(self.tagger, self.tagger_model, self.vocab if self.sources is None else None),
            planning=planning,
            separation=SeparationSettings(self.inversion, self.steps, self.guidance, self.inv_prompt, self.seed,
                                          self.passes),
            models=ModelSettings(self.model, self.device, self.dtype, self.batch_size),
            windows=WindowSettings(self.window, self.overlap, self.margin, self.window_batch),
            check=CheckSettings(bool(self.drop_unconfirmed), self._rounds()),
            output=OutputSettings(Path(self.out), self.format, self.bit_depth, self.render, self.overwrite,
                                  self.keep, self.remove, _video_out(self.video_out)),
            dry_run=bool(self.dry_run),
            ray=ray,
            visual=VisualSettings(bool(self.visual), self.visual_model, self.visual_threshold,
                                  describe=tuple(self.describe or ()), describe_model=self.describe_model),
        )


@dataclass(frozen=True)
class RunSettings:
    """The checked settings of one run, by stage."""

    sources: tuple[str, ...] | None  # prompts given with -s/--source (tagging skipped), or None
    tagging: TaggingSettings
    planning: PlanningSettings
    separation: SeparationSettings
    models: ModelSettings
    windows: WindowSettings
    output: OutputSettings
    check: CheckSettings = CheckSettings()
    dry_run: bool = False
    ray: RaySettings | None = None  # the recordings processed on a Ray cluster (--ray), else in this process
    # The given prompts kept to time spans ("dog barking@12-18"), by prompt; the others cover the whole recording.
    spans: dict[str, tuple[Span, ...]] = field(default_factory=dict)
    visual: VisualSettings = VisualSettings()  # what is on screen in a video input, and --describe

    @property
    def tagged(self) -> bool:
        """Whether the sources come from tagging (no -s given)."""
        return self.sources is None

    def request(self) -> dict[str, Any]:
        """What a recording's results depend on, as asked for: a manifest that records other values is not done
        for this run (:meth:`autosep.pipeline.manifest.Manifest.differences`). Device, precision and batch size
        only change rounding, so they are not part of it."""
        separation, output = self.separation, self.output
        return {
            "sources": None if self.sources is None else list(self.sources),
            "spans": {prompt: SpanPrompt(prompt, spans).text for prompt, spans in self.spans.items()},
            # each description adds a source; on-screen evidence is left out: it only applies to video inputs,
            # so an audio file done without it is done with it too
            "describe": list(self.visual.describe),
            "tagger": self.tagging.tagger if self.tagged else None,
            "tagger_model": None if self.tagging.model is None else str(self.tagging.model),
            "planner": self.planning.as_dict() if self.tagged else None,
            "model": self.models.separator, "inversion": separation.inversion, "steps": separation.steps,
            "guidance": separation.guidance, "passes": separation.passes, "inv_prompt": separation.inv_prompt,
            "seed": separation.seed,
            "render": output.render, "window_s": self.windows.window_s, "overlap": self.windows.overlap,
            "margin_s": self.windows.margin_s, "format": output.format, "bit_depth": output.bit_depth,
        }

    def record(self, subtype: str, windows: WindowSettings) -> dict[str, Any]:
        """The manifest's ``settings``: everything needed to reproduce the run and to tell whether a later run
        asks for the same (``windows`` as resolved for the loaded separator; ``window_given``: as asked)."""
        request, models = self.request(), self.models
        return {
            **request, "window_s": windows.window_s, "window_given": self.windows.window_s,
            "overlap_s": round(windows.overlap_s, 6), "window_batch": windows.window_batch,
            "planner": request["planner"] or {}, "device": models.device, "dtype": models.dtype,
            "batch_size": models.batch_size, "subtype": subtype,
        }


def _video_out(value: bool | str | None) -> str | None:
    """``video_out`` as OutputSettings holds it: True -> "remix", False/None -> None, a stem's name as given."""
    if value is None or value is False:
        return None
    return REMIX if value is True else str(value)


def _largest_overlap(overlap: float | str | None, window_s: float) -> str:
    """The longest overlap that keeps MIN_HOP_S between windows, in the form the overlap was given."""
    if isinstance(overlap, float):
        return f"{1 - MIN_HOP_S / window_s:.2f}"
    return f"{window_s - MIN_HOP_S:.3g}s"


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
