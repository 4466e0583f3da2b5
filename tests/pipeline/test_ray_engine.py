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
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the local reference run matches the 1-CPU workers


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Logical CPUs: two 1-CPU workers plus room for Ray Data's own tasks on a 2-core machine.
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
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


@pytest.mark.slow  # starts a local Ray instance and its workers: about a minute
def test_ray_batch_survives_a_killed_worker_and_equals_the_local_run(tmp_path, capsys, model_args, local_reference,
                                                                     monkeypatch):
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
    assert "ray: 2 worker(s)" in output and "[3/3]" in output

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


@pytest.mark.slow  # starts a local Ray instance and its workers: about a minute
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


@pytest.mark.slow  # starts a local Ray instance and its workers: about a minute
def test_a_corrupt_recording_fails_alone(tmp_path, capsys, model_args):
    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=1)
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray", "--ray-workers", "2")
    assert code == 3, output
    assert "broken.wav" in output
    assert sorted(manifests(tmp_path / "out")) == ["take0"]
    assert not leftovers(tmp_path / "out")


def test_ray_missing_is_a_usage_error_with_the_install_hint(tmp_path, capsys, model_args, monkeypatch):
    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=1)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray")
    assert code == 2, output
    assert 'pip install "autosep[ray]"' in output
    assert not (tmp_path / "out").exists() or not manifests(tmp_path / "out")


def test_a_bad_address_is_a_usage_error(tmp_path, capsys, model_args):
    (tmp_path / "in").mkdir()
    write_recordings(tmp_path / "in", count=1)
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", *model_args, "--ray=not an address")
    assert code == 2 and "not a Ray address" in output, output


def test_pool_size_follows_gpus_then_cpus():
    from autosep.pipeline.ray_engine import RayUsageError, pool_size
    from autosep.pipeline.settings import RaySettings

    assert pool_size({"CPU": 64, "GPU": 8}, RaySettings(), 100) == (8, 1.0, 1.0)
    assert pool_size({"CPU": 64, "GPU": 8}, RaySettings(), 3) == (3, 1.0, 1.0)  # never more than recordings
    assert pool_size({"CPU": 16}, RaySettings(cpus_per_worker=4), 100) == (4, 4.0, 0.0)
    assert pool_size({"CPU": 16, "GPU": 2}, RaySettings(workers=1, gpus_per_worker=0.5), 10) == (1, 1.0, 0.5)
    with pytest.raises(RayUsageError, match="cannot hold one worker"):
        pool_size({"CPU": 2}, RaySettings(cpus_per_worker=4), 10)


def test_shared_storage_check_names_the_nodes_that_cannot_see_the_output(tmp_path):
    """One node of two (a stand-in for a second machine) does not see the driver's marker file."""
    from autosep.pipeline.ray_engine import SharedStorageError, check_shared_storage

    class Task:
        def __init__(self, fn, node=None):
            self.fn, self.node = fn, node

        def options(self, scheduling_strategy):
            return Task(self.fn, scheduling_strategy.node_id)

        def remote(self, path):
            host, seen = self.fn(path)
            return ("far-node", False) if self.node == "bb" * 28 else (host, seen)

    class TwoNodeRay:
        def remote(self, num_cpus):
            return lambda fn: Task(fn)

        def nodes(self):
            return [{"NodeID": "aa" * 28, "Alive": True}, {"NodeID": "bb" * 28, "Alive": True},
                    {"NodeID": "cc" * 28, "Alive": False}]

        def get(self, answers):
            return answers

    with pytest.raises(SharedStorageError, match="not visible on Ray node.s. far-node"):
        check_shared_storage(TwoNodeRay(), tmp_path)
    assert not list(tmp_path.iterdir())  # the marker is removed either way

    class OneNodeRay(TwoNodeRay):
        def nodes(self):
            return [{"NodeID": "aa" * 28, "Alive": True}]

    check_shared_storage(OneNodeRay(), tmp_path)  # the node that sees the folder passes
    assert not list(tmp_path.iterdir())
