"""Long recordings go through the windowed, streaming path: peak memory must not grow with the file's length.

One child process loads the tiny AudioLDM2 once (Python API, one step, 2.56 s windows), separates a 2-minute
recording, notes its peak RSS, then a 20-minute one, and reports the new peak: holding the long input or its
stems whole would raise it by 75 MiB or more per copy. To keep this fast on a 2-core CI machine the recordings
are digital silence except for half-second bursts (one in the short file, two in the long one);
the separator skips silent windows, whose stems are silence by definition, but every window is still read,
cross-faded, rendered and written. Measured here: about 25-40 s on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import autosep

REPO = Path(__file__).resolve().parents[2]
RATE = 16000

CHILD = textwrap.dedent("""
    import resource, sys
    import torch
    import autosep
    torch.set_num_threads(1)  # tiny model on shared CI cores: one thread is much faster
    model, short, long, out = sys.argv[1:]
    separator = autosep.AutoSep(sources=["dog barking"], model=model, steps=1, window=2.56, device="cpu", out=out)
    for path in (short, long):
        (result,) = separator.run(path)
        assert result.status == "done", result.message
        print("PEAK_RSS_KB", path, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
""")


def _write_long(path: Path, minutes: int, burst_every: int) -> int:
    """Silence with a 0.5 s tone+noise burst at 1 min, then every ``burst_every`` minutes; written in blocks."""
    rng = np.random.default_rng(minutes)
    frames = minutes * 60 * RATE
    with sf.SoundFile(path, "w", RATE, 1, "PCM_16") as handle:
        for minute in range(minutes):
            block = np.zeros(60 * RATE, dtype=np.float32)
            if minute % burst_every == 1:
                t = np.arange(RATE // 2) / RATE
                block[: RATE // 2] = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(RATE // 2)
            handle.write(block)
    return frames


@pytest.mark.slow
def test_twenty_minutes_stream_with_flat_memory(tmp_path, tiny_audioldm2_dir):
    short_frames = _write_long(tmp_path / "short.wav", 2, burst_every=2)
    long_frames = _write_long(tmp_path / "long.wav", 20, burst_every=10)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_audioldm2_dir), str(tmp_path / "short.wav"), str(tmp_path / "long.wav"),
         str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    peaks = [int(line.split()[-1]) for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    assert done.returncode == 0 and len(peaks) == 2, done.stdout + done.stderr

    grown_mib = (peaks[1] - peaks[0]) / 1024
    print(f"peak RSS: 2 min {peaks[0] / 1024:.0f} MiB, 20 min {peaks[1] / 1024:.0f} MiB (+{grown_mib:.1f} MiB)")
    assert grown_mib < 30, f"peak RSS grew by {grown_mib:.0f} MiB from 2 to 20 minutes"

    manifest = json.loads((tmp_path / "out" / "long" / "manifest.json").read_text())
    assert manifest["input"]["frames"] == long_frames
    separated = [w for w in manifest["windows"] if w["sources"]]
    assert 2 <= len(separated) <= 4  # the windows that hold a burst, nothing else
    assert sum(w.get("silent", False) for w in manifest["windows"]) == len(manifest["windows"]) - len(separated)
    for stem in ("dog_barking.wav", "residual.wav"):
        assert sf.info(tmp_path / "out" / "long" / stem).frames == long_frames
    assert sf.info(tmp_path / "out" / "short" / "residual.wav").frames == short_frames

    # Where the bursts are (minutes 1 and 11), the stem holds an audible share of them and stem + residual is the
    # input sample for sample (16-bit in, 16-bit out); read just those stretches, not 20 minutes.
    for minute in (1, 11):
        start, stop = minute * 60 * RATE, minute * 60 * RATE + RATE // 2
        burst, stem, residual = (
            sf.read(path, start=start, stop=stop, dtype="float64")[0]
            for path in (tmp_path / "long.wav", tmp_path / "out" / "long" / "dog_barking.wav",
                         tmp_path / "out" / "long" / "residual.wav"))
        np.testing.assert_array_equal(stem + residual, burst)
        assert np.sqrt(np.mean(stem**2)) > 0.02 * np.sqrt(np.mean(burst**2)), f"near-silent stem at minute {minute}"


def test_windows_batched_together_give_the_stems_of_one_window_at_a_time(tmp_path, tiny_audioldm2_dir,
                                                                         monkeypatch):
    import torch

    from autosep.separator import ZeroSep

    torch.set_num_threads(1)
    rate = 22050
    t = np.arange(int(4.16 * rate)) / rate  # four 1.28 s windows, 0.32 s apart from the next
    data = np.stack([0.3 * np.sin(2 * np.pi * 330 * t), 0.2 * np.sin(2 * np.pi * 1200 * t)], axis=1)
    sf.write(tmp_path / "mix.wav", data.astype(np.float32), rate, subtype="FLOAT")
    calls = []
    real = ZeroSep.separate_windows

    def spy(self, waves, sources, **kwargs):
        calls.append(len(waves))
        return real(self, waves, sources, **kwargs)

    monkeypatch.setattr(ZeroSep, "separate_windows", spy)
    stems = {}
    for batch in (1, 3):
        result = autosep.separate_file(tmp_path / "mix.wav", sources=["cello", "flute"], model=str(tiny_audioldm2_dir),
                                       steps=3, window=1.28, overlap="0.32s", window_batch=batch, device="cpu",
                                       out=str(tmp_path / f"out{batch}"), format="wav", bit_depth="32f")
        assert result.manifest.settings["window_batch"] == batch
        assert result.manifest.work["windows"] == 4
        stems[batch] = {name: result.stems[name] for name in ("cello", "flute")}
        work = result.manifest.work["unet_evaluations"]
        if batch == 1:
            alone_work = work
    assert calls == [1, 1, 1, 1, 3, 1]  # one window per call; then three together and the last one
    assert work == alone_work  # the same work, in fewer sequential calls
    for name in ("cello", "flute"):
        scale = np.abs(stems[1][name]).max()
        assert scale > 1e-3
        np.testing.assert_allclose(stems[3][name], stems[1][name], rtol=0, atol=1e-4 * scale)
