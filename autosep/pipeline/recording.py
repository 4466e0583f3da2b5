"""The automatic stem pipeline, per recording:

    decode -> tag in windows -> plan sources -> separate window by window -> render stems -> write stems + manifest

Models are loaded once (:meth:`Pipeline.load`) and reused for every recording. The recording is read in blocks
and the stems are written as windows finish, so memory stays flat however long the file is. Everything a
recording produces goes to a temporary name first; ``manifest.json`` is written last and marks it done.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AutosepError
from ..taggers.planner import DEFAULT_MAX_SOURCES
from .inputs import InputFile
from .manifest import MANIFEST_NAME, build_manifest
from .naming import RESIDUAL, is_inside, unique_slugs
from .progress import Progress
from .reading import SILENCE_PEAK, AudioReader, open_audio
from .render import RENDER_MODES
from .separate import WindowedSeparation, model_channels_for, window_seconds
from .check import check_stems, fold_into_residual
from .tagging import plan_recording, tag_recording
from .write import OutputError, check_output_format, choose_subtype, read_json, remove_partials, write_json

MIN_DURATION_S = 0.1


class InputError(AutosepError):
    """This recording cannot be processed (too short, unreadable...); the batch goes on."""


@dataclass
class PipelineOptions:
    """Every knob of a run. Field names match the command line's long options."""

    # Sources: given prompts skip tagging.
    sources: list[str] | None = None
    tagger: str = "panns"
    tagger_model: str | None = None
    vocab: str | None = None
    planner: dict[str, Any] = field(default_factory=dict)  # plan_sources keyword arguments
    dry_run: bool = False
    # Separation.
    model: str = "audioldm2"
    inversion: str = "ddpm"
    steps: int = 50
    guidance: float = 1.0  # in [0, 1]: highlighting, from the mixture (0) to the isolated source (1)
    passes: int = 1  # iterative separation: each stem is separated again passes - 1 times
    inv_prompt: str = "others"
    seed: int = 42
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None
    window: float | None = None  # seconds; None: the separator's default (its training length)
    overlap: float = 0.25
    margin: float = 1.0  # seconds around a source's tagged segments in which it is still separated
    render: str = "projected"
    # Stems checked by the tagger (check.py).
    drop_unconfirmed: bool = False  # fold stems the tagger does not find their source in into the residual
    rounds: int = 1  # > 1: separate again with the sources discovered in the residual
    # Output.
    out: str | Path = "separated"
    format: str = "wav"
    bit_depth: str | None = None
    overwrite: bool = False
    # Remix written beside the stems (remix.<format>): only these sources, or all but these (names, prompts or
    # stem file names; "residual" too).
    keep: list[str] | None = None
    remove: list[str] | None = None

    def validate(self) -> None:
        if self.window is not None and self.window <= 0:
            raise AutosepError(f"--window must be positive, got {self.window}")
        if not 0 <= self.overlap < 1:
            raise AutosepError(f"--overlap must be at least 0 and below 1, got {self.overlap}")
        if self.render not in RENDER_MODES:
            raise AutosepError(f"--render must be one of {', '.join(RENDER_MODES)}, got {self.render!r}")
        if self.steps < 1:
            raise AutosepError(f"--steps must be at least 1, got {self.steps}")
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or self.passes < 1:
            raise AutosepError(f"--passes must be a whole number >= 1 (1 is the default), got {self.passes}")
        if int(self.rounds) < 1:
            raise AutosepError(f"--rounds must be at least 1, got {self.rounds}")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise AutosepError(f"--guidance must be a number >= 0 (1.0 is ZeroSep's default), got {self.guidance}")
        if self.vocab is not None and self.sources is None and str(self.tagger).strip().lower() != "clap":
            raise AutosepError("--vocab is only used by --tagger clap")
        if self.sources is not None and not [s for s in self.sources if s.strip()]:
            raise AutosepError("--source needs a non-empty prompt")
        choose_subtype(self.format, self.bit_depth, None)  # raises for impossible format/bit-depth pairs
        if self.keep is not None and self.remove is not None:
            raise AutosepError("--keep and --remove exclude each other: keep some sources, or remove some")
        for flag, names in (("--keep", self.keep), ("--remove", self.remove)):
            if names is not None and not [n for n in names if str(n).strip()]:
                raise AutosepError(f"{flag} needs a source name")


@dataclass
class GivenSource:
    """A source named with ``-s``: same fields as the planner's ``PlannedSource``, active everywhere."""

    label: str
    prompt: str
    segments: list[tuple[float, float]]
    mid: str | None = None
    score: float | None = None


@dataclass
class RecordingResult:
    input: Path
    output: Path | None
    status: str  # "done", "skipped" (already done), "planned" (dry run), "failed"
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    plan: list = field(default_factory=list)
    manifest: dict | None = None
    files: dict[str, Path] = field(default_factory=dict)  # source name (and "residual") -> stem file
    sample_rate: int | None = None
    seconds: float = 0.0
    stems: Mapping[str, np.ndarray] = field(default_factory=dict)  # the Python API's stems, read on access
    top_tags: list[dict] = field(default_factory=list)  # the tagger's strongest classes (label, mid, max_score)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped", "planned")

    def load_stems(self) -> dict[str, np.ndarray]:
        """The written stems as float32 arrays ``[frames, channels]``, by source name."""
        import soundfile as sf

        return {name: sf.read(str(path), dtype="float32", always_2d=True)[0] for name, path in self.files.items()}


class Pipeline:
    """Holds the loaded tagger and separator and processes recordings one after another."""

    def __init__(self, options: PipelineOptions, tagger=None, separator=None, progress: Progress | None = None):
        options.validate()
        self.options = options
        self.tagger = tagger
        self.separator = separator
        self.progress = progress or Progress()
        self._tag_notes: list[str] = []  # the tagger's warnings for the recording being processed
        self._tagged = None  # the mixture's TaggedRecording, for the stem check

    @classmethod
    def load(cls, options: PipelineOptions, progress: Progress | None = None) -> "Pipeline":
        """Load the models this run needs, once. Raises AutosepError (e.g. ModelNotAvailableError)."""
        options.validate()
        progress = progress or Progress()
        tagger = separator = None
        if options.sources is None:
            from ..taggers import load_tagger

            progress.stage(f"loading tagger {options.tagger}")
            tagger = load_tagger(options.tagger, model=options.tagger_model, device=options.device,
                                 vocab=options.vocab)
        if not options.dry_run:
            from ..separator import ZeroSep

            progress.stage(f"loading separator {options.model}")
            separator = ZeroSep.from_pretrained(options.model, device=options.device, dtype=options.dtype,
                                                batch_size=options.batch_size)
        return cls(options, tagger, separator, progress)

    # -- one recording -------------------------------------------------------------------------------------------

    def output_folder(self, item: InputFile) -> Path:
        out_root = Path(self.options.out)
        folder = out_root / item.relative
        if not is_inside(folder, out_root) or folder.resolve() == out_root.resolve():
            raise OutputError(f"{item.path}: its output folder {folder} would fall outside {out_root}")
        return folder

    def process(self, item: InputFile, plan: list | None = None, top_tags: list[dict] | None = None
                ) -> RecordingResult:
        """Process one recording. Errors about this recording come back as a failed result; Ctrl-C propagates
        (after removing this recording's temporary files).

        ``plan`` (sources with ``label``, ``prompt``, ``segments``, ``mid``, ``score``, e.g. a dry run's plan
        edited by hand) replaces tagging and planning; ``top_tags`` then goes to the manifest as the tags it
        came from.
        """
        started = time.perf_counter()
        try:
            result = self._process(item, started, plan, top_tags)
            if result.status in ("done", "skipped") and (self.options.keep or self.options.remove) and result.files:
                self._remix(result)
        except (AutosepError, OSError) as exc:
            message = str(exc) if isinstance(exc, AutosepError) else f"{item.path}: {exc.strerror or exc}"
            result = RecordingResult(item.path, None, "failed", message)
        except Exception as exc:  # from torch/diffusers/the models/decoders: say which file, go on (not Ctrl-C)
            result = RecordingResult(item.path, None, "failed", f"{item.path}: {type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - started
        return result

    def _process(self, item: InputFile, started: float, given_plan: list | None = None,
                 given_top_tags: list[dict] | None = None) -> RecordingResult:
        opts = self.options
        folder = self.output_folder(item)
        manifest_path = folder / MANIFEST_NAME
        previous = read_json(manifest_path)
        if previous is not None and not opts.dry_run:
            previous_input = Path(str(previous.get("input", {}).get("path", "")))
            same_input = previous_input.name and _same_file(previous_input, item.path)
            if not same_input and not opts.overwrite:
                raise OutputError(
                    f"{item.path}: {folder} already holds the results for another input ({previous_input}); "
                    "use a different --out, or --overwrite to replace them"
                )
            if not opts.overwrite and given_plan is None:
                return RecordingResult(item.path, folder, "skipped", "already done (manifest.json exists)",
                                       plan=_plan_from_manifest(previous), manifest=previous,
                                       files=_files_from_manifest(folder, previous),
                                       sample_rate=_rate_from_manifest(previous))

        timings: dict[str, float] = {}
        warnings: list[str] = []
        with open_audio(item.path) as reader:
            timings["open"] = time.perf_counter() - started
            if reader.duration < MIN_DURATION_S:
                raise InputError(f"{item.path}: too short ({reader.duration * 1000:.0f} ms); autosep needs at "
                                 f"least {MIN_DURATION_S} s of audio")
            out_rate, out_channels = self._output_shape(reader)
            try:
                subtype = choose_subtype(opts.format, opts.bit_depth, reader.subtype)
                check_output_format(opts.format, subtype, out_rate, out_channels)
            except OutputError as exc:
                raise OutputError(f"{item.path}: {exc}") from None

            t0 = time.perf_counter()
            self.progress.stage("tagging" if self.tagger is not None and opts.sources is None else "reading")
            self._tag_notes = []
            if given_plan is None:
                plan, top_tags, peak, non_finite = self._plan(reader)
            else:
                plan, peak, non_finite = self._given_plan(reader, given_plan)
                top_tags = list(given_top_tags or [])
            timings["scan_and_tag"] = time.perf_counter() - t0
            warnings.extend(f"{item.path}: {note}" for note in dict.fromkeys(self._tag_notes))
            if non_finite:
                warnings.append(f"{item.path}: {non_finite} NaN/infinite samples were replaced by silence")
            if peak < SILENCE_PEAK:
                plan = []
                warnings.append(f"{item.path}: the recording is silent; no sources, no stems written")
            elif not plan:
                warnings.append(f"{item.path}: no source passed the threshold; no stems written "
                                "(try a lower --threshold, or name sources with -s)")
            for warning in warnings:
                self.progress.warn(warning)
            if opts.dry_run:
                return RecordingResult(item.path, folder, "planned", plan=plan, warnings=warnings, top_tags=top_tags)

            folder.mkdir(parents=True, exist_ok=True)
            remove_partials(folder)
            stale = set(_files_from_manifest(folder, previous).values()) if previous else set()
            stale |= _remix_from_manifest(folder, previous)  # made of the old stems: never left beside new ones
            manifest_path.unlink(missing_ok=True)  # from here on the folder is not "done" until the new manifest

            t0 = time.perf_counter()
            names = [s.label for s in plan]
            slugs = unique_slugs(names)
            ext = opts.format.lower()
            paths = [folder / f"{slug}.{ext}" for slug in slugs]
            if plan and opts.render == "projected":
                paths.append(folder / f"{RESIDUAL}.{ext}")
            separation = WindowedSeparation(self.separator, opts, self.progress)
            stems_info, residual_info, window_log = separation.run(reader, plan, paths, subtype, out_rate,
                                                                   out_channels)
            unet_evaluations = separation.unet_evaluations
            timings["separate_and_write"] = time.perf_counter() - t0
            check_record = None
            if self._checkable(plan):
                t0 = time.perf_counter()
                plan, names, paths, stems_info, residual_info, window_log, check_record, extra = self._check(
                    reader, plan, names, paths, stems_info, residual_info, window_log, subtype, out_rate,
                    out_channels, folder)
                unet_evaluations += extra
                timings["check"] = time.perf_counter() - t0

        files = {name: path for name, path in zip(names, paths)}
        if len(paths) > len(names):
            files[RESIDUAL] = paths[-1]
        for old in stale - set(files.values()):
            if is_inside(old, folder) and old.name != MANIFEST_NAME:
                old.unlink(missing_ok=True)
        late: list[str] = []
        for info in stems_info:
            if info.get("silent"):
                late.append(f"{item.path}: the stem for {info['name']!r} is silent")
            if info.get("clipped_samples"):
                late.append(f"{item.path}: {info['clipped_samples']} samples of {info['file']} were clipped "
                            "(write float stems with --format wav --bit-depth 32f to keep them)")
        for warning in late:
            self.progress.warn(warning)
        warnings.extend(late)
        timings["total"] = time.perf_counter() - started
        work = {"windows": len(window_log), "separated_windows": sum(1 for w in window_log if w["sources"]),
                "unet_evaluations": unet_evaluations}
        manifest = build_manifest(
            reader=reader, input_given=item.given, non_finite=non_finite, peak=peak, tagger=self.tagger,
            separator=self.separator, plan=plan,
            source_mode="edited" if given_plan is not None else "given" if opts.sources is not None else "tagged",
            settings=self._settings(subtype), work=work, stems=stems_info, residual=residual_info, windows=window_log,
            timings=timings, warnings=warnings, top_tags=top_tags,
        )
        if check_record is not None:
            manifest["check"] = check_record
        write_json(manifest_path, manifest)
        return RecordingResult(item.path, folder, "done", plan=plan, manifest=manifest, files=files,
                               warnings=warnings, sample_rate=out_rate, top_tags=top_tags)

    def _remix(self, result: RecordingResult) -> None:
        """``--keep``/``--remove``: write remix.<format> beside the stems and record it in the manifest."""
        from .remix import REMIX, UnknownStemError, open_result, remix

        opts = self.options
        assert result.output is not None
        stems = open_result(result.output)
        try:
            named = {stems.find(str(name)).name for name in (opts.keep or opts.remove or []) if str(name).strip()}
        except UnknownStemError as exc:
            raise UnknownStemError(f"{result.input}: {exc}; the stems are written, rerun with a valid name to write "
                                   "only the remix") from None
        if opts.keep:
            gains = {stem.name: (0.0 if stem.name in named else -math.inf) for stem in stems.stems}
        else:
            gains = {stem.name: (-math.inf if stem.name in named else 0.0) for stem in stems.stems}
        mixed = remix(stems, gains, result.output / f"{REMIX}.{opts.format.lower()}", bit_depth=opts.bit_depth)
        for warning in mixed.warnings:
            self.progress.warn(warning)
        result.warnings.extend(mixed.warnings)
        manifest = dict(stems.manifest)
        manifest["remix"] = {**mixed.to_dict(), "keep" if opts.keep else "remove": sorted(named)}
        write_json(result.output / MANIFEST_NAME, manifest)
        result.manifest = manifest

    # -- stems checked by the tagger (check.py) ----------------------------------------------------------------------

    def _checkable(self, plan: list) -> bool:
        tagged = self._tagged
        return bool(plan) and self.options.sources is None and tagged is not None and tagged.result is not None

    def _check(self, reader: AudioReader, plan: list, names: list[str], paths: list[Path], stems_info: list[dict],
               residual_info: dict | None, window_log: list[dict], subtype: str, out_rate: int, out_channels: int,
               folder: Path):
        """Confirm every stem and discover sources in the residual; separate again for ``rounds`` > 1 with the
        discoveries (up to ``max_sources``); fold unconfirmed stems into the residual with ``drop_unconfirmed``."""
        opts = self.options
        projected = opts.render == "projected"
        max_sources = opts.planner.get("max_sources", DEFAULT_MAX_SOURCES)
        extra_evaluations = 0
        separated_in: dict[str, int] = {source.label: 1 for source in plan}
        round_no = 1
        while True:
            self.progress.stage("checking stems" if round_no == 1 else f"checking stems (round {round_no})")
            check = check_stems(self.tagger, plan, paths[:len(plan)], paths[len(plan)] if projected else None,
                                self._tagged.result, opts.planner)
            room = len(check.discovered) if max_sources is None else max_sources - len(plan)
            if round_no >= opts.rounds or not check.discovered or room <= 0:
                break
            round_no += 1
            added = check.discovered[:room]
            for source in added:
                separated_in[source.label] = round_no
            old_paths = set(paths)
            plan = plan + added
            names = [s.label for s in plan]
            ext = opts.format.lower()
            paths = [folder / f"{slug}.{ext}" for slug in unique_slugs(names)]
            if projected:
                paths.append(folder / f"{RESIDUAL}.{ext}")
            for stale in old_paths - set(paths):
                stale.unlink(missing_ok=True)
            self.progress.stage(f"separating (round {round_no})")
            separation = WindowedSeparation(self.separator, opts, self.progress)
            stems_info, residual_info, window_log = separation.run(reader, plan, paths, subtype, out_rate,
                                                                   out_channels)
            extra_evaluations += separation.unet_evaluations
        for info, verdict in zip(stems_info, check.stems):
            info["check"] = {k: verdict[k] for k in ("score_in_stem", "score_in_mixture", "confirmed")}
            info["round"] = separated_in.get(info["name"], 1)
            if not verdict["confirmed"]:
                info["not_confirmed"] = True
        record = {"rounds": round_no, **check.to_dict(), "dropped": []}
        if opts.drop_unconfirmed and check.unconfirmed:
            drop = set(check.unconfirmed)
            keep = [i for i in range(len(plan)) if i not in drop]
            new_residual = fold_into_residual(reader, [paths[i] for i in keep], [paths[i] for i in drop],
                                              paths[len(plan)] if projected else None, opts.format, subtype,
                                              out_rate, out_channels)
            record["dropped"] = [plan[i].label for i in sorted(drop)]
            if new_residual is not None:
                residual_info = new_residual
            tail = paths[len(plan):]
            plan = [plan[i] for i in keep]
            names = [names[i] for i in keep]
            stems_info = [stems_info[i] for i in keep]
            paths = [paths[i] for i in keep] + tail
            for entry in window_log:
                entry["sources"] = [name for name in entry["sources"] if name not in record["dropped"]]
        return plan, names, paths, stems_info, residual_info, window_log, record, extra_evaluations

    def _output_shape(self, reader: AudioReader) -> tuple[int, int]:
        if self.options.render == "generative":
            # The separator's own output: its rate, and its channels when the recording has them (a stereo
            # model separates a stereo recording as stereo; anything else goes through it as mono).
            return self._model_rate(), model_channels_for(self.separator, reader.channels)
        return reader.sample_rate, reader.channels

    def _model_rate(self) -> int:
        return int(getattr(self.separator, "sample_rate", 16000))

    def _settings(self, subtype: str) -> dict:
        opts = self.options
        return {
            "seed": opts.seed, "steps": opts.steps, "inversion": opts.inversion, "guidance": opts.guidance,
            "passes": opts.passes, "inv_prompt": opts.inv_prompt, "render": opts.render,
            "window_s": window_seconds(opts, self.separator), "overlap": opts.overlap, "margin_s": opts.margin,
            "model": opts.model, "device": opts.device, "dtype": opts.dtype,
            "batch_size": opts.batch_size, "tagger": opts.tagger if opts.sources is None else None,
            "planner": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.planner.items()},
            "format": opts.format, "subtype": subtype,
        }

    # -- tagging and planning --------------------------------------------------------------------------------------

    def _given_plan(self, reader: AudioReader, given_plan: list) -> tuple[list[GivenSource], float, int]:
        """A plan chosen beforehand (e.g. edited in ``autosep web``), its segments clipped to this recording;
        the file is still scanned once for its peak and NaN count."""
        self._tagged = None  # no tagging here, so no stem check either
        result = tag_recording(reader, None)
        plan = []
        for source in given_plan:
            segments = [(max(0.0, float(a)), min(reader.duration, float(b))) for a, b in source.segments]
            plan.append(GivenSource(label=source.label, prompt=source.prompt, mid=source.mid, score=source.score,
                                    segments=[(a, b) for a, b in segments if b > a]))
        return plan, result.peak, result.non_finite

    def _plan(self, reader: AudioReader) -> tuple[list, list[dict], float, int]:
        """One streaming pass over the file (``tagging.plan_recording``, the path ``autosep tag`` takes too):
        peak, NaN count and, unless sources were given, the tags and the plan."""
        opts = self.options
        if opts.sources is not None or self.tagger is None:
            scanned = tag_recording(reader, None)
            if opts.sources is None:
                return [], [], scanned.peak, scanned.non_finite
            everywhere = [(0.0, reader.duration)]
            prompts = list(dict.fromkeys(s.strip() for s in opts.sources if s.strip()))  # drop repeats, keep order
            plan = [GivenSource(label=p, prompt=p, segments=list(everywhere)) for p in prompts]
            return plan, [], scanned.peak, scanned.non_finite
        tagged = plan_recording(reader, self.tagger, opts.planner)
        self._tagged = tagged
        if tagged.result is not None:  # the tagger's own warnings (e.g. an audio-LM answer it could not parse)
            self._tag_notes.extend(tagged.result.notes or [])
        return tagged.plan, tagged.top_tags(), tagged.peak, tagged.non_finite


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _files_from_manifest(folder: Path, manifest: dict | None) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if not manifest:
        return files
    for entry in manifest.get("sources") or []:
        if isinstance(entry, dict) and entry.get("file"):
            files[str(entry.get("name"))] = folder / Path(str(entry["file"])).name  # never trust a path in it
    residual = manifest.get("residual")
    if isinstance(residual, dict) and residual.get("file"):
        files[RESIDUAL] = folder / Path(str(residual["file"])).name
    return files


def _remix_from_manifest(folder: Path, manifest: dict | None) -> set[Path]:
    entry = (manifest or {}).get("remix")
    return {folder / Path(str(entry["file"])).name} if isinstance(entry, dict) and entry.get("file") else set()


def _plan_from_manifest(manifest: dict) -> list[GivenSource]:
    """The plan a finished recording was separated with, rebuilt from its manifest's detections."""
    plan = []
    for entry in manifest.get("detections") or []:
        if isinstance(entry, dict) and entry.get("label"):
            plan.append(GivenSource(label=str(entry["label"]), prompt=str(entry.get("prompt") or entry["label"]),
                                    segments=[tuple(seg) for seg in entry.get("segments") or []],
                                    mid=entry.get("mid"), score=entry.get("score")))
    return plan


def _rate_from_manifest(manifest: dict) -> int | None:
    settings = manifest.get("settings") or {}
    if settings.get("render") == "generative":
        return (manifest.get("separator") or {}).get("sample_rate")
    return (manifest.get("input") or {}).get("sample_rate")
