"""The browser sessions of a running ``autosep web``: each one's folder (:class:`Session`), the sessions by
Gradio's session id (:class:`SessionStore`), and when their files go.

A session's folder is removed when its tab closes (:meth:`SessionStore.close`, from Gradio's ``unload`` event),
when it has had no request for ``keep_s`` seconds (a sweeper thread), and, with every other, when the server
stops (:meth:`SessionStore.close_all`). No Gradio in here.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AutosepError
from ..pipeline.naming import slugify


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
    on_screen: str = ""  # a video's on-screen mark: spans and best score ("" for none)


@dataclass
class Found:
    """Step 1's result."""

    sources: list[SourceRow]
    top_tags: list[dict]
    duration_s: float
    warnings: list[str]
    visual: dict | None = None  # a video's picture: the manifest's ``visual`` record


@dataclass
class Separated:
    """Step 2's result: stem files by name (residual last), their spectrograms, the zip of stems + manifest."""

    folder: Path
    stems: dict[str, Path]
    spectrograms: dict[str, Path]
    archive: Path
    warnings: list[str]


class Session:
    """One browser session: a temporary folder holding its upload and results, removed by :meth:`cleanup`."""

    def __init__(self, root: Path, served_root: Path | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        # The copies the page links to (stems, pictures, zip, remixes) live apart from the upload and the
        # manifests, in the folder the web server serves from (``served_root``); removed with the session.
        self.served = (Path(served_root) if served_root else self.folder.parent / "served") / self.folder.name
        self.input: Path | None = None
        self.adopted: set[str] = set()  # uploads as the page sent them (moved here: never taken twice)
        self.display_name = ""
        self.duration_s = 0.0
        self.video: Path | None = None  # the page's copy of a video upload (None: no picture)
        self.remixed_video: Path | None = None  # the page's copy of the last remix's video
        self.found: Found | None = None
        self.separated: Separated | None = None
        self.remix_count = 0
        self.uploads = 0
        self.runs = 0
        self.last_used = time.monotonic()

    def cleanup(self) -> None:
        self.input = self.found = self.separated = None
        shutil.rmtree(self.served, ignore_errors=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def serve(self, path: Path, run: str) -> Path:
        """The copy of ``path`` the page links to (a hard link where the file system allows), under ``run``."""
        target = self.served / run / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            target.hardlink_to(path)
        except OSError:
            shutil.copyfile(path, target)
        return target

    def private_paths(self) -> dict[str, str]:
        """Server paths of this session -> what a visitor may see instead."""
        paths: dict[str, str] = {}
        if self.input is not None:
            paths.update({str(self.input.resolve()): self.display_name, str(self.input): self.display_name})
        for folder in (self.served.resolve(), self.served, self.folder.resolve(), self.folder):
            paths.update({f"{folder}/": "", str(folder): ""})
        return paths

    def adopt(self, upload: str | Path, display_name: str | None = None) -> Path:
        """Move the uploaded file into this session (a fresh subfolder, so earlier results never mix in); the
        results of the previous recording are dropped."""
        upload = Path(upload)
        # An API caller may name any file in Gradio's folder: never one the page serves (another session's
        # stems, which would be moved away from it).
        if not upload.is_file() or upload.resolve().is_relative_to(self.served.parent.resolve()):
            raise AutosepError("no file received; upload a recording or record one first")
        name = display_name or upload.name
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        self.forget_results()
        self.uploads += 1
        target_dir = self.folder / f"upload-{self.uploads}"
        target_dir.mkdir(parents=True)
        target = target_dir / f"{slugify(stem)}{suffix if suffix.isascii() and len(suffix) <= 6 else ''}"
        shutil.move(str(upload), target)  # Gradio's copy goes: nothing of the upload stays outside the session
        self.input, self.display_name = target, name
        self.adopted.add(str(upload))
        return target

    def forget_results(self) -> None:
        """Drop every result of the current recording (its files too)."""
        self.found = self.separated = self.video = self.remixed_video = None
        for name in ("plan", "separated", "spectrograms", "remixes"):
            shutil.rmtree(self.folder / name, ignore_errors=True)
        for old in self.folder.glob("*_stems.zip"):
            old.unlink(missing_ok=True)
        shutil.rmtree(self.served, ignore_errors=True)
        if self.input is not None:
            shutil.rmtree(self.input.parent, ignore_errors=True)
            self.input = None
            self.display_name, self.duration_s = "", 0.0


def scrub(text: str, private: Mapping[str, str]) -> str:
    """``text`` with each private string replaced (longest first, so a folder never leaves half a path)."""
    for secret in sorted(private, key=len, reverse=True):
        if secret:
            text = text.replace(secret, private[secret])
    return text



class SessionStore:
    """Sessions by id, created on first use under ``root``, the files their pages link to under ``served_root``."""

    def __init__(self, root: Path, keep_s: float, served_root: Path | None = None):
        self.root, self.keep_s = Path(root), float(keep_s)
        self.served_root = Path(served_root) if served_root else self.root / "served"
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._sweeper: threading.Thread | None = None

    def get(self, session_id: str) -> Session:
        """The session ``session_id`` (a new one on its first request), marked as used now."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = self._sessions[session_id] = Session(self.root, self.served_root)
            session.last_used = time.monotonic()
            return session

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self, session_id: str) -> None:
        """Remove the session and its files (its tab was closed)."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            session.cleanup()

    def sweep(self, now: float | None = None) -> int:
        """Remove the sessions idle for longer than ``keep_s``; how many went."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [sid for sid, s in self._sessions.items() if now - s.last_used > self.keep_s]
            gone = [self._sessions.pop(sid) for sid in idle]
        for session in gone:
            session.cleanup()
        return len(gone)

    def start_sweeping(self, every_s: float | None = None) -> None:
        """Sweep in a background thread, every ``every_s`` (default: a tenth of ``keep_s``, 1 s to 5 min)."""
        every = every_s or min(300.0, max(1.0, self.keep_s / 10))

        def loop() -> None:
            while not self._stopped.wait(every):
                self.sweep()

        self._sweeper = threading.Thread(target=loop, name="autosep-web-sweeper", daemon=True)
        self._sweeper.start()

    def close_all(self) -> None:
        """Stop sweeping and remove every session's files (the server stops)."""
        self._stopped.set()
        with self._lock:
            gone = list(self._sessions.values())
            self._sessions.clear()
        for session in gone:
            session.cleanup()
