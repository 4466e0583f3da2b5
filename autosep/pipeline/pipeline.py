"""The automatic stem pipeline for one recording, in numbered steps (:meth:`Pipeline.process`, one method each):

    1. decode   open the file for block reads; check its length and that the stems can be written as asked
    2. tag      one streaming pass: peak level, NaN count and (unless sources were given) tags per block
    3. plan     the sources to separate: planned from the tags (and, for a video, what is on screen), the
                prompts given, or a plan passed in
    4. render   lay out the output: the folder (the earlier run's manifest removed) and the renderer's stem files
    5. separate window by window, only the sources active in each window; the renderer turns each window's
                stems into its output piece (projected masks on the original, or the raw stems), streamed to
                temporary files renamed when complete
    6. check    the tagger hears each stem and the residual (confirm, discover; more rounds, drop unconfirmed)
    7. write    the earlier run's stems not written again removed; then ``manifest.json``, last

Models are loaded once (:meth:`Pipeline.load`) and reused for every recording. The recording is read in blocks
and the stems are written as windows finish, so memory stays flat however long the file is. Whether a
recording needs processing at all (done already, or another input's folder) is the batch's decision.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from .. import stopping
from ..errors import AutosepError
from ..logs import apply_library_level
from ..taggers.sources import Source
from .inputs import InputFile
from .manifest import MANIFEST_NAME, Manifest, RemixRecord, ResidualReport, UnknownStemError
from .naming import RESIDUAL, is_inside
from .progress import Progress
from .recording import Recording, open_audio
from .render import RENDERERS, Renderer, StemPaths
from .windowed import SeparationReport, WindowedSeparation
from .settings import RunSettings
from .spans import gated, given_plan
from .video_out import write_video_out
from .visual import VisualEvidence
from .check import check_stems, fold_into_residual
from .claim import claim_folder
from .fingerprint import FingerprintWhileReading
from . import tagging
from .tagging import TaggedRecording
from .write import DiskFullError, OutputError, StemWriters, check_output_format

MIN_DURATION_S = 0.1


class InputError(AutosepError):
    """This recording cannot be processed (too short, unreadable...); the batch goes on."""


class StemFiles(Mapping):
    """Stems by source name, each read from its file (float32 ``[frames, channels]``) when accessed.

    The keys are the source names (``plan[i].label``, and ``"residual"``); a stem is also found by any name
    :meth:`Manifest.find_stem` accepts (its prompt, ``"dog barking"`` for the class ``"Bark"``, its AudioSet mid,
    its file name with or without extension), in any case. A name that matches none raises
    :class:`UnknownStemError` (a KeyError) listing what there is.
    """

    def __init__(self, manifest: Manifest | None):
        self.manifest = manifest
        self.files = manifest.files if manifest is not None else {}

    def key_for(self, name: str) -> str:
        """The source name a stem is stored under, for any name it answers to."""
        if name in self.files:
            return name
        if self.manifest is None:
            raise UnknownStemError(f"no stem named {name!r}; no stems were written")
        return self.manifest.find_stem(name)

    def __getitem__(self, name: str) -> np.ndarray:
        return sf.read(str(self.files[self.key_for(name)]), dtype="float32", always_2d=True)[0]

    def __contains__(self, name: object) -> bool:
        try:
            self.key_for(str(name))
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class RecordingResult:
    input: Path
    output: Path | None
    status: str  # "done", "skipped" (already done), "planned" (dry run), "failed"
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    plan: list[Source] = field(default_factory=list)
    manifest: Manifest | None = None  # the manifest written (done) or found (skipped)
    files: dict[str, Path] = field(default_factory=dict)  # source name (and "residual") -> stem file
    sample_rate: int | None = None
    seconds: float = 0.0
    top_tags: list[dict] = field(default_factory=list)  # the tagger's strongest classes (label, mid, max_score)
    processed_by: dict | None = None  # where a Ray worker processed it (engine, host, pid, node id, attempt)
    visual: dict | None = None  # a video's picture (the manifest's ``visual`` record; a dry run has no manifest)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped", "planned")

    @property
    def stems(self) -> Mapping[str, np.ndarray]:
        """The written stems by source name (and ``"residual"``), read from the files when accessed, so a batch
        of long recordings never holds every stem in memory."""
        return StemFiles(self.manifest)

    @classmethod
    def skipped(cls, item: InputFile, manifest: Manifest) -> "RecordingResult":
        """A recording done by an earlier run, as its manifest records it."""
        return cls(item.path, manifest.folder, "skipped", "already done (manifest.json exists)", plan=manifest.plan,
                   manifest=manifest, files=manifest.files, sample_rate=manifest.sample_rate)

    @classmethod
    def failed(cls, path: Path, message: str) -> "RecordingResult":
        return cls(path, None, "failed", message)


def _check_length(item: InputFile, recording: Recording) -> None:
    if recording.duration < MIN_DURATION_S:
        raise InputError(f"{item.path}: too short ({recording.duration * 1000:.0f} ms); autosep needs at least "
                         f"{MIN_DURATION_S} s of audio")


def output_folder(out_root: Path, item: InputFile) -> Path:
    """``<out>/<input path relative to the folder given, without extension>``; never outside ``out_root``."""
    folder = out_root / item.relative
    if not is_inside(folder, out_root) or folder.resolve() == out_root.resolve():
        raise OutputError(f"{item.path}: its output folder {folder} would fall outside {out_root}")
    return folder


@dataclass
class _Job:
    """One recording on its way through :meth:`Pipeline.process`'s steps: what each step found, for the next."""

    item: InputFile
    folder: Path
    previous: Manifest | None  # the manifest already in the folder (its stems are replaced)
    started: float  # time.perf_counter() when processing began
    given_plan: list[Source] | None  # a plan passed in: no tagging, no planning
    given_top_tags: list[dict] | None
    recording: Recording | None = None  # 1. decode
    renderer: Renderer | None = None
    subtype: str = ""
    tagged: TaggedRecording | None = None  # 2. tag (peak, NaN count, tags)
    plan: list[Source] = field(default_factory=list)  # 3. plan
    top_tags: list[dict] = field(default_factory=list)
    stale: set[Path] = field(default_factory=set)  # 4. render: the earlier run's files, removed unless rewritten
    paths: StemPaths | None = None
    report: SeparationReport | None = None  # 5. separate
    visual: dict | None = None  # a video's picture: on-screen evidence, --describe (3. plan)
    check: dict | None = None  # 6. check
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fingerprint: FingerprintWhileReading | None = None  # the input's, taken while it is decoded (7. write)


def _clipped(source: Source, duration_s: float) -> Source:
    """A source of a plan passed in, its segments clipped to a recording of ``duration_s``."""
    segments = [(max(0.0, float(a)), min(duration_s, float(b))) for a, b in source.segments]
    return Source(label=source.label, prompt=source.prompt, mid=source.mid, score=source.score,
                  segments=[(a, b) for a, b in segments if b > a], origin="given")


def _stem_warnings(item: InputFile, stems: list) -> list[str]:
    """What the user should hear about the written stems: silent ones, clipped samples."""
    warnings = []
    for stem in stems:
        if stem.silent:
            warnings.append(f"{item.path}: the stem for {stem.name!r} is silent")
        if stem.clipped_samples:
            warnings.append(f"{item.path}: {stem.clipped_samples} samples of {stem.file} were clipped "
                            "(write float stems with --format wav --bit-depth 32f to keep them)")
    return warnings


class Pipeline:
    """Holds the loaded tagger and separator and processes recordings one after another."""

    def __init__(self, settings: RunSettings, tagger=None, separator=None, progress: Progress | None = None):
        self.settings = settings
        self.tagger = tagger if settings.tagged else None
        # A separator loaded for another run (the web page, an AutoSep reused) gets this run's settings bound.
        self.separator = separator.bound_to(settings.separation) if hasattr(separator, "bound_to") else separator
        self.progress = progress or Progress()
        # What the separator works at (no separator in a dry run: AudioLDM's 16 kHz mono and window).
        self.model_rate = int(getattr(separator, "sample_rate", 16000))
        self.model_channels = int(getattr(separator, "channels", 1))
        self.windows = settings.windows.resolved(getattr(separator, "default_window", None),
                                                 getattr(separator, "device", None))
        self.processed_by: dict = {"engine": "local", "host": socket.gethostname()}  # the Ray engine sets its own
        self.visual = VisualEvidence(settings.visual, settings.models.device, self.progress)  # loads on first video

    @classmethod
    def load(cls, settings: RunSettings, progress: Progress | None = None) -> "Pipeline":
        """Load the models this run needs, once. Raises AutosepError (e.g. ModelNotAvailableError)."""
        progress = progress or Progress()
        tagger = separator = None
        if settings.tagged:
            from ..taggers import load_tagger_for

            progress.stage(f"loading tagger {settings.tagging.tagger}")
            tagger = load_tagger_for(settings.tagging, device=settings.models.device)
        if not settings.dry_run:
            from ..separator import ZeroSep

            models = settings.models
            progress.stage(f"loading separator {models.separator}")
            separator = ZeroSep.from_pretrained(models.separator, device=models.device, dtype=models.dtype,
                                                batch_size=models.batch_size, settings=settings.separation)
        apply_library_level()  # the libraries imported while loading speak at the run's level
        return cls(settings, tagger, separator, progress)

    def process(self, item: InputFile, folder: Path | None = None, previous: Manifest | None = None,
                plan: list[Source] | None = None, top_tags: list[dict] | None = None) -> RecordingResult:
        """Process one recording into ``folder`` (by default its place under the output folder). ``previous`` is
        the manifest already there (read here when not given), whose stems are replaced. Errors about this
        recording come back as a failed result; Ctrl-C propagates (after removing this recording's temporary
        files).

        ``plan`` (e.g. a dry run's plan edited by hand) replaces tagging and planning; ``top_tags`` then goes to
        the manifest as the tags it came from.
        """
        started = time.perf_counter()
        lock = result = None
        try:
            folder = folder or output_folder(self.settings.output.out, item)
            if not self.settings.dry_run:  # one writer per folder; a run that finished it meanwhile is respected
                lock, current, newer = claim_folder(item.path, folder, previous)
                settled = self._finished_meanwhile(item, current) if newer else None
                if settled is not None:
                    return settled
                previous = current
            elif previous is None and folder.is_dir():
                previous = Manifest.read(folder)
            with stopping.deferred():  # Ctrl-C / SIGTERM stop at the next step, then the temporaries go
                result = self._steps(_Job(item, folder, previous, started, plan, top_tags))
            if result.status == "done":
                write_remix(result, self.settings.output, self.progress)
                write_video_out(result, self.settings.output, self.progress)
        except DiskFullError:
            raise  # not about this recording: the batch stops
        except (AutosepError, OSError) as exc:
            message = str(exc) if isinstance(exc, AutosepError) else f"{item.path}: {exc.strerror or exc}"
            result = RecordingResult.failed(item.path, message)
        except Exception as exc:  # from torch/diffusers/the models/decoders: say which file, go on (not Ctrl-C)
            result = RecordingResult.failed(item.path, f"{item.path}: {type(exc).__name__}: {exc}")
        finally:
            if lock is not None:
                lock.release(remove_empty_folder=result is not None and not result.ok)
        result.seconds = time.perf_counter() - started
        return result

    def _finished_meanwhile(self, item: InputFile, current: Manifest) -> RecordingResult | None:
        """Another process finished this recording after the batch decided to: done if it answers this run's
        request, refused (never mixed) if not; None with --overwrite (this run replaces it)."""
        if self.settings.output.overwrite:
            return None
        differs = current.differences(self.settings.request(), item.path)
        if not differs:
            return RecordingResult.skipped(item, current)
        return RecordingResult.failed(item.path, f"{item.path}: finished meanwhile by another run with other "
                                                 f"settings ({', '.join(differs)}); pass --overwrite to redo it")

    def _steps(self, job: "_Job") -> RecordingResult:
        """The numbered steps of the module docstring, one method each, in order."""
        with open_audio(job.item.path) as job.recording:
            if not self.settings.dry_run:
                job.fingerprint = FingerprintWhileReading(job.item.path)
            self._decode(job)  # 1
            clock = time.perf_counter()
            self._tag(job)  # 2
            self._plan(job)  # 3
            job.timings["scan_and_tag"] = time.perf_counter() - clock
            if self.settings.dry_run:
                return RecordingResult(job.item.path, job.folder, "planned", plan=job.plan, warnings=job.warnings,
                                       top_tags=job.top_tags, visual=job.visual)
            clock = time.perf_counter()
            self._render(job)  # 4
            self._separate(job)  # 5
            job.timings["separate_and_write"] = time.perf_counter() - clock
            clock = time.perf_counter()
            if self._check(job):  # 6
                job.timings["check"] = time.perf_counter() - clock
        return self._write(job)  # 7

    def _decode(self, job: "_Job") -> None:
        """Step 1: the recording is open; check its length and that its stems can be written as asked."""
        job.timings["open"] = time.perf_counter() - job.started
        _check_length(job.item, job.recording)
        output = self.settings.output
        job.renderer = RENDERERS[output.render](job.recording, self.model_rate, self.model_channels)
        try:
            job.subtype = output.subtype(job.recording.subtype)
            check_output_format(output.format, job.subtype, *job.renderer.shape)
        except OutputError as exc:
            raise OutputError(f"{job.item.path}: {exc}") from None

    def _tag(self, job: "_Job") -> None:
        """Step 2: one streaming pass (``tagging``, the path ``autosep tag`` takes too): peak, NaN count and, unless
        sources were given or a plan was passed in, the tags. The pass settles the recording's real length."""
        tagger = self.tagger if job.given_plan is None else None
        self.progress.stage("tagging" if tagger is not None else "reading")
        job.tagged = tagging.tag_recording(job.recording, tagger)  # the very call autosep tag makes
        recording = job.recording
        if recording.truncated:  # a half-copied file is still worth separating, but never silently
            rate = recording.sample_rate
            job.warnings.append(f"{job.item.path}: the file is shorter than its header says "
                                f"({recording.header_frames / rate:.2f} s promised, {recording.frames / rate:.2f} s "
                                "of audio there; cut off while copying?); processed at its real length")
        _check_length(job.item, recording)  # the audio really there may be shorter than the header said

    def _plan(self, job: "_Job") -> None:
        """Step 3: the sources to separate: the plan passed in (its segments clipped to the recording), the
        prompts given, or planned from the tags; for a video, also from what is on screen. A silent recording
        holds no source, whatever was asked for (a plan passed in excepted: it was chosen by hand)."""
        tagged, duration = job.tagged, job.recording.duration
        if job.given_plan is not None:
            tagged.plan = [_clipped(source, duration) for source in job.given_plan]
        elif self.tagger is None:
            if self.settings.sources is not None and not tagged.silent:
                tagged.plan = given_plan(self.settings.sources, self.settings.spans, duration)
        else:
            tagging.plan_tagged(tagged, self.settings.planning.as_dict())
        if job.given_plan is None:  # video inputs: on-screen evidence and --describe (pipeline/visual.py)
            planner = self.settings.planning.as_dict() if self.tagger is not None else None
            job.visual = self.visual.apply(job.item.path, duration, tagged, planner, job.warnings)
        job.plan = tagged.plan
        path, notes = job.item.path, tagged.result.notes if tagged.result is not None else []
        job.warnings.extend(f"{path}: {note}" for note in dict.fromkeys(notes))
        if tagged.non_finite:
            job.warnings.append(f"{path}: {tagged.non_finite} NaN/infinite samples were replaced by silence")
        if tagged.silent:
            job.warnings.append(f"{path}: the recording is silent; no sources, no stems written")
        elif not job.plan:
            job.warnings.append(f"{path}: no source passed the threshold; no stems written "
                                "(try a lower --threshold, or name sources with -s)")
        for warning in job.warnings:
            self.progress.warn(warning)
        job.top_tags = tagged.top_tags() if job.given_plan is None else list(job.given_top_tags or [])

    def _render(self, job: "_Job") -> None:
        """Step 4: where the rendered stems go: the folder, cleared of the earlier run's leftovers and of its
        manifest (from here on it is not "done"), and the renderer's stem files (a residual when projected). The
        renderer turns each window's stems into these files as step 5 separates them."""
        folder = job.folder
        folder.mkdir(parents=True, exist_ok=True)
        if job.previous is not None:  # the old stems, and a remix or video made of them: never left beside new ones
            job.stale = set(job.previous.outputs)
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        job.paths = job.renderer.paths(folder, [s.label for s in job.plan], self.settings.output.format)

    def _separate(self, job: "_Job") -> None:
        """Step 5: window by window, only the sources active in each window, streamed through the renderer into
        temporary files renamed when complete (nothing to separate: no stems)."""
        if job.plan:
            job.report = self._run_windows(job.recording, job.plan, job.renderer, job.paths, job.subtype)

    def _check(self, job: "_Job") -> bool:
        """Step 6: the stems checked by the tagger, when there are stems and tags (:meth:`_check_stems`)."""
        if job.report is None or self.tagger is None or job.tagged.result is None:
            return False
        job.plan, job.paths, job.report, job.check = self._check_stems(
            job.recording, job.plan, job.renderer, job.paths, job.subtype, job.report, job.tagged.result, job.folder)
        return True

    def _write(self, job: "_Job") -> RecordingResult:
        """Step 7: the earlier run's stems that were not written again removed, warnings about the stems, then
        ``manifest.json``, last: it marks the recording done."""
        item, folder, report = job.item, job.folder, job.report
        files = {source.label: path for source, path in zip(job.plan, job.paths.sources)}
        if job.paths.residual is not None:
            files[RESIDUAL] = job.paths.residual
        for old in job.stale - set(files.values()):
            if is_inside(old, folder) and old.name != MANIFEST_NAME:
                old.unlink(missing_ok=True)
        late = _stem_warnings(item, report.stems if report else [])
        for warning in late:
            self.progress.warn(warning)
        job.warnings.extend(late)
        job.timings["total"] = time.perf_counter() - job.started
        windows = report.windows if report else []
        work = {"windows": len(windows), "separated_windows": report.separated_windows if report else 0,
                "unet_evaluations": report.unet_evaluations if report else 0}
        source_mode = "edited" if job.given_plan is not None else "tagged" if self.settings.tagged else "given"
        manifest = Manifest.build(
            folder, recording=job.recording, input_given=item.given, non_finite=job.tagged.non_finite,
            peak=job.tagged.peak, tagger=self.tagger, separator=self.separator, plan=job.plan, source_mode=source_mode,
            settings=self.settings.record(job.subtype, self.windows), work=work,
            stems=report.stems if report else [], residual=report.residual if report else None, windows=windows,
            timings=job.timings, warnings=job.warnings, top_tags=job.top_tags, check=job.check,
            processed_by=self.processed_by, fingerprint=job.fingerprint.result() if job.fingerprint else None)
        manifest.visual = job.visual
        manifest.write()
        return RecordingResult(item.path, folder, "done", plan=job.plan, manifest=manifest, files=files,
                               warnings=job.warnings, sample_rate=job.renderer.shape[0], top_tags=job.top_tags)

    def _run_windows(self, recording: Recording, plan: list[Source], renderer, paths, subtype: str):
        """``plan`` separated window by window into ``paths``, renamed to their final names when complete."""
        output = self.settings.output
        with StemWriters(paths.all, output.format, subtype, *renderer.shape) as writers:
            report = WindowedSeparation(self.separator, self.windows, self.progress).run(
                recording, plan, gated(renderer, plan, self.settings.spans), paths, writers)
            writers.commit()
        return report

    def _check_stems(self, recording: Recording, plan: list[Source], renderer, paths, subtype: str, report,
                     mixture, folder: Path):
        """The stems checked by the tagger (check.py): confirm each stem and find sources left in the residual;
        with ``rounds`` > 1 separate again with those (up to ``max_sources``); with ``drop_unconfirmed`` fold the
        unconfirmed stems into the residual (the sum stays exact)."""
        check_settings, output = self.settings.check, self.settings.output
        planner = self.settings.planning.as_dict()
        max_sources = self.settings.planning.max_sources
        unet_evaluations = report.unet_evaluations
        added_in = {source.label: 1 for source in plan}
        round_no = 1
        while True:
            self.progress.stage("checking stems" if round_no == 1 else f"checking stems (round {round_no})")
            check = check_stems(self.tagger, plan, paths.sources, paths.residual, mixture, planner)
            room = len(check.discovered) if max_sources is None else max_sources - len(plan)
            if round_no >= check_settings.rounds or not check.discovered or room <= 0:
                break
            round_no += 1
            added = check.discovered[:room]
            added_in.update((source.label, round_no) for source in added)
            plan = plan + added
            old = set(paths.all)
            paths = renderer.paths(folder, [s.label for s in plan], output.format)
            for stale in old - set(paths.all):
                stale.unlink(missing_ok=True)
            self.progress.stage(f"separating (round {round_no})")
            report = self._run_windows(recording, plan, renderer, paths, subtype)
            unet_evaluations += report.unet_evaluations
        report.unet_evaluations = unet_evaluations
        for stem, verdict in zip(report.stems, check.stems):
            stem.check = {k: verdict[k] for k in ("score_in_stem", "score_in_mixture", "confirmed")}
            stem.round = added_in.get(stem.name, 1)
        record = {"rounds": round_no, **check.to_dict(), "dropped": []}
        if check_settings.drop_unconfirmed and check.unconfirmed:
            drop = set(check.unconfirmed)
            keep = [i for i in range(len(plan)) if i not in drop]
            residual = fold_into_residual(recording, [paths.sources[i] for i in keep],
                                          [paths.sources[i] for i in sorted(drop)], paths.residual, output.format,
                                          subtype, *renderer.shape)
            record["dropped"] = [plan[i].label for i in sorted(drop)]
            if residual is not None:
                report.residual = ResidualReport(residual["file"], residual["peak"], residual["clipped_samples"])
            plan = [plan[i] for i in keep]
            report.stems = [report.stems[i] for i in keep]
            paths = StemPaths([paths.sources[i] for i in keep], paths.residual)
            for entry in report.windows:
                entry["sources"] = [name for name in entry["sources"] if name not in record["dropped"]]
        return plan, paths, report, record


def write_remix(result: RecordingResult, output, progress: Progress) -> None:
    """``--keep``/``--remove``: write remix.<format> beside the finished (or earlier) stems, and record it in the
    manifest."""
    if not (output.keep or output.remove) or not result.files or result.output is None:
        return
    from .remix import REMIX, open_result, remix

    stems = open_result(result.output)
    try:
        named = {stems.find(name).name for name in (output.keep or output.remove)}
    except UnknownStemError as exc:
        raise UnknownStemError(f"{result.input}: {exc}; the stems are written, rerun with a valid name to write "
                               "only the remix") from None
    if output.keep:
        gains = {stem.name: (0.0 if stem.name in named else -math.inf) for stem in stems.stems}
    else:
        gains = {stem.name: (-math.inf if stem.name in named else 0.0) for stem in stems.stems}
    mixed = remix(stems, gains, result.output / f"{REMIX}.{output.format}", bit_depth=output.bit_depth)
    for warning in mixed.warnings:
        progress.warn(warning)
    result.warnings.extend(mixed.warnings)
    manifest = stems.manifest
    manifest.remix = RemixRecord.from_dict({**mixed.to_dict(), "keep" if output.keep else "remove": sorted(named)})
    manifest.write()
    result.manifest = manifest
