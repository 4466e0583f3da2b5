"""One writer per recording folder: a lock file that says who is writing it.

Two ``autosep`` processes on one output folder must not both write a recording: with different prompts the folder
would end with one run's manifest and the other's stems. The writer holds ``.autosep.lock`` in the recording's
folder, with its pid, host and start time inside for the message another process gives. The lock is an
operating-system lock on that file (``flock``; ``msvcrt.locking`` on Windows), so a writer that dies, even by
SIGKILL, holds nothing: the file it leaves is stale by definition and the next writer takes it over. Holding the
lock also proves every temporary file in the folder belongs to a writer that is gone, so they can all be removed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import AutosepError

LOCK_NAME = ".autosep.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a recording folder's lock, as its lock file says."""

    pid: int | None
    host: str | None
    since: str | None

    def describe(self) -> str:
        who = f"process {self.pid}" if self.pid is not None else "another process"
        where = f" on {self.host}" if self.host else ""
        when = f" since {self.since}" if self.since else ""
        return f"{who}{where}{when}"


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _read_holder(path: Path) -> LockHolder:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    pid = data.get("pid")
    return LockHolder(pid if isinstance(pid, int) else None, data.get("host"), data.get("since"))


class FolderLock:
    """The lock of one recording folder. ``acquire()`` returns None when this process now holds it, else who
    does; ``release()`` removes the lock file. Also a context manager that raises :class:`FolderBusy`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self.created_folder = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> LockHolder | None:
        self.created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the file may be removed by its holder between our open and our lock: open again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                return _read_holder(self.path)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # we locked a file its holder had already removed
                os.close(fd)
                continue
            record = {"pid": os.getpid(), "host": socket.gethostname(),
                      "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(record).encode())
            self._fd = fd
            return None
        return _read_holder(self.path)

    def release(self, remove_empty_folder: bool = False) -> None:
        """Unlock and remove the lock file; with ``remove_empty_folder`` also the folder, when ``acquire`` created
        it and nothing was written there (a recording that failed before any output)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # removed while still held: no one can lock the old file after us
        finally:
            os.close(self._fd)
            self._fd = None
        if remove_empty_folder and self.created_folder:
            try:
                self.folder.rmdir()  # only if empty
            except OSError:
                pass

    def __enter__(self) -> "FolderLock":
        holder = self.acquire()
        if holder is not None:
            raise FolderBusy(self.folder, holder)
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class FolderBusy(AutosepError):
    """Another live process holds the recording folder's lock."""

    def __init__(self, folder: Path, holder: LockHolder, message: str | None = None):
        super().__init__(message or f"{folder} is being written by {holder.describe()}")
        self.folder, self.holder = folder, holder


def clear_stale_lock(folder: Path) -> None:
    """Remove ``folder``'s lock file when no live process holds it (its writer was killed); a held one stays."""
    if (Path(folder) / LOCK_NAME).exists():
        lock = FolderLock(folder)
        if lock.acquire() is None:
            lock.release()
