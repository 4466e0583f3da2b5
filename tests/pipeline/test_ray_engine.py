"""``autosep INPUT... --ray``: the same batch on a local Ray instance (2 CPU workers), on the real tiny models.

One Ray instance serves the whole module (it is reused by the engine, not restarted per run). Its workers inherit
this process's environment (offline hub, sandboxed caches, AudioSet folder) and import autosep from this checkout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the ray extra: pip install 'autosep[ray]'")

REPO = Path(__file__).resolve().parents[2]
# The local reference run matches the 1-CPU workers; every test here shares one slow-to-start Ray instance.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """The private instance ``--ray`` starts (``ray_connect.start_private_instance``), shared by the module."""
    from autosep.pipeline.ray_connect import start_private_instance

    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Logical CPUs: two 1-CPU workers plus room for Ray Data's own tasks on a 2-core machine.
    start_private_instance(ray, num_cpus=4)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_args(tiny_audioldm2_dir, tiny_cnn14_checkpoint) -> list[str]:
    return ["--model", str(tiny_audioldm2_dir), "--tagger-model", str(tiny_cnn14_checkpoint), "--steps", "1",
            "--window", "2.56", "--device", "cpu", "--threshold", "0", "--max-sources", "2"]


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def write_recordings(folder: Path, count: int = 3) -> None:
    rng = np.random.default_rng(7)
    for i in range(count):
        rate = 16000 if i % 2 else 22050
        t = np.arange(int(2.0 * rate)) / rate
        mono = 0.3 * np.sin(2 * np.pi * (220 * (i + 1)) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"take{i}.wav", np.stack([mono, 0.8 * mono], axis=1).astype(np.float32), rate,
                 subtype="PCM_16")


def outputs(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): sf.read(p, dtype="float32")[0] for p in sorted(out.rglob("*.wav"))}


def comparable(manifest: dict) -> dict:
    """A manifest without what legitimately differs between engines: timings and where it ran."""
    manifest = json.loads(json.dumps(manifest))
    for key in ("created", "timings_s", "processed_by"):
        manifest.pop(key, None)
    return manifest


def manifests(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("manifest.json"))}


def leftovers(out: Path) -> list[str]:
    return [str(p) for p in out.rglob("*") if p.name.startswith(".")]


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, model_args):
    """The batch run without --ray, to compare against (one torch thread, like a 1-CPU Ray worker)."""
    import torch

    root = tmp_path_factory.mktemp("ray-reference")
    (root / "in").mkdir()
    write_recordings(root / "in")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main([str(root / "in"), "-o", str(root / "out"), "-q", *model_args])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return root


def test_ray_batch_survives_a_killed_worker_and_equals_the_local_run(tmp_path, capsys, caplog, model_args,
                                                                     local_reference, monkeypatch):
    import cloudpickle

    from autosep.pipeline import ray_engine

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    take1 = tmp_path / "out" / "take1"

    class DiesOnceMidRecording(ray_engine.RecordingWorker):
        """Exits its process in the middle of take1's separation, once: after its stems' temporaries exist."""

        marker = str(tmp_path / "died-once")

        def process(self, item, folder, previous):
            separator = self.pipeline.separator
            real = separator.separate_detailed

            def dying(*args, **kwargs):
                if any(p.name.startswith(".") for p in take1.iterdir()):  # half-written stems are there
                    Path(self.marker).touch()
                    os._exit(1)
                return real(*args, **kwargs)

            if item.path.name == "take1.wav" and not os.path.exists(self.marker):
                separator.separate_detailed = dying
            try:
                return super().process(item, folder, previous)
            finally:
                separator.separate_detailed = real

    monkeypatch.setattr(ray_engine, "RecordingWorker", DiesOnceMidRecording)
    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in")
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray", "--ray-workers", "2")
    assert code == 0, output
    assert Path(DiesOnceMidRecording.marker).exists()  # it did die, mid-recording
    assert "ray: 2 worker(s)" in output and "[3/3]" in output and "1 live node(s)" in output
    # The re-run said so, once, at error level (so -q shows it too).
    (retry,) = [r for r in caplog.records if "running it again" in r.getMessage()]
    assert retry.levelname == "ERROR" and "take1.wav" in retry.getMessage() and "attempt 2 of 3" in retry.getMessage()

    ours, theirs = outputs(tmp_path / "out"), outputs(local_reference / "out")
    assert sorted(ours) == sorted(theirs) and len(ours) >= 6
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    ray_manifests, local_manifests = manifests(tmp_path / "out"), manifests(local_reference / "out")
    assert sorted(ray_manifests) == ["take0", "take1", "take2"]
    for name, manifest in ray_manifests.items():
        where = manifest["processed_by"]
        assert where["engine"] == "ray" and where["host"] and where["node_id"]
        assert where["attempt"] == (2 if name == "take1" else 1)
        ours_comparable, reference = comparable(manifest), comparable(local_manifests[name])
        for entry in (reference, ours_comparable):  # the input path differs by folder only
            entry["input"].pop("path", None)
            entry["input"].pop("given", None)
        assert ours_comparable == reference, name
    assert local_manifests["take0"]["processed_by"]["engine"] == "local"
    assert not leftovers(tmp_path / "out")  # no temporaries of the dead worker, no engine state


def test_rerun_skips_finished_recordings_and_overwrite_redoes_them(tmp_path, capsys, model_args,
                                                                  tiny_audioldm2_dir, tiny_cnn14_checkpoint):
    import autosep

    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=1)
    # First through the Python API's engine="ray", then the command line resumes it.
    api = autosep.AutoSep(engine="ray", model=str(tiny_audioldm2_dir), tagger_model=str(tiny_cnn14_checkpoint),
                          steps=1, window=2.56, device="cpu", planner={"threshold": 0, "max_sources": 2},
                          out=str(tmp_path / "out"))
    (result,) = api.run(tmp_path / "in")
    assert result.status == "done" and result.manifest.processed_by["engine"] == "ray", result.message
    assert result.stems and all(stem.shape[1] == 2 for stem in result.stems.values())
    args = [tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray"]
    first = {name: m["created"] + str(m["timings_s"]) for name, m in manifests(tmp_path / "out").items()}
    code, output = run(capsys, *args)
    assert code == 0 and "already done" in output, output
    assert "ray:" not in output  # nothing left to do: no workers started
    assert {name: m["created"] + str(m["timings_s"]) for name, m in manifests(tmp_path / "out").items()} == first
    code, output = run(capsys, *args, "--overwrite")
    assert code == 0 and "already done" not in output and "ray: 1 worker(s)" in output, output
    assert {name: m["created"] + str(m["timings_s"]) for name, m in manifests(tmp_path / "out").items()} != first


def test_faults_stay_with_their_recording_and_warnings_reach_the_driver(tmp_path, capsys, model_args, monkeypatch):
    """A corrupt file, an exception in the workers' own bookkeeping (not in the pipeline), and a truncated file
    whose warning is raised on the worker: each is its recording's business, the batch goes on (exit 3)."""
    import cloudpickle

    from autosep.pipeline import ray_engine

    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    class BrokenBookkeeping(ray_engine.RecordingWorker):
        def count_attempt(self, index, item):
            if item.path.name == "take1.wav":  # as a worker whose counter path does not exist on its node
                raise FileNotFoundError(2, "No such file or directory", f"attempts-{index}")
            return super().count_attempt(index, item)

    monkeypatch.setattr(ray_engine, "RecordingWorker", BrokenBookkeeping)
    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=2)
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    cut = tmp_path / "in" / "take0.wav"
    cut.write_bytes(cut.read_bytes()[: int(cut.stat().st_size * 0.7)])  # the header promises more than is there
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray", "--ray-workers", "2")
    assert code == 3, output
    assert "broken.wav" in output
    assert "take1.wav: the Ray worker on" in output and "FileNotFoundError" in output
    assert "take0.wav: the file is shorter than its header says" in output  # forwarded from the worker
    assert "(worker ?:?)" not in output and "node 127.0.0.1" in output
    assert sorted(manifests(tmp_path / "out")) == ["take0"]
    assert not leftovers(tmp_path / "out")


def test_private_instance_listens_on_loopback_only():
    """Every process of the instance ``--ray`` starts (GCS, raylet, workers, agents, this driver) listens on
    127.0.0.1 only, though Ray rewrites 127.0.0.1 to the external address unless told otherwise."""
    import psutil

    ray.get(ray.remote(num_cpus=0)(lambda: os.getpid()).remote())  # a worker process is up and listening too
    ours = {p.pid: p.name() for p in psutil.Process().children(recursive=True)} | {os.getpid(): "driver"}
    listening = [(ours[c.pid], c.laddr.ip) for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in ours]
    assert {"gcs_server", "raylet"} <= {name for name, _ in listening}, listening
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for _, ip in listening), listening
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}


def test_unreachable_address_exits_1_within_the_timeout(tmp_path, capsys, model_args, monkeypatch):
    import socket
    import time

    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=1)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process: connect to the address
    started = time.monotonic()
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, f"--ray=127.0.0.1:{port}",
                       "--ray-timeout", "1.5")
    assert code == 1, output
    assert time.monotonic() - started < 6, output  # the timeout, not Ray's retries for ever
    assert f"could not reach the Ray cluster at 127.0.0.1:{port}" in output and "ray status" in output
    assert "--ray-timeout" in output and not manifests(tmp_path / "out")


def test_a_pool_no_node_can_hold_is_refused_before_any_worker_starts(tmp_path, capsys, model_args):
    import time

    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=1)
    started = time.monotonic()
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray",
                       "--ray-cpus-per-worker", "8")
    assert code == 2, output
    assert "no Ray node can hold one worker of 8 CPUs" in output and "has 4 CPUs and 0 GPUs" in output, output
    assert time.monotonic() - started < 10  # refused, not waiting for a node that never comes
    assert not (tmp_path / "out" / ".autosep-ray").exists()


def test_live_progress_and_sigterm_on_a_loopback_cluster_address(tmp_path, model_args):
    """``autosep --ray 127.0.0.1:PORT`` joins this module's loopback-only cluster with no Ray environment
    variable; each recording is reported within a second of its manifest; SIGTERM in the middle of the last one
    exits 143 with the summary, and leaves no temporary file nor engine state."""
    import signal
    import subprocess
    import threading
    import time

    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=2)
    rate = 16000
    t = np.arange(int(30 * rate)) / rate  # long enough to be stopped while its stems are being written
    sf.write(tmp_path / "in" / "take2.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    driver = subprocess.Popen([sys.executable, "-m", "autosep", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                               *model_args, "--ray", address, "--ray-workers", "1"],
                              env=env, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.time(), line) for line in driver.stderr))
    reader.start()
    take2, deadline = tmp_path / "out" / "take2", time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        if take2.is_dir() and any(".partial-" in p.name for p in take2.iterdir()):
            break
        time.sleep(0.02)
    driver.send_signal(signal.SIGTERM)
    code = driver.wait(timeout=60)
    reader.join(timeout=10)
    output = "".join(line for _, line in lines)
    assert code == 143, output
    assert "terminated (SIGTERM)" in output and "take0.wav: done" in output, output
    for name in ("take0", "take1"):
        manifest_time = (tmp_path / "out" / name / "manifest.json").stat().st_mtime
        reported = [when for when, line in lines if line.startswith("autosep: [") and f"{name}.wav" in line]
        assert len(reported) == 1, f"{name} was not reported while the next recording ran:\n{output}"
        assert 0 <= reported[0] - manifest_time < 1.0, (name, reported[0] - manifest_time)
    assert not (take2 / "manifest.json").exists()
    assert not leftovers(tmp_path / "out"), leftovers(tmp_path / "out")


def test_ray_missing_is_a_usage_error_with_the_install_hint(tmp_path, capsys, model_args, monkeypatch):
    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=1)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray")
    assert code == 2, output
    assert 'pip install "autosep[ray]"' in output
    assert not (tmp_path / "out").exists() or not manifests(tmp_path / "out")


def test_a_ray_client_address_runs_the_batch(tmp_path, model_args):
    """``--ray ray://HOST:PORT`` through a Ray client server (the one ``ray start --head`` runs on port 10001)
    in front of this module's cluster."""
    import socket
    import subprocess
    import time

    from autosep.pipeline.ray_connect import wait_for_port

    pytest.importorskip("grpc", reason="the Ray client needs grpcio: pip install 'autosep[ray]'")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The server joins this loopback-only cluster as a Ray driver: it needs Ray's switch (autosep does not).
    server_env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    server = subprocess.Popen([sys.executable, "-m", "ray.util.client.server", "--mode", "legacy", "--host",
                               "127.0.0.1", "--port", str(port), "--address", ray.get_runtime_context().gcs_address],
                              env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("client server", "127.0.0.1", port, time.monotonic() + 60)
        (tmp_path / "in").mkdir()
        write_recordings(tmp_path / "in", count=1)
        done = subprocess.run([sys.executable, "-m", "autosep", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                               *model_args, "--ray", f"ray://127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=300)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    (manifest,) = manifests(tmp_path / "out").values()
    assert manifest["processed_by"]["engine"] == "ray" and manifest["processed_by"]["node_ip"] == "127.0.0.1"
    assert not leftovers(tmp_path / "out")
