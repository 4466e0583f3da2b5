"""The web app's work, with no Gradio in it: find sources, separate an edited list, remix, per browser session.

Rules:
- Models are loaded once (:meth:`Engine.load`) and shared by every session; a separator chosen in the page that
  is not the one loaded at start is loaded on first use and kept.
- Each session owns one temporary folder (:class:`Session`); the upload is copied into it, everything the
  session produces is written inside it, and :meth:`Session.cleanup` removes it. Messages name the uploaded
  file by its own name, never by the server's temporary path.
- Every failure reaches the page as an :class:`AutosepError` whose message is the command line's.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AutosepError
from ..pipeline.inputs import InputFile
from ..pipeline.manifest import MANIFEST_NAME, Manifest
from ..pipeline.naming import RESIDUAL, slugify
from ..pipeline.recording import open_audio
from ..pipeline.pipeline import Pipeline, RecordingResult
from ..pipeline.settings import PipelineOptions
from ..pipeline.progress import Progress
from ..pipeline.remix import REMIX, RemixResult, open_result, remix
from ..taggers.sources import Source

Report = Callable[[float | None, str], None]  # (fraction done or None, what is happening)

SEPARATION_SETTINGS = ("model", "inversion", "steps", "guidance", "inv_prompt", "seed", "render")


@dataclass
class WebConfig:
    """The server's settings: the main command's options as defaults, plus the upload limits."""

    options: PipelineOptions
    max_duration_s: float = 600.0  # longer recordings are refused with a message saying so
    max_upload_mb: float = 500.0

    def __post_init__(self) -> None:
        # The page does not look at a video's picture yet (issue 22, item 5): its soundtrack only.
        self.options = dataclasses.replace(self.options, visual=False, describe=None)


@dataclass
class SourceRow:
    """One line of the editable source list."""

    label: str
    prompt: str
    score: float | None = None
    active_s: float = 0.0
    segments: list[tuple[float, float]] = field(default_factory=list)
    mid: str | None = None
    separate: bool = True


@dataclass
class Found:
    """Step 1's result."""

    sources: list[SourceRow]
    top_tags: list[dict]
    duration_s: float
    warnings: list[str]


@dataclass
class Separated:
    """Step 2's result: stem files by name (residual last), their spectrograms, the zip of stems + manifest."""

    folder: Path
    stems: dict[str, Path]
    spectrograms: dict[str, Path]
    archive: Path
    manifest: Manifest | None
    warnings: list[str]


class Session:
    """One browser session: a temporary folder holding its upload and results, removed by :meth:`cleanup`."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.input: Path | None = None
        self.display_name = ""
        self.found: Found | None = None
        self.separated: Separated | None = None
        self.remix_count = 0
        self.uploads = 0
        self.runs = 0

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def tell(self, message: str) -> str:
        """``message`` with the server's temporary paths replaced by the upload's own name."""
        if self.input is not None:
            message = message.replace(str(self.input), self.display_name)
        return message.replace(str(self.folder) + "/", "").replace(str(self.folder), "")

    def adopt(self, upload: str | Path, display_name: str | None = None) -> Path:
        """Copy the uploaded file into this session (a fresh subfolder, so earlier results never mix in)."""
        upload = Path(upload)
        if not upload.is_file():
            raise AutosepError("no file received; upload a recording or record one first")
        name = display_name or upload.name
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        self.uploads += 1
        target_dir = self.folder / f"upload-{self.uploads}"
        target_dir.mkdir(parents=True)
        target = target_dir / f"{slugify(stem)}{suffix if suffix.isascii() and len(suffix) <= 6 else ''}"
        shutil.copyfile(upload, target)
        self.input, self.display_name = target, name
        self.found = self.separated = None
        return target


class _ReportProgress(Progress):
    """Pipeline progress hooks -> one ``report(fraction, text)`` callback (Gradio's progress bar)."""

    def __init__(self, report: Report, stage_name: str):
        self.report, self.stage_name = report, stage_name
        self.units = self.done_units = 0
        self.steps_total = self.steps_done = 0

    def stage(self, text: str) -> None:
        self.report(None, text)

    def start_windows(self, windows: int, units: int) -> None:
        self.units, self.done_units = max(units, 1), 0
        self.report(0.0, f"{self.stage_name}: {windows} windows")

    def window_done(self, index: int, units: int) -> None:
        self.done_units += units
        self.steps_done = 0
        self.report(min(1.0, self.done_units / self.units), f"{self.stage_name}: window {index + 1}")

    def steps(self, done: int, total: int) -> None:
        if self.units:
            part = self.done_units / self.units
            self.report(min(1.0, part + (done / max(total, 1)) / self.units * 0.999), f"{self.stage_name}: diffusion")

    def warn(self, message: str) -> None:  # warnings are returned with the result
        pass


def _silent_report(fraction: float | None, text: str) -> None:
    pass


class Engine:
    """The loaded models and the three steps. Thread-safe for use behind Gradio's queue."""

    def __init__(self, config: WebConfig, pipeline: Pipeline):
        self.config = config
        self.tagger = pipeline.tagger
        self.separators = {config.options.model: pipeline.separator}
        self._lock = threading.Lock()  # separator loading and runs: one at a time (the queue already orders them)

    @classmethod
    def load(cls, config: WebConfig, report: Report = _silent_report) -> "Engine":
        """Load the tagger and the default separator once. Raises AutosepError (e.g. a model not downloaded)."""
        options = dataclasses.replace(config.options, sources=None, dry_run=False)
        try:
            pipeline = Pipeline.load(options.settings(), _ReportProgress(report, "loading"))
        except AutosepError:
            raise
        except Exception as exc:  # a broken model folder fails in many ways: say which model, as the CLI does
            raise AutosepError(f"could not load the models (tagger {options.tagger}, separator {options.model}): "
                               f"{type(exc).__name__}: {exc}") from None
        return cls(config, pipeline)

    @property
    def defaults(self) -> dict:
        opts = self.config.options
        return {name: getattr(opts, name) for name in SEPARATION_SETTINGS}

    def separator(self, model: str):
        with self._lock:
            if model not in self.separators:
                from ..separator import ZeroSep

                opts = self.config.options
                try:
                    self.separators[model] = ZeroSep.from_pretrained(model, device=opts.device, dtype=opts.dtype,
                                                                     batch_size=opts.batch_size)
                except AutosepError:
                    raise
                except Exception as exc:
                    raise AutosepError(f"could not load the separator {model}: {type(exc).__name__}: {exc}") from None
            return self.separators[model]

    # -- step 1 ------------------------------------------------------------------------------------------------

    def check_length(self, session: Session) -> float:
        assert session.input is not None
        try:
            with open_audio(session.input) as reader:
                duration = reader.duration
        except AutosepError as exc:
            raise AutosepError(session.tell(str(exc))) from None
        limit = self.config.max_duration_s
        if duration > limit:
            raise AutosepError(f"{session.display_name}: {clock(duration)} long; this server accepts recordings up "
                               f"to {clock(limit)} (start it with autosep web --max-duration SECONDS to raise "
                               "the limit, or cut the recording)")
        return duration

    def find_sources(self, session: Session, report: Report = _silent_report) -> Found:
        """Tag the session's recording and plan its sources (the command line's ``--dry-run``)."""
        if session.input is None:
            raise AutosepError("no recording yet; upload a file or record one first")
        duration = self.check_length(session)
        options = dataclasses.replace(self.config.options, sources=None, dry_run=True,
                                      out=session.folder / "plan", overwrite=True)
        pipeline = Pipeline(options.settings(), tagger=self.tagger, progress=_ReportProgress(report, "tagging"))
        result = pipeline.process(self._item(session))
        if not result.ok:
            raise AutosepError(session.tell(result.message))
        rows = [SourceRow(label=s.label, prompt=s.prompt, score=s.score, mid=s.mid,
                          segments=[(float(a), float(b)) for a, b in s.segments],
                          active_s=float(sum(b - a for a, b in s.segments))) for s in result.plan]
        session.found = Found(rows, list(result.top_tags), duration, [session.tell(w) for w in result.warnings])
        session.separated = None
        return session.found

    def own_source(self, session: Session, prompt: str) -> SourceRow:
        """A source the user typed: separated everywhere in the recording."""
        prompt = " ".join(str(prompt).split())
        if not prompt:
            raise AutosepError("type a prompt first (e.g. \"dog barking\")")
        duration = session.found.duration_s if session.found else self.check_length(session)
        return SourceRow(label=prompt, prompt=prompt, segments=[(0.0, duration)], active_s=duration)

    # -- step 2 ------------------------------------------------------------------------------------------------

    def separate(self, session: Session, sources: Sequence[SourceRow], settings: Mapping[str, object],
                 top_tags: list[dict] | None = None, report: Report = _silent_report) -> Separated:
        """Separate ``sources`` (those with ``separate`` set) with ``settings`` (SEPARATION_SETTINGS keys)."""
        if session.input is None:
            raise AutosepError("no recording yet; upload a file or record one first")
        chosen = [s for s in sources if s.separate]
        if not chosen:
            raise AutosepError("no source selected; tick at least one source or add your own prompt")
        labels, prompts = [s.label.strip() for s in chosen], [" ".join(s.prompt.split()) for s in chosen]
        for what, values in (("source", labels), ("prompt", prompts)):
            empty = [i + 1 for i, v in enumerate(values) if not v]
            if empty:
                raise AutosepError(f"row {empty[0]} has an empty {what}; fill it in or untick the row")
            seen: set[str] = set()
            for value in values:
                if value.casefold() in seen:
                    raise AutosepError(f"two sources have the {what} {value!r}; each must be different")
                seen.add(value.casefold())
        if any(label.casefold() == RESIDUAL for label in labels):
            raise AutosepError(f"{RESIDUAL!r} is the name of the leftover stem; call the source something else")
        self.check_length(session)
        unknown = set(settings) - set(SEPARATION_SETTINGS)
        if unknown:
            raise AutosepError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = {**self.defaults, **settings}
        values["steps"], values["seed"] = int(values["steps"]), int(values["seed"])
        values["guidance"] = float(values["guidance"])
        out = session.folder / "separated"
        options = dataclasses.replace(self.config.options, sources=None, dry_run=False, out=out, overwrite=True,
                                      **values)
        settings_ = options.settings()  # checked once, before the separator is loaded
        separator = self.separator(str(values["model"]))
        plan = [Source(label=label, prompt=prompt, segments=list(s.segments) or [(0.0, math.inf)], mid=s.mid,
                       score=s.score, origin="given") for label, prompt, s in zip(labels, prompts, chosen)]
        with self._lock:
            pipeline = Pipeline(settings_, tagger=self.tagger, separator=separator,
                                progress=_ReportProgress(report, "separating"))
            result = pipeline.process(self._item(session), plan=plan, top_tags=top_tags)
        if not result.ok:
            raise AutosepError(session.tell(result.message))
        if not result.files:
            raise AutosepError(session.tell("; ".join(result.warnings) or "no stems were written"))
        report(1.0, "drawing spectrograms")
        session.runs += 1
        pictures = session.folder / "spectrograms" / f"run-{session.runs}"
        spectrograms = mel_images(result.files, pictures)
        archive = self._archive(session, result)
        session.separated = Separated(result.output, dict(result.files), spectrograms, archive,
                                      result.manifest, [session.tell(w) for w in result.warnings])
        return session.separated

    def _archive(self, session: Session, result: RecordingResult) -> Path:
        """All stems and the manifest as one zip, written beside the result folder (atomic)."""
        assert result.output is not None
        name = f"{slugify(Path(session.display_name).stem)}_stems.zip"
        target = session.folder / name
        partial = target.with_name(f".{name}.partial")
        members = [*result.files.values(), result.output / MANIFEST_NAME]
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member in members:
                archive.write(member, arcname=f"{result.output.name}/{member.name}")
        partial.replace(target)
        return target

    # -- step 3 ------------------------------------------------------------------------------------------------

    def remix(self, session: Session, gains_db: Mapping[str, float]) -> RemixResult:
        """Mix the session's stems with ``gains_db`` (by stem name) into a new file in the session."""
        if session.separated is None:
            raise AutosepError("nothing to remix yet; run step 2 (Separate) first")
        folder = open_result(session.separated.folder)
        ext = next(iter(session.separated.stems.values())).suffix
        session.remix_count += 1
        out = session.folder / "remixes" / f"{REMIX}-{session.remix_count}{ext}"
        try:
            return remix(folder, dict(gains_db), out)
        except AutosepError as exc:
            raise AutosepError(session.tell(str(exc))) from None

    def _item(self, session: Session) -> InputFile:
        assert session.input is not None
        return InputFile(session.input, session.input.parent, session.display_name)


def clock(seconds: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def mel_images(stems: Mapping[str, Path], folder: Path, width_px: int = 900, height_px: int = 260) -> dict[str, Path]:
    """A mel spectrogram per stem (channel average, 128 bands) as PNGs with time and frequency axes.

    All stems share one dB scale (0 dB = the loudest bin of any of them), so their levels can be compared.
    """
    import librosa
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import librosa.display
    import matplotlib.pyplot as plt
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    mels, rate, hop = {}, 0, 0
    for name, path in stems.items():
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
        # About width_px columns whatever the length (a long stem must not make a huge image).
        hop = max(64, int(2 ** math.ceil(math.log2(max(1, len(mono) / width_px)))))
        n_fft = max(2048 if rate > 24000 else 1024, hop * 2)
        mels[name] = librosa.feature.melspectrogram(y=mono, sr=rate, n_fft=n_fft, hop_length=hop, n_mels=128,
                                                    fmax=rate / 2)
    loudest = max((float(m.max()) for m in mels.values()), default=0.0) or 1.0
    pictures = {}
    for index, (name, mel) in enumerate(mels.items()):
        db = librosa.power_to_db(mel, ref=loudest, top_db=None).clip(min=-90.0)  # silence at the floor, not -inf
        figure, axes = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
        try:
            image = librosa.display.specshow(db, sr=rate, hop_length=hop, x_axis="s", y_axis="mel", fmax=rate / 2,
                                             ax=axes, cmap="magma", vmin=-90, vmax=0)
            figure.colorbar(image, ax=axes, format="%+.0f dB", pad=0.01)
            axes.set_title(name, fontsize=9)
            figure.tight_layout()
            target = folder / f"{index:02d}.png"
            figure.savefig(target, format="png")
        finally:
            plt.close(figure)
        pictures[name] = target
    return pictures
