"""The Ray engine's parts that need no running cluster: pool sizing node by node, the visibility check, the
bounded connect, the Ray client refusal and the stale state of killed runs (fast; a stand-in for ``ray``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("ray", reason="the Ray engine's tests need the ray extra: pip install 'autosep[ray]'")

from autosep.errors import SettingsError  # noqa: E402
from autosep.pipeline.ray_connect import RayConnectError, RayUsageError, connect, is_loopback  # noqa: E402
from autosep.pipeline.ray_placement import Node, SharedStorageError, check_visible, pool_size  # noqa: E402
from autosep.pipeline.ray_state import STATE_FOLDER, RunState  # noqa: E402
from autosep.pipeline.settings import RaySettings  # noqa: E402


def nodes(*sizes: tuple[float, float]) -> list[Node]:
    return [Node(f"{i:02d}" * 28, f"10.0.0.{i}", cpus, gpus) for i, (cpus, gpus) in enumerate(sizes, 1)]


def test_pool_size_counts_what_each_node_holds():
    assert pool_size(nodes((32, 4), (32, 4)), RaySettings(), 100)[:2] == (8, 8)
    assert pool_size(nodes((64, 8)), RaySettings(), 3)[:2] == (3, 3)  # never more than recordings
    assert pool_size(nodes((16, 0)), RaySettings(cpus_per_worker=4), 100) == (4, 4, 4.0, 0.0)
    # Two 3-CPU nodes hold one 2-CPU worker each, though the cluster totals 6 CPUs.
    assert pool_size(nodes((3, 0), (3, 0)), RaySettings(cpus_per_worker=2), 100)[:2] == (2, 2)
    # More workers asked than fit now: start with what fits, grow if nodes join.
    assert pool_size(nodes((2, 0)), RaySettings(workers=4), 100) == (4, 2, 1.0, 0.0)
    pool = pool_size(nodes((2, 0)), RaySettings(workers=4), 100)
    assert (pool.workers, pool.ready, pool.cpus, pool.gpus) == (4, 2, 1.0, 0.0)  # by name, as ray_stream reads it
    assert pool_size(nodes((16, 2)), RaySettings(workers=1, gpus_per_worker=0.5), 10) == (1, 1, 1.0, 0.5)


def test_a_pool_no_node_can_hold_names_the_largest_node():
    with pytest.raises(RayUsageError, match=r"one worker of 2 CPUs and 0 GPUs \(the largest node, 10\.0\.0\.2 "
                                            r"\(node 02020202\), has 1 CPUs and 0 GPUs\)"):
        pool_size(nodes((0.5, 0), (1, 0)), RaySettings(cpus_per_worker=2), 10)
    with pytest.raises(RayUsageError, match=r"0.5 GPUs .*10\.0\.0\.1 .* has 8 CPUs and 0 GPUs"):
        pool_size(nodes((8, 0)), RaySettings(gpus_per_worker=0.5), 10)


class FakeRay:
    """Tasks run here at once; the node that is ``blind`` cannot see ``hidden`` paths."""

    def __init__(self, blind: str | None = None, hidden: tuple[str, ...] = ()):
        self.blind, self.hidden = blind, hidden

    def remote(self, num_cpus):
        fake = self

        class Task:
            def __init__(self, fn, node=None):
                self.fn, self.node = fn, node

            def options(self, scheduling_strategy):
                return Task(self.fn, scheduling_strategy.node_id)

            def remote(self, paths):
                if self.node == fake.blind:
                    return [p for p in paths if any(p.startswith(h) for h in fake.hidden)]
                return self.fn(paths)

        return lambda fn: Task(fn)

    def get(self, answers):
        return answers


def test_visibility_check_names_the_node_and_what_it_lacks(tmp_path):
    state = tmp_path / "out" / STATE_FOLDER / "run"
    state.mkdir(parents=True)
    (tmp_path / "in").mkdir()
    inputs = [tmp_path / "in" / f"take{i}.wav" for i in range(5)]
    for path in inputs:
        path.write_bytes(b"")
    two = nodes((4, 0), (4, 0))
    with pytest.raises(SharedStorageError, match=r"Ray node 10\.0\.0\.2 \(node 02020202\) cannot see 5 input\(s\): "
                                                 r".*take0\.wav, .*take2\.wav and 2 more"):
        check_visible(FakeRay(two[1].node_id, (str(tmp_path / "in"),)), two, state, inputs)
    with pytest.raises(SharedStorageError, match=r"cannot see the output folder .*out nor 5 input"):
        check_visible(FakeRay(two[0].node_id, (str(tmp_path),)), two, state, inputs)
    assert not list(state.iterdir())  # the marker is removed either way
    check_visible(FakeRay(), two, state, inputs)  # nodes that see everything pass


class NoClusterRay:
    """``ray`` in a fresh process; ``init`` hangs as Ray does on a port that is not a Ray head."""

    class _private:
        class ray_constants:
            ENABLE_RAY_CLUSTER = True

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.loopback_kept = not self._private.ray_constants.ENABLE_RAY_CLUSTER
        time.sleep(30)

    def shutdown(self):
        pass


def test_connect_gives_up_after_the_timeout_naming_the_address():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RayConnectError, match=rf"127\.0\.0\.1:{port}: nothing answered .*ray status"):
        connect(NoClusterRay(), RaySettings(address=f"127.0.0.1:{port}", timeout_s=0.5))
    assert time.monotonic() - started < 2
    with socket.socket() as listening:  # something answers at the port, but it is not Ray: ray.init would hang
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        fake, started = NoClusterRay(), time.monotonic()
        with pytest.raises(RayConnectError, match=rf"localhost:{port} accepts connections but Ray did not"):
            connect(fake, RaySettings(address=f"localhost:{port}", timeout_s=1))
        assert time.monotonic() - started < 3
    assert fake.loopback_kept  # a loopback address reaches Ray as loopback, not the external address
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("10.0.0.1")


def test_a_refusal_without_a_message_still_names_the_address():
    """ray.init may raise an error with an empty message: the report names the address and the error's type."""
    class RefusingRay(NoClusterRay):
        def init(self, **kwargs):
            raise ConnectionError()

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with pytest.raises(RayConnectError, match=rf"127\.0\.0\.1:{port}: ConnectionError; check"):
            connect(RefusingRay(), RaySettings(address=f"127.0.0.1:{port}", timeout_s=5))


def test_ray_client_address_without_the_client_is_refused_up_front(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    refused = r'ray://head:10001 goes through the Ray client.*pip install "autosep\[ray\]"'
    with pytest.raises(SettingsError, match=refused):
        RaySettings(address="ray://head:10001")
    RaySettings(address="head:6379")  # a GCS address needs no client


def test_a_rerun_removes_the_state_of_a_killed_run_only(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("killed", dead.pid), ("running", os.getpid())):
        folder = out / STATE_FOLDER / name
        folder.mkdir(parents=True)
        (folder / "attempts-0").write_text("1")
        (folder / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    elsewhere = out / STATE_FOLDER / "other-host"
    elsewhere.mkdir()
    (elsewhere / "owner.json").write_text(json.dumps({"host": "another-machine", "pid": dead.pid}))
    state = RunState.create(out)
    assert sorted(p.name for p in (out / STATE_FOLDER).iterdir()) == sorted(["running", "other-host",
                                                                             state.folder.name])
    assert state.count_attempt(3) == 1 and state.count_attempt(3) == 2 and state.attempts() == {3: 2}
    state.remove()
    assert not state.folder.exists()


def test_connect_keeps_autosep_signal_handlers():
    """``ray.init`` installs its own SIGTERM handler (exit 15); the one in place before is put back."""
    import signal

    class HandlerStealingRay(NoClusterRay):
        def init(self, **kwargs):
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))

    def ours(signum, frame):
        raise KeyboardInterrupt

    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            assert connect(HandlerStealingRay(), RaySettings(address=f"127.0.0.1:{listening.getsockname()[1]}"))
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


class NoPipeline:
    processed_by: dict = {}

    def process(self, item, folder, previous):
        raise AssertionError("a recording past its retries must not be processed again")


def bare_worker(tmp_path, retries: int = 2):
    """A RecordingWorker as Ray builds it, without the models (its bookkeeping only)."""
    from autosep.pipeline.ray_engine import RecordingWorker

    worker = object.__new__(RecordingWorker)
    worker.pipeline, worker.state, worker.retries = NoPipeline(), RunState(tmp_path / "state"), retries
    worker.where, worker.busy = {"engine": "ray", "host": "h", "pid": 7, "node_ip": "10.0.0.9"}, False
    worker.state.folder.mkdir()
    return worker


def test_a_recording_past_its_retries_fails_alone_and_loses_its_temporaries(tmp_path):
    import pickle

    from autosep.pipeline.inputs import InputFile

    worker = bare_worker(tmp_path)
    folder = tmp_path / "out" / "take"
    folder.mkdir(parents=True)
    (folder / ".vocals.wav.partial-999999-abcd").write_bytes(b"half")  # the dead worker's, on another node
    (worker.state.folder / "attempts-0").write_text("3")  # it died during attempts 1, 2 and 3
    item = InputFile(tmp_path / "take.wav", tmp_path, "take.wav")
    result = worker._guarded(0, pickle.dumps((item, folder, None)))
    assert result.status == "failed" and "died 3 times" in result.message and "--ray-retries" in result.message
    assert result.processed_by["attempt"] == 4 and result.processed_by["node_ip"] == "10.0.0.9"
    assert not list(folder.iterdir())


def test_anything_a_worker_raises_is_that_recordings_failure(tmp_path):
    import pickle

    from autosep.pipeline.inputs import InputFile

    worker = bare_worker(tmp_path)
    worker.state.folder.rmdir()  # as on a node where the state folder cannot be reached
    item = InputFile(tmp_path / "take.wav", tmp_path, "take.wav")
    result = worker._guarded(0, pickle.dumps((item, tmp_path / "out", None)))
    assert result.status == "failed" and str(item.path) in result.message
    assert "the Ray worker on 10.0.0.9 failed handling it: FileNotFoundError" in result.message
    assert result.processed_by["pid"] == 7
    result = worker._guarded(1, b"not a pickle")
    assert result.status == "failed" and result.message.startswith("recording 1: the Ray worker on 10.0.0.9")
