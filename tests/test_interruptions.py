"""Interrupted and concurrent runs (issue 24): Ctrl-C and SIGTERM mid-separation stop within 2 s leaving no hidden
file; a rerun after SIGKILL removes the temporaries it left; a second process skips a recording folder another is
writing, with a message, and two runs with different prompts leave one complete, consistent result; an input
edited in place (same size) is separated again.

The command runs in a child process (signals, two processes) with a separator test double whose diffusion steps
take 20 ms each, so the separation is long enough to be caught in the middle and no model loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main
from autosep.pipeline.folder_lock import LOCK_NAME
from autosep.pipeline.write import PARTIAL_MARK

REPO = Path(__file__).resolve().parents[1]

_SLOW_RUN = textwrap.dedent("""
    import os, sys, time
    from types import SimpleNamespace
    import numpy as np
    from autosep.pipeline import pipeline as pipeline_module

    STEPS = int(os.environ["TEST_STEPS"])

    class SlowSeparatorDouble:
        '''Each source's stem is an equal share of the window; each of its diffusion steps takes 20 ms.'''
        sample_rate, model_id = 16000, "slow-separator-test-double"

        def separate_detailed(self, wave, sources, progress=None, **kwargs):
            for step in range(STEPS):
                time.sleep(0.02)
                if progress:
                    progress(step + 1, STEPS)
            stems = np.repeat(np.asarray(wave, np.float32)[None] / len(sources), len(sources), axis=0)
            return SimpleNamespace(stems=stems, inversion_prompts=[""] * len(sources),
                                   fp32_retry=[False] * len(sources), unet_evaluations=0)

    pipeline_module.Pipeline.load = classmethod(lambda cls, settings, progress=None: cls(
        settings, None, SlowSeparatorDouble(), progress))
    from autosep.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def write_wave(path: Path, seconds: float = 6.0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32),
             16000, subtype="PCM_16")


def start(tmp_path: Path, prompt: str, steps: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), TEST_STEPS=str(steps))
    args = [str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"), "-s", prompt, "--window", "2"]
    return subprocess.Popen([sys.executable, "-c", _SLOW_RUN, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended early ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.02)


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".*{PARTIAL_MARK}*")) if folder.is_dir() else []


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_separation_stops_within_2_s_and_leaves_no_hidden_file(tmp_path, signum, code):
    write_wave(tmp_path / "mix.wav")
    proc = start(tmp_path, "dog barking", steps=1000)  # 20 s a window: caught in the middle
    folder = tmp_path / "out" / "mix"
    wait_for(lambda: temporaries(folder), proc)
    sent = time.monotonic()
    proc.send_signal(signum)
    proc.wait(timeout=30)
    elapsed = time.monotonic() - sent
    err = proc.stderr.read()
    assert proc.returncode == code, err
    assert elapsed < 2.0, elapsed
    assert "finished recordings are kept" in err
    assert [p.name for p in folder.iterdir()] == []  # no stem, no temporary, no lock, no manifest


def test_a_rerun_after_sigkill_removes_every_temporary_it_left(tmp_path, capsys, monkeypatch):
    write_wave(tmp_path / "mix.wav")
    proc = start(tmp_path, "dog barking", steps=1000)
    folder = tmp_path / "out" / "mix"
    wait_for(lambda: temporaries(folder), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = temporaries(folder)
    assert left and (folder / LOCK_NAME).exists()  # what a killed run leaves behind
    # A temporary whose pid is alive again (reused by an unrelated process: here, this one) is stale too.
    (folder / f".old.wav{PARTIAL_MARK}{os.getppid()}-abcd1234").write_bytes(b"")
    _use_band_double(monkeypatch)
    code = main([str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"), "-s", "dog barking", "--window", "2"])
    assert code == 0, capsys.readouterr().err
    assert temporaries(folder) == [] and not (folder / LOCK_NAME).exists()
    assert (folder / "manifest.json").exists()


def _use_band_double(monkeypatch) -> None:
    """Load the exact separator double of tests/pipeline instead of a model, in this process."""
    monkeypatch.syspath_prepend(str(REPO / "tests" / "pipeline"))
    from test_pipeline_flow import BandSeparatorDouble

    from autosep.pipeline.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "load", classmethod(lambda cls, settings, progress=None: cls(
        settings, None, BandSeparatorDouble(), progress)))


def test_two_runs_with_different_prompts_leave_one_consistent_result_and_a_message(tmp_path, capsys, monkeypatch):
    write_wave(tmp_path / "mix.wav")
    first = start(tmp_path, "low hum", steps=40)  # about 1 s a window, 3 windows
    folder = tmp_path / "out" / "mix"
    wait_for(lambda: (folder / LOCK_NAME).exists(), first)
    _use_band_double(monkeypatch)
    args = [str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"), "-s", "high hiss", "--window", "2"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1  # nothing of this run was done
    assert f"is being written by process {first.pid}" in err and "mix.wav" in err
    first.wait(timeout=60)
    assert first.returncode == 0, first.stderr.read()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [s["name"] for s in manifest["sources"]] == ["low hum"]
    listed = {s["file"] for s in manifest["sources"]} | {manifest["residual"]["file"], "manifest.json"}
    assert {p.name for p in folder.iterdir()} == listed  # the first run's files, only and all of them
    # Once the first run is done, the second says what is there instead of mixing its stems in.
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "done with other settings (sources)" in err
    assert {p.name for p in folder.iterdir()} == listed


def test_an_input_edited_in_place_is_separated_again(tmp_path, capsys, monkeypatch):
    _use_band_double(monkeypatch)
    write_wave(tmp_path / "mix.wav", seconds=3.0)
    args = [str(tmp_path / "mix.wav"), "-o", str(tmp_path / "out"), "-s", "low hum", "--window", "2", "-q"]
    assert main(args) == 0
    manifest = tmp_path / "out" / "mix" / "manifest.json"
    first, written = json.loads(manifest.read_text()), manifest.stat().st_mtime_ns
    size = (tmp_path / "mix.wav").stat().st_size
    data, rate = sf.read(tmp_path / "mix.wav", dtype="float32")
    data[len(data) // 2: len(data) // 2 + 800] *= -1  # an edit in the middle: same size, same header
    sf.write(tmp_path / "mix.wav", data, rate, subtype="PCM_16")
    assert (tmp_path / "mix.wav").stat().st_size == size
    assert main(args) == 0
    assert manifest.stat().st_mtime_ns > written  # separated again, not "already done"
    second = json.loads(manifest.read_text())
    assert second["input"]["fingerprint"] != first["input"]["fingerprint"]
    stems = sum(sf.read(tmp_path / "out" / "mix" / name, dtype="float32")[0] for name in ("low_hum.wav", "residual.wav"))
    assert np.abs(stems - sf.read(tmp_path / "mix.wav", dtype="float32")[0]).max() < 1e-3  # they add up to the edit
