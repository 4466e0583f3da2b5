"""Taking a recording's output folder before writing into it: one writer at a time, nothing left of a dead one.

:func:`claim_folder` locks the folder (:mod:`.folder_lock`), removes every temporary file in it (holding the lock
proves their writers are gone, even where a killed writer's pid now belongs to another process) and reads its
manifest again: another process may have finished the recording between this run's decision and its turn.
"""

from __future__ import annotations

from pathlib import Path

from .folder_lock import FolderBusy, FolderLock
from .manifest import Manifest
from .write import remove_partials


def claim_folder(input_path: Path, folder: Path, previous: Manifest | None) -> tuple[FolderLock, Manifest | None, bool]:
    """The held lock of ``folder``, the manifest in it now, and whether that manifest is new since ``previous``
    (the one this run decided on). Raises :class:`FolderBusy` when another process holds the folder."""
    lock = FolderLock(folder)
    holder = lock.acquire()
    if holder is not None:
        raise FolderBusy(folder, holder, f"{input_path}: skipped, its output folder {folder} is being written by "
                                         f"{holder.describe()}; rerun the same command once that run is done")
    try:
        remove_partials(folder, any_process=True)  # the lock is held: no writer is left
        current = Manifest.read(folder)
    except BaseException:
        lock.release()
        raise
    newer = current is not None and (previous is None or current.created != previous.created
                                     or current.input.fingerprint != previous.input.fingerprint)
    return lock, current, newer
