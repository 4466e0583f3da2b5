"""The per-recording ``manifest.json``: everything needed to know what was done and to reproduce it.

:class:`Manifest` both writes and reads it. It is written last, so its presence marks the recording as done (and
lets an interrupted batch resume); :meth:`Manifest.read` is the one place a manifest is read back, and the
batch reads it once per input. Manifests written by earlier versions (``manifest_version`` 1) are read the same
way. The per-stem facts travel as :class:`StemReport` / :class:`ResidualReport` until they are written.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..taggers.sources import Source
from .naming import RESIDUAL
from .write import choose_subtype, read_json, write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class StemReport:
    """One source's stem: its file, prompts (c_rev, and c_inv per window it ran in) and what the writer saw."""

    name: str
    file: str
    mid: str | None
    c_rev: str
    c_inv: list[dict]  # {"window": index, "c_inv": text} for every window the source was separated in
    fp32_retry: bool
    peak: float
    clipped_samples: int
    silent: bool
    check: dict | None = None  # the tagger's verdict on the stem (check.py), when stems were checked
    round: int | None = None  # the separation round the source was added in (check.py, --rounds)

    def to_json(self) -> dict[str, Any]:
        entry = {"name": self.name, "file": self.file, "mid": self.mid, "c_rev": self.c_rev, "c_inv": self.c_inv,
                 "windows_active": len(self.c_inv), "fp32_retry": self.fp32_retry, "peak": round(self.peak, 6),
                 "silent": self.silent, "clipped_samples": self.clipped_samples}
        if self.check is not None:
            entry.update(check=self.check, round=self.round)
            if not self.check["confirmed"]:
                entry["not_confirmed"] = True
        return entry


@dataclass
class ResidualReport:
    file: str
    peak: float
    clipped_samples: int

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "peak": round(self.peak, 6), "clipped_samples": self.clipped_samples}


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


def input_fingerprint(path: Path, block: int = 1 << 20) -> str:
    """The size and the first and last MiB of a file, hashed: changes whenever the recording does (a copy
    with a new modification time does not count as a change)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        digest.update(str(size).encode())
        handle.seek(0)
        digest.update(handle.read(block))
        handle.seek(max(0, size - block))
        digest.update(handle.read(block))
    return digest.hexdigest()


# What a request's names are called in the one-line message about a manifest done with other settings.
_REQUEST_NAMES = {"sources": "sources", "tagger": "tagger", "tagger_model": "tagger model", "planner": "planner",
                  "model": "model", "inversion": "inversion", "steps": "steps", "guidance": "guidance", "passes": "passes",
                  "inv_prompt": "inv-prompt", "seed": "seed", "render": "render", "window_s": "window",
                  "overlap": "overlap", "margin_s": "margin", "format": "format", "bit_depth": "bit depth"}


def detection_entry(source: Source) -> dict[str, Any]:
    entry = {"label": source.label, "mid": source.mid,
             "score": None if source.score is None else round(float(source.score), 4), "prompt": source.prompt,
             "segments": source.rounded_segments()}
    if source.why:  # a planned source also says why it is there (the rule, the classes it holds and their scores)
        entry.update(active_seconds=round(source.active_seconds, 3), why=source.why, classes=source.class_list())
    return entry


class Manifest:
    """The manifest of the recording whose results are in ``folder``; ``data`` is the JSON object."""

    def __init__(self, folder: Path, data: dict[str, Any]):
        self.folder = Path(folder)
        self.data = data

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @classmethod
    def read(cls, folder: Path) -> "Manifest | None":
        """The manifest in ``folder``, or None when there is none or it is unreadable (which marks nothing done)."""
        data = read_json(Path(folder) / MANIFEST_NAME)
        return None if data is None else cls(folder, data)

    def write(self) -> None:
        write_json(self.path, self.data)

    @property
    def is_autosep(self) -> bool:
        """Whether autosep wrote it (any manifest version)."""
        return "manifest_version" in self.data

    @property
    def input_path(self) -> Path | None:
        given = str((self.data.get("input") or {}).get("path") or "")
        return Path(given) if given else None

    def is_for(self, path: Path) -> bool:
        """Whether these are the results of the recording at ``path`` (the same file)."""
        recorded = self.input_path
        try:
            return recorded is not None and recorded.resolve() == Path(path).resolve()
        except OSError:
            return False

    def differences(self, request: dict[str, Any], path: Path) -> list[str]:
        """What about this recording's results differs from ``request`` (``RunSettings.request()``) and the input
        file at ``path`` now; empty when they are the results this run asks for. Values a manifest of an earlier
        version does not record are taken as they were then (the defaults), so it is still recognised."""
        settings = self.data.get("settings") or {}
        recorded = dict(settings)
        if "sources" not in recorded:  # manifest_version 1 before the request was recorded
            given = self.data.get("source_mode") == "given"
            recorded["sources"] = [d.get("prompt") for d in self.data.get("detections") or []] if given else None
        recorded.setdefault("window_given", settings.get("window_s"))
        differs = []
        fingerprint = (self.data.get("input") or {}).get("fingerprint")
        if fingerprint is not None and fingerprint != input_fingerprint(path):
            differs.append("input")
        for key, wanted in request.items():
            if key == "window_s":
                if wanted is not None and wanted != recorded.get("window_s") or \
                        wanted is None and recorded.get("window_given") not in (None, recorded.get("window_s")):
                    differs.append(key)
            elif key == "bit_depth":
                subtype = recorded.get("subtype")
                expected = choose_subtype(request["format"], wanted, (self.data.get("input") or {}).get("subtype"))
                if subtype is not None and subtype != expected:
                    differs.append(key)
            elif key == "planner":
                had = recorded.get("planner") or {}
                if wanted is not None and any(_jsonable(wanted[k]) != had[k] for k in wanted if k in had):
                    differs.append(key)
            elif key in recorded and _jsonable(wanted) != recorded[key]:
                differs.append(key)
        return [_REQUEST_NAMES.get(key, key) for key in differs]

    @property
    def files(self) -> dict[str, Path]:
        """Stem files by source name (and ``"residual"``). Only bare file names in the folder are trusted."""
        files: dict[str, Path] = {}
        for entry in self.data.get("sources") or []:
            if isinstance(entry, dict) and entry.get("file"):
                files[str(entry.get("name"))] = self.folder / Path(str(entry["file"])).name
        residual = self.data.get("residual")
        if isinstance(residual, dict) and residual.get("file"):
            files[RESIDUAL] = self.folder / Path(str(residual["file"])).name
        return files

    @property
    def remix_file(self) -> Path | None:
        """The remix written beside the stems (``--keep``/``--remove``, ``autosep remix``), if any."""
        entry = self.data.get("remix")
        return self.folder / Path(str(entry["file"])).name if isinstance(entry, dict) and entry.get("file") else None

    def lists(self, file_name: str) -> bool:
        """Whether ``file_name`` is one of the files (stems, remix) this manifest lists."""
        return file_name in {path.name for path in [*self.files.values(), self.remix_file] if path is not None}

    @property
    def plan(self) -> list[Source]:
        """The sources the recording was separated into, restored from the detections."""
        plan = []
        for entry in self.data.get("detections") or []:
            if isinstance(entry, dict) and entry.get("label"):
                plan.append(Source(label=str(entry["label"]), prompt=str(entry.get("prompt") or entry["label"]),
                                   segments=[tuple(seg) for seg in entry.get("segments") or []],
                                   mid=entry.get("mid"), score=entry.get("score"), origin="manifest"))
        return plan

    @property
    def sample_rate(self) -> int | None:
        """The stems' sample rate: the separator's in generative mode, the input's otherwise."""
        settings = self.data.get("settings") or {}
        if settings.get("render") == "generative":
            return (self.data.get("separator") or {}).get("sample_rate")
        return (self.data.get("input") or {}).get("sample_rate")

    @classmethod
    def build(cls, folder: Path, *, recording, input_given: str, non_finite: int, peak: float, tagger, separator,
              plan: list[Source], source_mode: str, settings: dict, work: dict, stems: list[StemReport],
              residual: ResidualReport | None, windows: list[dict], timings: dict, warnings: list[str],
              top_tags: list[dict], check: dict | None = None, processed_by: dict | None = None) -> "Manifest":
        """The manifest of a finished recording (not yet written)."""
        clipped = [s.file for s in [*stems, *([residual] if residual else [])] if s.clipped_samples]
        data = {
            "manifest_version": MANIFEST_VERSION,
            "status": "done",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "input": {
                "path": str(Path(recording.path).resolve()),
                "given": input_given,
                "duration_s": round(recording.duration, 6),
                "frames": recording.frames,
                "sample_rate": recording.sample_rate,
                "channels": recording.channels,
                "subtype": recording.subtype,
                "container": recording.container,
                "peak": round(float(peak), 6),
                "non_finite_samples": non_finite,
                "header_frames": recording.header_frames,  # set when the data stops short of the header
                "fingerprint": input_fingerprint(recording.path),
            },
            "tagger": None if tagger is None else {
                "name": getattr(tagger, "name", None),
                "model_id": getattr(tagger, "model_id", None),
                "revision": hub_revision(getattr(tagger, "model_id", None)),
            },
            "separator": None if separator is None else {
                "model_id": getattr(separator, "model_id", None),
                "backbone": getattr(getattr(separator, "backbone", None), "name", None),
                "sample_rate": getattr(separator, "sample_rate", None),
                "channels": getattr(separator, "channels", None),
                "sampler": (separator.sampler(settings.get("inversion", "ddpm")) if hasattr(separator, "sampler")
                            else None),
                "revision": hub_revision(getattr(separator, "model_id", None),
                                         getattr(getattr(separator, "pipe", None), "name_or_path", None)),
            },
            "versions": package_versions(),
            # "tagged" (planned from tags), "given" (-s/--source) or "edited" (a plan passed in, e.g. from autosep web)
            "source_mode": source_mode,
            "detections": [detection_entry(s) for s in plan],
            "top_tags": top_tags,
            "sources": [s.to_json() for s in stems],
            "residual": None if residual is None else residual.to_json(),
            "windows": windows,
            "settings": settings,
            "work": work,  # windows, windows that ran the separator, samples through the UNet
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "processed_by": processed_by,  # engine (local or ray), host; for Ray also the node id and attempt
            "flags": {
                "no_sources": not plan,
                "fp32_retry": [s.name for s in stems if s.fp32_retry],
                "silent_stems": [s.name for s in stems if s.silent],
                "clipped_output": clipped,
                "non_finite_input": non_finite > 0,
                "truncated_input": recording.truncated,
            },
            "warnings": warnings,
        }
        if check is not None:
            data["check"] = check  # the stems checked by the tagger (check.py)
        return cls(folder, data)


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing with a manifest."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
