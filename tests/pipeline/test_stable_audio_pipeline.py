"""Full-band stereo end to end: ``autosep`` with the tiny Stable Audio pipelines writes 44.1 kHz stereo stems and a
residual that add back to the input, keeps panned sources on their side, and records the backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main
from autosep.pipeline.render import project
from tiny_models.stable_audio import SAO_SAMPLE_SIZE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 44_100


def write_stereo(path, seconds=0.6, right_gain=0.6):
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(0)
    left = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.02 * rng.standard_normal(t.shape)
    right = right_gain * (0.3 * np.sin(2 * np.pi * 5_000 * t) + 0.02 * rng.standard_normal(t.shape))
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), RATE, subtype="PCM_16")
    return sf.read(path, dtype="int16", always_2d=True)[0]


@pytest.mark.parametrize("which", ["tiny_stable_audio_open_dir", "tiny_stable_audio_3_dir"])
def test_stereo_in_gives_44k_stereo_stems_and_a_residual_that_add_back(which, request, tmp_path, capsys):
    folder = request.getfixturevalue(which)
    mix = write_stereo(tmp_path / "mix.wav")
    out = tmp_path / "out"
    code = main([str(tmp_path / "mix.wav"), "--model", str(folder), "-s", "cello", "-s", "flute", "--steps", "2",
                 "--device", "cpu", "-o", str(out)])
    assert code == 0, capsys.readouterr()
    total = np.zeros(mix.shape, dtype=np.int64)
    for name in ("cello", "flute", "residual"):
        data, rate = sf.read(out / "mix" / f"{name}.wav", dtype="int16", always_2d=True)
        assert rate == RATE and data.shape == mix.shape
        total += data
    assert np.array_equal(total, mix)  # bit for bit at 16 bits
    stems = [sf.read(out / "mix" / f"{n}.wav", dtype="float32")[0] for n in ("cello", "flute")]
    assert max(float(np.abs(s).max()) for s in stems) > 1e-3  # the stems carry sound, not only the residual
    manifest = json.loads((out / "mix" / "manifest.json").read_text())
    separator = manifest["separator"]
    expected = "stable-audio-open" if "open" in which else "stable-audio-3"
    assert separator["backbone"] == expected and separator["sample_rate"] == RATE and separator["channels"] == 2
    assert "edit-friendly" in separator["sampler"]
    # No --window: the model's own window (the tiny SAO's training length; SA3's documented ~4.75 min).
    window = manifest["settings"]["window_s"]
    assert window == pytest.approx(SAO_SAMPLE_SIZE * 256 / RATE if "open" in which else 285.0)


def test_a_source_panned_hard_left_stays_left_and_mono_stays_mono(tiny_stable_audio_open_dir, tmp_path, capsys):
    write_stereo(tmp_path / "left.wav", right_gain=0.0)
    out = tmp_path / "out"
    assert main([str(tmp_path / "left.wav"), "--model", str(tiny_stable_audio_open_dir), "-s", "cello",
                 "--steps", "2", "--device", "cpu", "-o", str(out)]) == 0, capsys.readouterr()
    stem = sf.read(out / "left" / "cello.wav", dtype="float32")[0]
    assert float(np.abs(stem[:, 0]).max()) > 1e-3 and float(np.abs(stem[:, 1]).max()) < 1e-4
    # Mono in: separated as mono (duplicated into the model's channels, averaged back), mono stems out.
    t = np.arange(int(0.5 * RATE)) / RATE
    sf.write(tmp_path / "mono.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    assert main([str(tmp_path / "mono.wav"), "--model", str(tiny_stable_audio_open_dir), "-s", "cello",
                 "--steps", "2", "--device", "cpu", "--render", "generative", "-o", str(out)]) == 0
    data, rate = sf.read(out / "mono" / "cello.wav", dtype="float32", always_2d=True)
    assert rate == RATE and data.shape == (len(t), 1)
    # Generative stereo: the model's rate and channels.
    assert main([str(tmp_path / "left.wav"), "--model", str(tiny_stable_audio_open_dir), "-s", "cello",
                 "--steps", "2", "--device", "cpu", "--render", "generative", "--overwrite", "-o", str(out)]) == 0
    data, rate = sf.read(out / "left" / "cello.wav", dtype="float32", always_2d=True)
    assert rate == RATE and data.shape[1] == 2


def test_each_channel_is_masked_by_its_own_stems():
    # Source A only in the left channel, source B only in the right; stems that say so per channel keep them
    # apart. Judged on the channel average (a mono separator) both sources would leak into both channels.
    t = np.arange(RATE // 2) / RATE
    a = 0.3 * np.sin(2 * np.pi * 440 * t)
    b = 0.3 * np.sin(2 * np.pi * 440 * t + 1.0) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    original = np.stack([a, b], axis=1).astype(np.float32)
    stems = np.zeros((2, 2, len(t)), dtype=np.float32)
    stems[0, 0], stems[1, 1] = a, b
    out = project(original, stems, RATE, RATE)
    assert out.shape == (len(t), 2, 2)
    assert float(np.abs(out[:, 0, 1]).max()) < 1e-4 and float(np.abs(out[:, 1, 0]).max()) < 1e-4
    assert np.allclose(out[:, 0, 0], a, atol=0.02) and np.allclose(out[:, 1, 1], b, atol=0.02)
    mono_steered = project(original, stems.mean(axis=1), RATE, RATE)
    assert float(np.abs(mono_steered[:, 0, 1]).max()) > 0.05  # the shared masks leak A's share into the right
