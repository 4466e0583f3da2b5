"""The browser sessions of a running ``autosep web``, by Gradio's session id, and when their files go.

A session's folder is removed when its tab closes (:meth:`SessionStore.close`, from Gradio's ``unload`` event),
when it has had no request for ``keep_s`` seconds (a sweeper thread), and, with every other, when the server
stops (:meth:`SessionStore.close_all`). No Gradio in here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .engine import Session


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
