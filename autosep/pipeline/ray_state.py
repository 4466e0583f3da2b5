"""A ``--ray`` run's own files, in ``<out>/.autosep-ray/<run id>/`` on the shared storage: who owns the run, how
many times each recording was started (bounding the re-runs after a worker died), and the driver's request that
the workers stop. Removed when the batch ends, whatever its outcome; a run that could not remove it (its driver
was killed) has it removed by the next run on the same output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from .write import process_alive

STATE_FOLDER = ".autosep-ray"
OWNER_FILE = "owner.json"
STALE_UNOWNED_S = 3600.0  # a state folder without a readable owner (being created, or from an old version)


class RunState:
    """One run's state folder (``folder``), seen the same from the driver and every worker."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @classmethod
    def create(cls, out_root: Path) -> "RunState":
        """A new state folder for this driver, after removing those of earlier runs whose driver is gone."""
        remove_stale(out_root)
        state = cls(out_root / STATE_FOLDER / uuid.uuid4().hex[:12])
        state.folder.mkdir(parents=True, exist_ok=True)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        (state.folder / OWNER_FILE).write_text(json.dumps(owner))
        return state

    @property
    def stop_requested(self) -> bool:
        return (self.folder / "stop").exists()

    def request_stop(self) -> None:
        """Ask every worker to drop its recording (removing its temporaries) and take no new one."""
        try:
            (self.folder / "stop").write_text("stop\n")
        except OSError:  # the folder is gone: nothing is running for it any more
            pass

    def count_attempt(self, index: int) -> int:
        """This run's attempts at recording ``index``, this one included (called by the worker starting it)."""
        counter = self.folder / f"attempts-{index}"
        try:
            attempt = int(counter.read_text() or 0) + 1
        except (FileNotFoundError, ValueError):
            attempt = 1
        partial = counter.with_name(f".{counter.name}.{os.getpid()}")
        partial.write_text(str(attempt))
        os.replace(partial, counter)
        return attempt

    def attempts(self) -> dict[int, int]:
        """Attempts so far by recording index (read by the driver while the batch runs)."""
        found: dict[int, int] = {}
        for counter in self.folder.glob("attempts-*"):
            try:
                found[int(counter.name.split("-", 1)[1])] = int(counter.read_text() or 0)
            except (OSError, ValueError):  # being replaced right now: read on the next look
                continue
        return found

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()  # only if no other run is using it
        except OSError:
            pass


def remove_stale(out_root: Path) -> None:
    """Remove the state folders of runs whose driver is no longer running (killed, the machine restarted): the
    owner's process is gone on this host, or the folder has no owner and is over an hour old. A run owned by
    another host is left alone (it cannot be told from here whether it is still going)."""
    parent = out_root / STATE_FOLDER
    if not parent.is_dir():
        return
    host = socket.gethostname()
    for folder in parent.iterdir():
        if folder.is_dir() and _is_stale(folder, host):
            shutil.rmtree(folder, ignore_errors=True)


def _is_stale(folder: Path, host: str) -> bool:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        try:
            return time.time() - folder.stat().st_mtime > STALE_UNOWNED_S
        except OSError:
            return False
    return owner.get("host") == host and not process_alive(int(owner.get("pid", 0)))
