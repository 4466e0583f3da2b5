"""The parts interruption safety rests on (issue 24): the recording folder's lock (one writer, who holds it,
stale locks taken over), the whole-file fingerprint, and stopping at checkpoints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autosep.pipeline.fingerprint import input_fingerprint, legacy_fingerprint, same_input
from autosep.pipeline.folder_lock import LOCK_NAME, FolderBusy, FolderLock, clear_stale_lock

REPO = Path(__file__).resolve().parents[2]

_HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from autosep.pipeline.folder_lock import FolderLock
    lock = FolderLock(Path(sys.argv[1]))
    assert lock.acquire() is None
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def hold_lock(folder: Path, seconds: float = 60) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (until killed)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_held_by_another_process_names_it_and_is_free_once_it_dies(tmp_path):
    holder = hold_lock(tmp_path / "rec")
    try:
        busy = FolderLock(tmp_path / "rec").acquire()
        assert busy is not None and busy.pid == holder.pid and busy.host == socket.gethostname()
        assert f"process {holder.pid} on {socket.gethostname()} since " in busy.describe()
        with pytest.raises(FolderBusy, match=f"is being written by process {holder.pid}"):
            with FolderLock(tmp_path / "rec"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the file stays, the lock does not
        holder.wait()
    assert (tmp_path / "rec" / LOCK_NAME).exists()
    lock = FolderLock(tmp_path / "rec")
    assert lock.acquire() is None  # the stale lock is taken over
    assert json.loads((tmp_path / "rec" / LOCK_NAME).read_text())["pid"] == os.getpid()
    clear_stale_lock(tmp_path / "rec")  # held (by this process now): left alone
    assert (tmp_path / "rec" / LOCK_NAME).exists()
    lock.release()
    assert not (tmp_path / "rec" / LOCK_NAME).exists()
    (tmp_path / "rec" / LOCK_NAME).write_text('{"pid": 1, "host": "gone"}')  # a killed writer's file
    clear_stale_lock(tmp_path / "rec")  # what a Ray driver does for the folders of workers it stopped
    assert not (tmp_path / "rec" / LOCK_NAME).exists()


def test_two_locks_in_one_process_exclude_each_other_too(tmp_path):
    first, second = FolderLock(tmp_path), FolderLock(tmp_path)
    assert first.acquire() is None
    assert second.acquire().pid == os.getpid()
    first.release()
    assert second.acquire() is None
    second.release()


def test_the_fingerprint_covers_the_whole_file(tmp_path):
    path = tmp_path / "take.wav"
    data = bytearray(os.urandom(3 << 20))  # 3 MiB: the middle MiB is outside the old first/last MiB hash
    path.write_bytes(bytes(data))
    before, legacy = input_fingerprint(path), legacy_fingerprint(path)
    assert before.startswith("sha256:") and same_input(before, path) and same_input(legacy, path)
    data[len(data) // 2] ^= 0xFF  # an edit in the middle, same size
    path.write_bytes(bytes(data))
    assert not same_input(before, path)
    assert same_input(legacy, path)  # what the old fingerprint could not see


_STOPPING = textwrap.dedent("""
    import os, signal, sys, time
    from autosep import stopping
    with stopping.handling_signals():
        try:
            with stopping.deferred():
                os.kill(os.getpid(), signal.SIGTERM)  # lands here, but only marks the run as stopping
                print("still running", flush=True)
                stopping.checkpoint()
                print("not reached", flush=True)
        except stopping.Stopped:
            print("stopped at the checkpoint", "terminated" if stopping.terminated() else "interrupted", flush=True)
        try:
            with stopping.deferred():
                pass
        except stopping.Stopped:
            print("a stopped run stays stopped", flush=True)
""")


def test_a_signal_inside_a_deferred_section_stops_at_the_next_checkpoint():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _STOPPING], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.splitlines() == ["still running", "stopped at the checkpoint terminated",
                                        "a stopped run stays stopped"], proc.stderr


def test_a_stop_does_not_outlive_the_run_that_was_asked_to_stop():
    """A later run in the same process (the Python API after a command, the next test) starts afresh."""
    from autosep import stopping

    with stopping.handling_signals():
        with pytest.raises(stopping.Stopped):
            with stopping.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                stopping.checkpoint()
        assert stopping.terminated()
    stopping.checkpoint()  # no longer stopping
    assert not stopping.terminated()
