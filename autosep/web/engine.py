"""The web app's work, with no Gradio in it: find sources, separate an edited list, remix, per browser session.

Rules:
- Visitors choose, the operator decides: the separators and taggers offered are the operator's lists
  (:class:`WebConfig`), each shown by a name (never a server path); anything else is refused. Each is loaded at
  most once and shared by every session (the first of each list before the server starts, the others on first
  use).
- Each session owns one temporary folder (:class:`Session`); the upload is moved into it, everything the
  session produces is written inside it, and :meth:`Session.cleanup` removes it. Messages and the manifest in
  the zip name the uploaded file by its own name and the models by their page names, never by a server path.
- A video upload's picture is looked at as on the command line (on-screen evidence, the visitor's descriptions
  through the operator's describe model; the visual models loaded once, on the first video, and shared), and
  each remix is also written back into the video (the picture copied untouched).
- Every failure reaches the page as an :class:`AutosepError` whose message is the command line's, in plain words
  (:func:`plain`: the decoders' internals left out).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import AutosepError
from ..pipeline.inputs import InputFile
from ..pipeline.manifest import MANIFEST_NAME
from ..pipeline.naming import RESIDUAL, slugify
from ..pipeline.pipeline import Pipeline, RecordingResult
from ..pipeline.progress import Progress
from ..pipeline.recording import open_audio
from ..pipeline.remix import REMIX, RemixResult, open_result, remix
from ..pipeline.settings import PipelineOptions, RunSettings
from ..pipeline.video_out import VideoOutError, remux_with_soundtrack
from ..pipeline.visual import VisualEvidence
from ..video.frames import has_video_stream
from ..taggers.sources import Source
from .sessions import Found, Separated, Session, SourceRow, scrub

Report = Callable[[float | None, str], None]  # (fraction done or None, what is happening)

SEPARATION_SETTINGS = ("model", "inversion", "steps", "guidance", "inv_prompt", "seed", "render")
MAX_SOURCES = 12  # the most sources one request separates, and descriptions it asks the describe model about


@dataclass(frozen=True)
class Choice:
    """A model the operator offers: ``name`` is what the page shows, ``spec`` what the loader takes (an alias, a
    hub id or a server path; never shown)."""

    name: str
    spec: str


def choices_for(specs: Sequence[str]) -> list[Choice]:
    """The operator's list as page names: an alias or hub id as written, a local folder by its own name (made
    unique with a number where two folders share one)."""
    choices: list[Choice] = []
    for spec in dict.fromkeys(str(s) for s in specs):
        local = Path(spec).expanduser()
        name = local.name if (local.is_absolute() or spec.startswith(".")) or local.exists() else spec
        taken = {c.name for c in choices}
        unique, number = name, 2
        while unique in taken:
            unique, number = f"{name} ({number})", number + 1
        choices.append(Choice(unique, spec))
    return choices


@dataclass
class WebConfig:
    """The server's settings: the main command's options as defaults, the operator's model lists, the limits."""

    options: PipelineOptions
    max_duration_s: float = 600.0  # longer recordings are refused with a message saying so
    max_upload_mb: float = 500.0
    models: Sequence[str] = ()  # separators offered (the first is the default); empty: options.model alone
    taggers: Sequence[str] = ()  # tagger names offered (the first uses options.tagger_model); empty: options.tagger
    keep_hours: float = 1.0  # a session's files go when its tab closes, or after this long without a request

    def __post_init__(self) -> None:
        # Descriptions come from a visitor, per request; the operator chooses the models that look (visual_model,
        # describe_model) and whether the picture is looked at (visual).
        self.options = dataclasses.replace(self.options, describe=None)


_INTERNALS = re.compile(r"\s*\((?=[^()]*(?:Errno|Error|error|;))[^()]*\)")


def plain(message: str) -> str:
    """The CLI's message without the libraries' internals, e.g. ``(Format not recognised.; [Errno 1094995529]...)``."""
    return _INTERNALS.sub("", message)


class _ReportProgress(Progress):
    """Pipeline progress hooks -> one ``report(fraction, text)`` callback (Gradio's progress bar), in words:
    ``"separating: window 3 of 7, step 31 of 51"``."""

    def __init__(self, report: Report, stage_name: str):
        self.report, self.stage_name = report, stage_name
        self.windows = self.windows_done = 0
        self.units = self.done_units = 0

    def stage(self, text: str) -> None:
        self.report(None, text)

    def start_windows(self, windows: int, units: int) -> None:
        self.windows, self.windows_done = windows, 0
        self.units, self.done_units = max(units, 1), 0
        self.report(0.0, f"{self.stage_name}: window 1 of {windows}")

    def window_done(self, index: int, units: int) -> None:
        self.done_units += units
        self.windows_done = min(self.windows, self.windows_done + 1)
        if self.windows_done < self.windows:
            self.report(self.done_units / self.units,
                        f"{self.stage_name}: window {self.windows_done + 1} of {self.windows}")

    def steps(self, done: int, total: int) -> None:
        if self.units:
            fraction = min(0.999, (self.done_units + done / max(total, 1)) / self.units)
            window = min(self.windows_done + 1, self.windows)
            self.report(fraction, f"{self.stage_name}: window {window} of {self.windows}, step {done} of {total}")

    def warn(self, message: str) -> None:  # warnings are returned with the result
        pass


def _silent_report(fraction: float | None, text: str) -> None:
    pass


class Engine:
    """The loaded models and the three steps. Thread-safe for use behind Gradio's queue."""

    def __init__(self, config: WebConfig, pipeline: Pipeline):
        self.config = config
        self.models = choices_for(config.models or [config.options.model])
        self.taggers = [Choice(name, name) for name in dict.fromkeys(config.taggers or [config.options.tagger])]
        self._separators = {self.models[0].name: pipeline.separator}
        self._taggers = {self.taggers[0].name: pipeline.tagger}
        self._visual = pipeline.visual  # the picture's models, loaded on the first video and shared
        self._lock = threading.RLock()  # model loading and runs: one at a time (the queue already orders them)

    @classmethod
    def load(cls, config: WebConfig, report: Report = _silent_report) -> "Engine":
        """Load the first tagger and separator of the operator's lists once. Raises AutosepError (e.g. a model not
        downloaded)."""
        first_model = (list(config.models) or [config.options.model])[0]
        first_tagger = (list(config.taggers) or [config.options.tagger])[0]
        options = dataclasses.replace(config.options, sources=None, dry_run=False, model=first_model,
                                      tagger=first_tagger)
        config = dataclasses.replace(config, options=options)
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
        return {**{name: getattr(opts, name) for name in SEPARATION_SETTINGS}, "model": self.models[0].name}

    def private_paths(self, session: Session) -> dict[str, str]:
        """Every server path a visitor could meet in this session's messages and manifest -> its public name."""
        paths = session.private_paths()
        opts = self.config.options
        models = [*self.models, *([Choice(self.taggers[0].name, str(opts.tagger_model))] if opts.tagger_model else []),
                  *choices_for([spec for spec in (opts.visual_model, opts.describe_model) if spec])]
        for choice in models:
            local = Path(choice.spec).expanduser()
            if local.exists():
                paths.update({str(local.resolve()): choice.name, str(local): choice.name, choice.spec: choice.name})
        return paths

    def tell(self, session: Session, message: str) -> str:
        """``message`` as a visitor may see it: the session's and the models' server paths replaced by names."""
        return scrub(message, self.private_paths(session))

    def _choice(self, offered: list[Choice], name: str, what: str) -> Choice:
        for choice in offered:
            if choice.name == name:
                return choice
        names = ", ".join(c.name for c in offered)
        raise AutosepError(f"this server offers the {what}s {names}; choose one of them")

    def separator(self, name: str):
        """The offered separator called ``name`` (a page name), loaded on first use and kept."""
        choice = self._choice(self.models, name, "model")
        with self._lock:
            if choice.name not in self._separators:
                from ..separator import ZeroSep

                opts = self.config.options
                try:
                    self._separators[choice.name] = ZeroSep.from_pretrained(
                        choice.spec, device=opts.device, dtype=opts.dtype, batch_size=opts.batch_size)
                except Exception as exc:
                    raise AutosepError(f"could not load the model {choice.name}; tell the server's operator "
                                       f"({type(exc).__name__})") from None
            return self._separators[choice.name]

    def tagger(self, name: str | None = None):
        """The offered tagger called ``name`` (default: the first), loaded on first use and kept."""
        choice = self._choice(self.taggers, name or self.taggers[0].name, "tagger")
        with self._lock:
            if choice.name not in self._taggers:
                from ..taggers import load_tagger_for

                options = dataclasses.replace(self.config.options, tagger=choice.spec, tagger_model=None)
                try:
                    self._taggers[choice.name] = load_tagger_for(options.settings().tagging,
                                                                 device=options.device)
                except Exception as exc:
                    raise AutosepError(f"could not load the tagger {choice.name}; tell the server's operator "
                                       f"({type(exc).__name__})") from None
            return self._taggers[choice.name]

    def visual_for(self, settings: RunSettings, report: Report) -> VisualEvidence:
        """The server's visual models (loaded now where ``settings`` need them and not loaded yet) with this
        request's settings (its descriptions)."""
        wanted = settings.visual
        with self._lock:
            for needed, load, what, spec in ((wanted.enabled, self._visual.scorer, "visual", wanted.model),
                                             (bool(wanted.describe), self._visual.describer, "describe",
                                              wanted.describe_model)):
                if needed:
                    name = choices_for([spec])[0].name if spec else "default"
                    try:
                        load()
                    except Exception as exc:
                        raise AutosepError(f"could not load the {what} model ({name}); tell the server's "
                                           f"operator ({type(exc).__name__})") from None
        return self._visual.sharing_models(wanted, _ReportProgress(report, "looking"))

    # -- the upload --------------------------------------------------------------------------------------------

    def check_length(self, session: Session) -> float:
        """The recording's duration; refuses one that cannot be read or is over the server's limit."""
        if session.input is None:
            raise AutosepError("no recording yet; upload a file or record one first")
        try:
            with open_audio(session.input) as reader:
                duration = reader.duration
        except AutosepError as exc:
            raise AutosepError(plain(self.tell(session, str(exc)))) from None
        limit = self.config.max_duration_s
        if duration > limit:
            raise AutosepError(f"{session.display_name}: {clock(duration)} long; this server accepts recordings up "
                               f"to {clock(limit)}: cut the recording into parts and upload them one by one")
        session.duration_s = duration
        return duration

    def receive(self, session: Session, upload: str | Path, display_name: str | None = None) -> float:
        """A new recording for ``session`` (the old one and its results go): moved in, checked, its duration.
        A file that fails the checks is removed at once."""
        session.adopt(upload, display_name)
        try:
            duration = self.check_length(session)
        except AutosepError:
            session.forget_results()
            raise
        if has_video_stream(session.input):  # the page shows it; the picture is looked at in step 1
            session.video = session.serve(session.input, f"upload-{session.uploads}")
        return duration

    # -- step 1 ------------------------------------------------------------------------------------------------

    def find_sources(self, session: Session, tagger: str | None = None, report: Report = _silent_report,
                     describe: Sequence[str] = ()) -> Found:
        """Tag the session's recording and plan its sources (the command line's ``--dry-run``); for a video,
        with what is on screen, and each of ``describe`` (what the visitor sees) as a source of its own."""
        describe = [text for text in (" ".join(str(d).split()) for d in describe) if text]
        if len(describe) > MAX_SOURCES:  # each is a run of the describe model: a visitor's text must not hold it
            raise AutosepError(f"at most {MAX_SOURCES} descriptions at a time (one a line); there are "
                               f"{len(describe)}")
        duration = self.check_length(session)
        chosen = self.tagger(tagger)
        options = dataclasses.replace(self.config.options, sources=None, dry_run=True, describe=describe or None,
                                      out=session.folder / "plan", overwrite=True)
        settings = options.settings()
        with self._lock:
            pipeline = Pipeline(settings, tagger=chosen, progress=_ReportProgress(report, "tagging"))
            if session.video is not None and settings.visual.active:
                pipeline.visual = self.visual_for(settings, report)
            result = pipeline.process(self._item(session))
        if not result.ok:
            raise AutosepError(plain(self.tell(session, result.message)))
        seen = {entry["source"]: entry for entry in (result.visual or {}).get("sources", [])}
        rows = [SourceRow(label=s.label, prompt=s.prompt, score=s.score, mid=s.mid,
                          segments=[(float(a), float(b)) for a, b in s.segments],
                          active_s=float(sum(b - a for a, b in s.segments)),
                          on_screen=_on_screen(seen.get(s.label))) for s in result.plan]
        session.found = Found(rows, list(result.top_tags), duration,
                              [self.tell(session, w) for w in result.warnings], result.visual)
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
        labels, prompts = check_sources(chosen)
        self.check_length(session)
        values = self._separation_values(settings)
        out = session.folder / "separated"
        options = dataclasses.replace(self.config.options, sources=None, dry_run=False, out=out, overwrite=True,
                                      **{**values, "model": self._choice(self.models, values["model"], "model").spec})
        settings_ = options.settings()  # checked once, before the separator is loaded
        separator = self.separator(str(values["model"]))
        plan = [Source(label=label, prompt=prompt, segments=list(s.segments) or [(0.0, math.inf)], mid=s.mid,
                       score=s.score, origin="given") for label, prompt, s in zip(labels, prompts, chosen)]
        tagger = self.tagger()
        with self._lock:
            pipeline = Pipeline(settings_, tagger=tagger, separator=separator,
                                progress=_ReportProgress(report, "separating"))
            try:
                result = pipeline.process(self._item(session), plan=plan, top_tags=top_tags)
            finally:
                del pipeline
                release_memory()
        if not result.ok:
            raise AutosepError(plain(self.tell(session, result.message)))
        if not result.files:
            raise AutosepError(self.tell(session, "; ".join(result.warnings) or "no stems were written"))
        report(1.0, "drawing spectrograms")
        session.runs += 1
        run = f"run-{session.runs}"
        spectrograms = mel_images(result.files, session.folder / "spectrograms" / run)
        archive = self._archive(session, result)
        session.separated = Separated(
            result.output, {name: session.serve(path, run) for name, path in result.files.items()},
            {name: session.serve(path, f"{run}/mel") for name, path in spectrograms.items()},
            session.serve(archive, run), [self.tell(session, w) for w in result.warnings])
        return session.separated

    def _separation_values(self, settings: Mapping[str, object]) -> dict:
        unknown = set(settings) - set(SEPARATION_SETTINGS)
        if unknown:
            raise AutosepError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = {**self.defaults, **settings}
        if any(values[name] is None for name in ("steps", "guidance", "seed")):
            raise AutosepError("steps, guidance and seed need a value")
        values["steps"], values["seed"] = int(values["steps"]), int(values["seed"])
        values["guidance"] = float(values["guidance"])
        values["model"] = str(values["model"]).strip()
        return values

    def _archive(self, session: Session, result: RecordingResult) -> Path:
        """All stems and the manifest (server paths replaced by names) as one zip beside the results (atomic)."""
        assert result.output is not None
        name = f"{slugify(Path(session.display_name).stem)}_stems.zip"
        target = session.folder / name
        partial = target.with_name(f".{name}.partial")
        data = result.manifest.to_dict() if result.manifest else {}
        if session.found is not None and session.found.visual is not None:
            data.setdefault("visual", session.found.visual)  # step 1 looked at the picture; step 2 used its plan
        public = public_manifest(data, self.private_paths(session))
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member in result.files.values():
                archive.write(member, arcname=f"{result.output.name}/{member.name}")
            archive.writestr(f"{result.output.name}/{MANIFEST_NAME}", json.dumps(public, indent=2) + "\n")
        partial.replace(target)
        return target

    # -- step 3 ------------------------------------------------------------------------------------------------

    def remix(self, session: Session, gains_db: Mapping[str, float]) -> RemixResult:
        """Mix the session's stems with ``gains_db`` (by stem name) into ``<input>_remix.<ext>`` in the session
        (a fresh subfolder per remix, so a page never plays an older one from its cache); for a video upload
        also ``<input>_remix.<its extension>``, the picture copied untouched with the remix as its soundtrack
        (:attr:`Session.remixed_video`)."""
        if session.separated is None:
            raise AutosepError("nothing to remix yet; run step 2 (Separate) first")
        folder = open_result(session.separated.folder)
        ext = next(iter(session.separated.stems.values())).suffix
        session.remix_count += 1
        out = session.folder / "remixes" / str(session.remix_count) / \
            f"{slugify(Path(session.display_name).stem)}_{REMIX}{ext}"
        run = f"remix-{session.remix_count}"
        session.remixed_video = None
        try:
            result = remix(folder, dict(gains_db), out)
        except AutosepError as exc:
            raise AutosepError(self.tell(session, str(exc))) from None
        warnings = list(result.warnings)
        if session.video is not None:
            try:
                video = remux_with_soundtrack(session.input, result.path, out.with_suffix(session.input.suffix))
                session.remixed_video = session.serve(video.path, run)
            except VideoOutError as exc:  # the audio remix stands; the page says why there is no video
                warnings.append(f"no remixed video: {plain(self.tell(session, str(exc)))}")
        return dataclasses.replace(result, path=session.serve(result.path, run), warnings=warnings)

    def _item(self, session: Session) -> InputFile:
        assert session.input is not None
        return InputFile(session.input, session.input.parent, session.display_name)


def _on_screen(entry: Mapping | None) -> str:
    """A source's on-screen mark for the page: its spans as clock times and its best score; '' for none."""
    if entry is None:
        return ""
    spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in entry.get("spans") or [])
    return f"{spans or 'not seen'} ({float(entry.get('max_score', 0.0)):.2f})"


def release_memory() -> None:
    """Hand the memory a finished request freed back to the system (glibc keeps freed heap for reuse otherwise,
    so a server's footprint would only ever grow)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def check_sources(chosen: Sequence[SourceRow]) -> tuple[list[str], list[str]]:
    """The chosen rows' labels and prompts, refused when empty, repeated or named like the residual."""
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
    return labels, prompts


def public_manifest(data: object, private: Mapping[str, str]) -> object:
    """``data`` (a manifest's JSON) with every server path in it replaced by what a visitor may see."""
    if isinstance(data, str):
        return scrub(data, private)
    if isinstance(data, Mapping):
        return {key: public_manifest(value, private) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [public_manifest(value, private) for value in data]
    return data


def clock(seconds: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def mel_images(stems: Mapping[str, Path], folder: Path, width_px: int = 900, height_px: int = 260) -> dict[str, Path]:
    """A mel spectrogram per stem (channel average, 128 bands) as PNGs with time and frequency axes.

    All stems share one dB scale (0 dB = the loudest bin of any of them), so their levels can be compared. The
    stem's name is drawn as written (no mathtext: ``$`` and ``\\`` are characters, not markup).
    """
    import librosa
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
        target = folder / f"{index:02d}.png"
        _draw_mel(db, rate, hop, name, target, (width_px / 100, height_px / 100))
        pictures[name] = target
    return pictures


def _draw_mel(db, rate: int, hop: int, title: str, target: Path, size: tuple[float, float]) -> None:
    import librosa.display
    from matplotlib.figure import Figure  # no pyplot: no global figure list to grow on a server

    figure = Figure(figsize=size, dpi=100)
    axes = figure.subplots()
    image = librosa.display.specshow(db, sr=rate, hop_length=hop, x_axis="s", y_axis="mel", fmax=rate / 2,
                                     ax=axes, cmap="magma", vmin=-90, vmax=0)
    figure.colorbar(image, ax=axes, format="%+.0f dB", pad=0.01)
    axes.set_title(title, fontsize=9, parse_math=False)
    figure.tight_layout()
    figure.savefig(target, format="png")
