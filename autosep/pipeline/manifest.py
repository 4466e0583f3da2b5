"""The per-recording ``manifest.json``, typed: everything needed to know what was done and to reproduce it.

:class:`Manifest` and its records are dataclasses with ``from_dict``/``to_dict`` (the JSON object and back);
every reader (the batch, remix, eval, the web app, the command line) reads their fields, never the JSON.
Rules:

- :meth:`Manifest.read` is the one place a manifest file is parsed. It is written last (:meth:`Manifest.write`,
  atomically), so its presence marks the recording as done and lets an interrupted batch resume.
- Manifests of earlier versions (``manifest_version`` 1 without fingerprint, work, check...) read the same way:
  a field they do not hold takes its default; keys this version does not know are kept (``extra``) and written
  back unchanged.
- A file a manifest names is trusted only by its bare name, inside the manifest's folder (:func:`trusted_file`).
- A stem is found by name in one way (:meth:`Manifest.find_stem`): its source name (the label, or
  ``"residual"``), its file name with or without extension, its prompt (c_rev) or its AudioSet mid, in any case.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PureWindowsPath
from typing import Any

from ..errors import AutosepError
from ..taggers.sources import Source
from .fingerprint import input_fingerprint, same_input
from .naming import RESIDUAL
from .write import choose_subtype, write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class ManifestError(AutosepError):
    """A manifest file exists but cannot be read as one; the message names it and says what to do."""


class UnknownStemError(AutosepError, KeyError):
    """No stem answers to the name asked for; the message lists the valid names. Also a KeyError, as a missing
    key of a mapping is (``result.stems[name]``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def trusted_file(folder: Path, name: object) -> Path | None:
    """The file a manifest names, in ``folder``: only its bare name is trusted (never a path that could lead
    outside the folder, whichever separator it uses); None when it names none."""
    bare = PureWindowsPath(str(name or "")).name  # splits on both "/" and "\"
    return Path(folder) / bare if bare not in ("", ".", "..") else None


def _fields(cls, data: Any) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls`` (a non-object reads as empty)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names} if isinstance(data, dict) else {}


class _Record:
    """A manifest record whose JSON object is its dataclass fields as they are: ``to_dict`` writes them all,
    ``from_dict`` reads those it knows (a record with more to it overrides either)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**_fields(cls, data))


def _objects(items: Any) -> list[dict]:
    """The JSON objects in a list (anything else in it, or a non-list, is skipped)."""
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


@dataclass
class StemReport:
    """One source's stem (an entry of ``sources``): its file, prompts (c_rev, and c_inv per window it ran in)
    and what the writer saw."""

    name: str
    file: str
    mid: str | None = None
    c_rev: str = ""
    c_inv: list[dict] = field(default_factory=list)  # {"window": index, "c_inv": text} per window it ran in
    fp32_retry: bool = False
    peak: float = 0.0
    clipped_samples: int = 0
    silent: bool = False
    check: dict | None = None  # the tagger's verdict on the stem (check.py), when stems were checked
    round: int | None = None  # the separation round the source was added in (check.py, --rounds)

    @property
    def confirmed(self) -> bool | None:
        """The tagger's verdict on the stem; None when stems were not checked."""
        return None if self.check is None else bool(self.check.get("confirmed"))

    def to_dict(self) -> dict[str, Any]:
        entry = {"name": self.name, "file": self.file, "mid": self.mid, "c_rev": self.c_rev, "c_inv": self.c_inv,
                 "windows_active": len(self.c_inv), "fp32_retry": self.fp32_retry, "peak": round(self.peak, 6),
                 "silent": self.silent, "clipped_samples": self.clipped_samples}
        if self.check is not None:
            entry.update(check=self.check, round=self.round)
            if not self.confirmed:
                entry["not_confirmed"] = True
        return entry

    @classmethod
    def from_dict(cls, data: dict) -> "StemReport":
        values = _fields(cls, data)
        values["name"] = str(values.get("name") or "")
        values["file"] = str(values.get("file") or "")
        values["c_rev"] = str(values.get("c_rev") or "")
        values["c_inv"] = _objects(values.get("c_inv"))
        values["check"] = values["check"] if isinstance(values.get("check"), dict) else None
        return cls(**values)


@dataclass
class ResidualReport:
    """The residual stem: what is left of the input once the source stems are taken out."""

    file: str
    peak: float = 0.0
    clipped_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "peak": round(self.peak, 6), "clipped_samples": self.clipped_samples}

    @classmethod
    def from_dict(cls, data: dict) -> "ResidualReport":
        values = _fields(cls, data)
        return cls(**{**values, "file": str(values.get("file") or "")})


@dataclass
class Detection:
    """A planned source as recorded (an entry of ``detections``, and of ``check.discovered``)."""

    label: str
    prompt: str
    mid: str | None = None
    score: float | None = None
    segments: list[list[float]] = field(default_factory=list)
    # Why the planner made it a source (planned sources only): active time, the rule, the classes it holds.
    active_seconds: float | None = None
    why: str = ""
    classes: list[dict] = field(default_factory=list)

    @classmethod
    def from_source(cls, source: Source) -> "Detection":
        detection = cls(label=source.label, prompt=source.prompt, mid=source.mid,
                        score=None if source.score is None else round(float(source.score), 4),
                        segments=source.rounded_segments())
        if source.why:
            detection.active_seconds = round(source.active_seconds, 3)
            detection.why, detection.classes = source.why, source.class_list()
        return detection

    def to_source(self) -> Source:
        """The source it records, to plan with again (``origin`` "manifest")."""
        return Source(label=self.label, prompt=self.prompt, segments=[tuple(seg) for seg in self.segments],
                      mid=self.mid, score=self.score, origin="manifest")

    def to_dict(self) -> dict[str, Any]:
        entry = {"label": self.label, "mid": self.mid, "score": self.score, "prompt": self.prompt,
                 "segments": self.segments}
        if self.why:
            entry.update(active_seconds=self.active_seconds, why=self.why, classes=self.classes)
        return entry

    @classmethod
    def from_dict(cls, data: dict) -> "Detection":
        values = _fields(cls, data)
        label = str(values.get("label") or "")
        return cls(**{**values, "label": label, "prompt": str(values.get("prompt") or label),
                      "segments": [list(s) for s in values.get("segments") or [] if isinstance(s, (list, tuple))],
                      "why": str(values.get("why") or ""), "classes": _objects(values.get("classes"))})


def detection_entry(source: Source) -> dict[str, Any]:
    """``source`` as a ``detections`` entry (the JSON object)."""
    return Detection.from_source(source).to_dict()


@dataclass
class InputRecord(_Record):
    """The input recording as it was read."""

    path: str = ""
    given: str = ""
    duration_s: float | None = None
    frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    subtype: str | None = None
    container: str | None = None
    peak: float | None = None
    non_finite_samples: int = 0
    header_frames: int | None = None  # set when the data stops short of the header
    fingerprint: str | None = None  # fingerprint.input_fingerprint(); None in manifests before it was recorded

    @classmethod
    def from_dict(cls, data: dict) -> "InputRecord":
        values = _fields(cls, data)
        return cls(**{**values, "path": str(values.get("path") or ""), "given": str(values.get("given") or "")})


@dataclass
class TaggerRecord(_Record):
    name: str | None = None
    model_id: str | None = None
    revision: str | None = None  # the hub snapshot it was loaded from (hub_revision)


@dataclass
class SeparatorRecord(_Record):
    model_id: str | None = None
    backbone: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    sampler: str | None = None
    revision: str | None = None


@dataclass
class WindowRecord:
    """One window of the recording and the sources separated in it (none: all residual)."""

    index: int
    start_s: float
    end_s: float
    sources: list[str] = field(default_factory=list)
    silent: bool = False  # digitally silent: the separator did not run

    def to_dict(self) -> dict[str, Any]:
        entry = {"index": self.index, "start_s": self.start_s, "end_s": self.end_s, "sources": self.sources}
        return {**entry, "silent": True} if self.silent else entry

    @classmethod
    def from_dict(cls, data: dict) -> "WindowRecord":
        values = _fields(cls, data)
        return cls(**{"index": 0, "start_s": 0.0, "end_s": 0.0, **values,
                      "sources": [str(s) for s in values.get("sources") or []]})


@dataclass
class CheckRecord:
    """The stems checked by the tagger (check.py): verdicts, sources heard in the residual, stems dropped."""

    rounds: int = 1
    threshold: float | None = None
    confirmed: list[str] = field(default_factory=list)
    not_confirmed: list[str] = field(default_factory=list)
    discovered: list[Detection] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # folded into the residual (drop_unconfirmed)

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "threshold": self.threshold, "confirmed": self.confirmed,
                "not_confirmed": self.not_confirmed, "discovered": [d.to_dict() for d in self.discovered],
                "dropped": self.dropped}

    @classmethod
    def from_dict(cls, data: dict) -> "CheckRecord":
        values = _fields(cls, data)
        return cls(**{**values, "discovered": [Detection.from_dict(d) for d in _objects(values.get("discovered"))]})


@dataclass
class RemixRecord:
    """The remix written beside the stems (``--keep``/``--remove``, ``autosep remix``)."""

    file: str
    gains_db: dict[str, float | None] = field(default_factory=dict)  # None: -inf (muted)
    subtype: str | None = None
    peak: float = 0.0
    clipped_samples: int = 0
    keep: list[str] | None = None  # the stems kept (--keep), or
    remove: list[str] | None = None  # the stems removed (--remove)

    def to_dict(self) -> dict[str, Any]:
        entry = {"file": self.file, "gains_db": self.gains_db, "subtype": self.subtype, "peak": self.peak,
                 "clipped_samples": self.clipped_samples}
        for kind in ("keep", "remove"):
            if getattr(self, kind) is not None:
                entry[kind] = getattr(self, kind)
        return entry

    @classmethod
    def from_dict(cls, data: dict) -> "RemixRecord":
        values = _fields(cls, data)
        return cls(**{**values, "file": str(values.get("file") or ""), "gains_db": _object(values.get("gains_db"))})


@dataclass
class VideoOutRecord(_Record):
    """The video input written back beside the stems with a new soundtrack (``--video-out``)."""

    file: str
    soundtrack: str | None = None  # "remix", or the stem's name
    audio_codec: str | None = None
    video_streams: int = 0
    video_packets: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "VideoOutRecord":
        values = _fields(cls, data)
        return cls(**{**values, "file": str(values.get("file") or "")})


@dataclass
class Flags(_Record):
    """What a reader should know at a glance."""

    no_sources: bool = False
    fp32_retry: list[str] = field(default_factory=list)
    silent_stems: list[str] = field(default_factory=list)
    clipped_output: list[str] = field(default_factory=list)
    non_finite_input: bool = False
    truncated_input: bool = False


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("autosep", "torch", "diffusers", "transformers", "panns-inference", "soundfile", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "autosep":
                from .. import __version__

                versions[name] = __version__
    return versions


def hub_revision(*candidates: object) -> str | None:
    """The Hugging Face snapshot (commit hash) a model was loaded from, if it came from the hub cache."""
    for candidate in candidates:
        match = re.search(r"[\\/]snapshots[\\/]([0-9a-f]{40})", str(candidate or ""))
        if match:
            return match.group(1)
    return None


# What a request's names are called in the one-line message about a manifest done with other settings.
_REQUEST_NAMES = {"sources": "sources", "tagger": "tagger", "tagger_model": "tagger model", "planner": "planner",
                  "model": "model", "inversion": "inversion", "steps": "steps", "guidance": "guidance", "passes": "passes",
                  "inv_prompt": "inv-prompt", "seed": "seed", "render": "render", "window_s": "window",
                  "overlap": "overlap", "margin_s": "margin", "format": "format", "bit_depth": "bit depth"}

# The top-level keys in the order they are written; any other key read is kept in ``Manifest.extra``.
_KEYS = ("manifest_version", "status", "created", "input", "tagger", "separator", "versions", "source_mode",
         "detections", "top_tags", "sources", "residual", "windows", "settings", "work", "timings_s", "processed_by",
         "flags", "warnings", "check", "remix", "video_out", "visual")


@dataclass
class Manifest:
    """The manifest of the recording whose results are in ``folder`` (the folder is not part of the JSON)."""

    folder: Path
    version: int | None = MANIFEST_VERSION  # ``manifest_version``; None: a manifest.json autosep did not write
    status: str = "done"
    created: str = ""
    input: InputRecord = field(default_factory=InputRecord)
    tagger: TaggerRecord | None = None
    separator: SeparatorRecord | None = None
    versions: dict[str, str] = field(default_factory=dict)
    # "tagged" (planned from tags), "given" (-s/--source) or "edited" (a plan passed in, e.g. from autosep web)
    source_mode: str = "tagged"
    detections: list[Detection] = field(default_factory=list)
    top_tags: list[dict] = field(default_factory=list)
    sources: list[StemReport] = field(default_factory=list)
    residual: ResidualReport | None = None
    windows: list[WindowRecord] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # RunSettings.record(): the run as asked and resolved
    work: dict[str, int] = field(default_factory=dict)  # windows, windows that ran the separator, UNet evaluations
    timings_s: dict[str, float] = field(default_factory=dict)
    processed_by: dict | None = None  # engine (local or ray), host; for Ray also the node id and attempt
    flags: Flags = field(default_factory=Flags)
    warnings: list[str] = field(default_factory=list)
    check: CheckRecord | None = None  # the stems checked by the tagger (check.py), when they were
    remix: RemixRecord | None = None
    video_out: VideoOutRecord | None = None
    # a video input's picture (pipeline/visual.py): frames, on-screen scores and spans per source, --describe
    visual: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys of other versions, kept as they were read

    # -- the JSON object and the file ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {"manifest_version": self.version, "status": self.status, "created": self.created,
                "input": self.input.to_dict(),
                "tagger": None if self.tagger is None else self.tagger.to_dict(),
                "separator": None if self.separator is None else self.separator.to_dict(),
                "versions": self.versions, "source_mode": self.source_mode,
                "detections": [d.to_dict() for d in self.detections], "top_tags": self.top_tags,
                "sources": [s.to_dict() for s in self.sources],
                "residual": None if self.residual is None else self.residual.to_dict(),
                "windows": [w.to_dict() for w in self.windows], "settings": self.settings, "work": self.work,
                "timings_s": self.timings_s, "processed_by": self.processed_by, "flags": self.flags.to_dict(),
                "warnings": self.warnings}
        if self.version is None:
            del data["manifest_version"]
        if self.check is not None:
            data["check"] = self.check.to_dict()
        if self.remix is not None:
            data["remix"] = self.remix.to_dict()
        if self.video_out is not None:
            data["video_out"] = self.video_out.to_dict()
        if self.visual is not None:
            data["visual"] = self.visual
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: Path) -> "Manifest":
        """The manifest a JSON object holds (of this version or an earlier one), for the results in ``folder``."""
        def record(kind, key):
            return kind.from_dict(data[key]) if isinstance(data.get(key), dict) else None

        return cls(
            folder=Path(folder), version=data.get("manifest_version"), status=str(data.get("status") or "done"),
            created=str(data.get("created") or ""), input=InputRecord.from_dict(data.get("input")),
            tagger=record(TaggerRecord, "tagger"), separator=record(SeparatorRecord, "separator"),
            versions=_object(data.get("versions")), source_mode=str(data.get("source_mode") or "tagged"),
            detections=[Detection.from_dict(d) for d in _objects(data.get("detections"))],
            top_tags=_objects(data.get("top_tags")),
            sources=[StemReport.from_dict(s) for s in _objects(data.get("sources"))],
            residual=record(ResidualReport, "residual"),
            windows=[WindowRecord.from_dict(w) for w in _objects(data.get("windows"))],
            settings=_object(data.get("settings")), work=_object(data.get("work")),
            timings_s=_object(data.get("timings_s")),
            processed_by=data["processed_by"] if isinstance(data.get("processed_by"), dict) else None,
            flags=Flags.from_dict(data.get("flags")),
            warnings=[str(w) for w in data.get("warnings") or [] if isinstance(w, str)],
            check=record(CheckRecord, "check"), remix=record(RemixRecord, "remix"),
            video_out=record(VideoOutRecord, "video_out"),
            visual=data["visual"] if isinstance(data.get("visual"), dict) else None,
            extra={k: v for k, v in data.items() if k not in _KEYS})

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @classmethod
    def read(cls, folder: Path, *, strict: bool = False) -> "Manifest | None":
        """The manifest in ``folder``: the one place a manifest file is parsed. None when there is none or it is
        unreadable (which marks nothing done); with ``strict`` an unreadable one raises :class:`ManifestError`."""
        path = Path(folder) / MANIFEST_NAME
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if strict:
                raise ManifestError(f"{path}: cannot read the manifest ({exc}); fix or remove it") from None
            return None
        return cls.from_dict(data, folder)

    def write(self) -> None:
        write_json(self.path, self.to_dict())

    # -- what the readers ask -------------------------------------------------------------------------------------

    @property
    def is_autosep(self) -> bool:
        """Whether autosep wrote it (any manifest version)."""
        return self.version is not None

    @property
    def input_path(self) -> Path | None:
        return Path(self.input.path) if self.input.path else None

    def is_for(self, path: Path) -> bool:
        """Whether these are the results of the recording at ``path`` (the same file)."""
        recorded = self.input_path
        try:
            return recorded is not None and recorded.resolve() == Path(path).resolve()
        except OSError:
            return False

    @property
    def files(self) -> dict[str, Path]:
        """Stem files by source name (and ``"residual"``), in manifest order (residual last)."""
        files: dict[str, Path] = {}
        for stem in self.sources:
            path = trusted_file(self.folder, stem.file)
            if path is not None:
                files[stem.name] = path
        residual = trusted_file(self.folder, self.residual.file) if self.residual is not None else None
        if residual is not None:
            files[RESIDUAL] = residual
        return files

    @property
    def remix_file(self) -> Path | None:
        """The remix written beside the stems (``--keep``/``--remove``, ``autosep remix``), if any."""
        return trusted_file(self.folder, self.remix.file) if self.remix is not None else None

    @property
    def video_file(self) -> Path | None:
        """The video written back beside the stems (``--video-out``), if any."""
        return trusted_file(self.folder, self.video_out.file) if self.video_out is not None else None

    @property
    def outputs(self) -> list[Path]:
        """Every file of these results this manifest lists: the stems, the remix and the video, if written."""
        return [path for path in [*self.files.values(), self.remix_file, self.video_file] if path is not None]

    def lists(self, file_name: str) -> bool:
        """Whether ``file_name`` is one of the files (stems, remix, video) this manifest lists."""
        return file_name in {path.name for path in self.outputs}

    def find_stem(self, name: str) -> str:
        """The source name (a key of :attr:`files`) of the stem ``name`` names: its source name (label, or
        ``"residual"``), its file name with or without extension, its prompt (c_rev) or its AudioSet mid, in
        any case; earlier kinds of name win (a label may equal another stem's file name). Raises
        :class:`UnknownStemError` listing the valid names."""
        by_name = {stem.name: stem for stem in self.sources}
        ranked = []  # per stem, its names by kind: source name, file name, prompt, mid
        for key, path in self.files.items():
            stem = by_name.get(key)
            ranked.append((key, ([key], [path.stem, path.name], [stem and stem.c_rev], [stem and stem.mid])))
        wanted = str(name).strip().casefold()
        for kind in range(4):
            for key, names in ranked:
                if any(alias and alias.casefold() == wanted for alias in names[kind]):
                    return key
        raise UnknownStemError(f"{self.folder}: no stem named {name!r}; valid names: {self.describe_stems()}")

    def describe_stems(self) -> str:
        """The stems' names, each with its file name when that is another name (``Bark (dog_barking.wav), Dog``)."""
        parts = [key if path.stem.casefold() == key.casefold() else f"{key} ({path.name})"
                 for key, path in self.files.items()]
        return ", ".join(parts) or "(none: no stems were written)"

    @property
    def plan(self) -> list[Source]:
        """The sources the recording was separated into, restored from the detections."""
        return [detection.to_source() for detection in self.detections if detection.label]

    @property
    def sample_rate(self) -> int | None:
        """The stems' sample rate: the separator's in generative mode, the input's otherwise."""
        if self.settings.get("render") == "generative":
            return self.separator.sample_rate if self.separator is not None else None
        return self.input.sample_rate

    def differences(self, request: dict[str, Any], path: Path) -> list[str]:
        """What about this recording's results differs from ``request`` (``RunSettings.request()``) and the input
        file at ``path`` now; empty when they are the results this run asks for. Values a manifest of an earlier
        version does not record are taken as they were then (the defaults), so it is still recognised."""
        recorded = dict(self.settings)
        if "sources" not in recorded:  # manifest_version 1 before the request was recorded
            given = self.source_mode == "given"
            recorded["sources"] = [d.prompt for d in self.detections] if given else None
        recorded.setdefault("window_given", self.settings.get("window_s"))
        differs = []
        if self.input.fingerprint is not None and not same_input(self.input.fingerprint, path):
            differs.append("input")
        for key, wanted in request.items():
            if key == "window_s":
                if wanted is not None and wanted != recorded.get("window_s") or \
                        wanted is None and recorded.get("window_given") not in (None, recorded.get("window_s")):
                    differs.append(key)
            elif key == "bit_depth":
                subtype = recorded.get("subtype")
                expected = choose_subtype(request["format"], wanted, self.input.subtype)
                if subtype is not None and subtype != expected:
                    differs.append(key)
            elif key == "planner":
                had = recorded.get("planner") or {}
                if wanted is not None and any(_jsonable(wanted[k]) != had[k] for k in wanted if k in had):
                    differs.append(key)
            elif key in recorded and _jsonable(wanted) != recorded[key]:
                differs.append(key)
        return [_REQUEST_NAMES.get(key, key) for key in differs]

    # -- a finished recording's manifest ------------------------------------------------------------------------

    @classmethod
    def build(cls, folder: Path, *, recording, input_given: str, non_finite: int, peak: float, tagger, separator,
              plan: list[Source], source_mode: str, settings: dict, work: dict, stems: list[StemReport],
              residual: ResidualReport | None, windows: list[dict], timings: dict, warnings: list[str],
              top_tags: list[dict], check: dict | None = None, processed_by: dict | None = None,
              fingerprint: str | None = None) -> "Manifest":
        """The manifest of a finished recording (not yet written); ``fingerprint`` is the input's, when it was
        taken while the recording was read (else it is taken here)."""
        clipped = [s.file for s in [*stems, *([residual] if residual else [])] if s.clipped_samples]
        return cls(
            folder=Path(folder), version=MANIFEST_VERSION, status="done",
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            input=InputRecord(
                path=str(Path(recording.path).resolve()), given=input_given, duration_s=round(recording.duration, 6),
                frames=recording.frames, sample_rate=recording.sample_rate, channels=recording.channels,
                subtype=recording.subtype, container=recording.container, peak=round(float(peak), 6),
                non_finite_samples=non_finite, header_frames=recording.header_frames,
                fingerprint=fingerprint or input_fingerprint(recording.path)),
            tagger=None if tagger is None else _tagger_record(tagger),
            separator=None if separator is None else _separator_record(separator, settings),
            versions=package_versions(), source_mode=source_mode,
            detections=[Detection.from_source(s) for s in plan], top_tags=top_tags, sources=list(stems),
            residual=residual, windows=[WindowRecord.from_dict(w) for w in windows], settings=settings, work=work,
            timings_s={k: round(v, 3) for k, v in timings.items()}, processed_by=processed_by,
            flags=Flags(no_sources=not plan, fp32_retry=[s.name for s in stems if s.fp32_retry],
                        silent_stems=[s.name for s in stems if s.silent], clipped_output=clipped,
                        non_finite_input=non_finite > 0, truncated_input=recording.truncated),
            warnings=warnings, check=None if check is None else CheckRecord.from_dict(check))


def _tagger_record(tagger) -> TaggerRecord:
    model_id = getattr(tagger, "model_id", None)
    return TaggerRecord(name=getattr(tagger, "name", None), model_id=model_id, revision=hub_revision(model_id))


def _separator_record(separator, settings: dict) -> SeparatorRecord:
    model_id = getattr(separator, "model_id", None)
    return SeparatorRecord(
        model_id=model_id, backbone=getattr(getattr(separator, "backbone", None), "name", None),
        sample_rate=getattr(separator, "sample_rate", None), channels=getattr(separator, "channels", None),
        sampler=separator.sampler(settings.get("inversion", "ddpm")) if hasattr(separator, "sampler") else None,
        revision=hub_revision(model_id, getattr(getattr(separator, "pipe", None), "name_or_path", None)))


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing with a manifest."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
