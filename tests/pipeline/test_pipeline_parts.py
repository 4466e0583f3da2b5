"""The pipeline's building blocks: input expansion, slugs, windows and cross-fades, projected rendering, writers.

These run without any model; the end-to-end behaviour on tiny real models is in test_cli.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from autosep.pipeline.inputs import collect_inputs
from autosep.pipeline.naming import slugify, unique_slugs
from autosep.pipeline.render import project
from autosep.frames import plan_windows
from autosep.pipeline.windows import CrossFade, OverlapAdd
from autosep.pipeline.write import OutputError, StemWriter, check_output_format, choose_subtype


# -- slugs ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,slug", [
    ("Dog", "dog"), ("Male speech, man speaking", "male_speech_man_speaking"), ("Café / Bar", "cafe_bar"),
    ("../../etc/passwd", "etc_passwd"), ("..", "source"), ("?!*", "source"), ("a/b\\c", "a_b_c"),
    ("Zither (instrument)", "zither_instrument"), ("  ", "source"),
])
def test_slugify_is_safe(name, slug):
    result = slugify(name)
    assert result == slug
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in result) and result == result.lower()


def test_unique_slugs_suffix_collisions_and_reserve_residual():
    assert unique_slugs(["Dog", "dog", "DOG!", "Residual", "?", "!"]) == [
        "dog", "dog_2", "dog_3", "residual_2", "source", "source_2"]


# -- inputs --------------------------------------------------------------------------------------------------------

def test_collect_inputs_files_folders_globs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/x.wav", "a/b/y.flac", "a/b/notes.txt", "a/.hidden.wav", "z.mp3"):
        (tmp_path / rel).write_bytes(b"x")
    files, missing = collect_inputs([str(tmp_path / "a"), str(tmp_path / "*.mp3"), str(tmp_path / "nope.wav"),
                                    str(tmp_path / "a" / "x.wav")])
    rel = sorted(str(f.relative) for f in files)
    assert rel == ["b/y", "x", "z"]  # x.wav twice -> once; .txt and hidden files skipped
    assert [m.given for m in missing] == [str(tmp_path / "nope.wav")]


def test_glob_root_keeps_subfolders(tmp_path):
    (tmp_path / "r" / "s").mkdir(parents=True)
    (tmp_path / "r" / "s" / "t.wav").write_bytes(b"x")
    files, _ = collect_inputs([str(tmp_path / "r" / "**" / "*.wav")])
    assert [str(f.relative) for f in files] == ["s/t"]


# -- windows -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("total,window,hop", [(100, 40, 30), (1000, 100, 75), (35, 40, 30), (131, 40, 10), (40, 40, 30)])
def test_windows_cover_everything_and_weights_sum_to_one(total, window, hop):
    windows = plan_windows(total, window, hop)
    assert windows[0].start == 0 and windows[-1].end == total
    assert all(w.length == min(window, total) for w in windows)
    fade = CrossFade(windows, window - hop)
    coverage = np.zeros(total)
    for w in windows:
        coverage[w.start:w.end] += fade.weights(w.index)
    np.testing.assert_allclose(coverage, 1.0, atol=1e-6)


def test_overlap_add_streams_and_reconstructs():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((1000, 2)).astype(np.float32)
    windows = plan_windows(1000, 128, 96)
    received = []
    mixer = OverlapAdd(windows, 1000, (2,), 32, received.append)
    held = []
    for w in windows:
        mixer.add(w.index, signal[w.start:w.end])
        held.append(len(mixer._buffer))
    mixer.finish()
    np.testing.assert_allclose(np.concatenate(received), signal, atol=1e-5)
    assert max(held) <= 128  # only one window's span is ever held


# -- projected rendering -------------------------------------------------------------------------------------------

def _tones(rate, seconds, freqs_amps):
    t = np.arange(int(rate * seconds)) / rate
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in freqs_amps).astype(np.float32)


@pytest.mark.parametrize("rate,channels", [(8000, 1), (44100, 2), (96000, 6)])
def test_projection_sums_to_input_and_keeps_shape(rate, channels):
    rng = np.random.default_rng(1)
    original = (0.1 * rng.standard_normal((int(rate * 1.5), channels))).astype(np.float32)
    stems = (0.1 * rng.standard_normal((2, 24000))).astype(np.float32)
    out = project(original, stems, 16000, rate)
    assert out.shape == (len(original), 3, channels)
    np.testing.assert_allclose(out.sum(axis=1), original, atol=1e-5)


def test_projection_follows_the_stems_and_leaves_above_8khz_to_residual():
    rate = 44100
    low, mid, high = _tones(rate, 2, [(300, 0.3)]), _tones(rate, 2, [(2000, 0.2)]), _tones(rate, 2, [(12000, 0.1)])
    original = np.stack([low + mid + high, low + mid + high], axis=1)
    stems = np.stack([_tones(16000, 2, [(300, 0.3)]), _tones(16000, 2, [(2000, 0.2)])])
    out = project(original, stems, 16000, rate)
    core = slice(rate // 4, -rate // 4)

    def corr(a, b):
        return float(np.dot(a[core], b[core]) / np.linalg.norm(a[core]) / np.linalg.norm(b[core]))

    assert corr(out[:, 0, 0], low) > 0.99 and corr(out[:, 1, 1], mid) > 0.99
    assert corr(out[:, 2, 0], high) > 0.99  # the 12 kHz tone no stem can explain is residual


def test_projection_with_silent_stems_puts_everything_in_residual():
    original = np.random.default_rng(2).standard_normal((8000, 2)).astype(np.float32)
    out = project(original, np.zeros((2, 8000), np.float32), 16000, 16000)
    assert not out[:, :2].any()
    np.testing.assert_array_equal(out[:, 2], original)


# -- writing -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,depth,input_subtype,expected", [
    ("wav", None, "PCM_24", "PCM_24"), ("wav", None, "FLOAT", "FLOAT"), ("wav", None, None, "PCM_16"),
    ("flac", None, "FLOAT", "PCM_24"), ("wav", "32f", "PCM_16", "FLOAT"), ("flac", "16", "PCM_24", "PCM_16"),
    ("ogg", None, "PCM_16", "VORBIS"), ("mp3", None, "PCM_24", "MPEG_LAYER_III"),
])
def test_choose_subtype(fmt, depth, input_subtype, expected):
    assert choose_subtype(fmt, depth, input_subtype) == expected


def test_impossible_output_requests_are_refused():
    with pytest.raises(OutputError, match="flac cannot hold"):
        choose_subtype("flac", "32f", None)
    with pytest.raises(OutputError, match="does not apply"):
        choose_subtype("mp3", "24", None)
    with pytest.raises(OutputError, match="96000 Hz"):
        check_output_format("mp3", "MPEG_LAYER_III", 96000, 2)
    with pytest.raises(OutputError, match="2 channels"):
        check_output_format("mp3", "MPEG_LAYER_III", 44100, 6)


def test_stem_writer_is_atomic_and_counts_clipping(tmp_path):
    path = tmp_path / "dog.wav"
    writer = StemWriter(path, "wav", "PCM_16", 16000, 1)
    writer.write(np.array([[0.5], [1.5], [-2.0]], np.float32))
    assert not path.exists()  # nothing under the final name until commit
    writer.commit()
    data, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and writer.clipped_samples == 2 and writer.peak == 2.0
    assert data.max() <= 1.0 and list(tmp_path.iterdir()) == [path]

    aborted = StemWriter(tmp_path / "cat.wav", "wav", "FLOAT", 16000, 1)
    aborted.write(np.zeros((10, 1), np.float32))
    aborted.abort()
    assert list(tmp_path.iterdir()) == [path]


def test_manifest_records_the_hub_snapshot_a_model_came_from():
    from autosep.pipeline.manifest import hub_revision

    snapshot = "/home/u/.cache/huggingface/hub/models--cvssp--audioldm2/snapshots/" + "0123456789abcdef" * 2 + "01234567"
    assert hub_revision(None, snapshot + "/unet") == "0123456789abcdef0123456789abcdef01234567"
    assert hub_revision("/tmp/my-model") is None


def test_remove_partials_keeps_files_of_running_processes(tmp_path):
    import os
    import subprocess
    import sys

    from autosep.pipeline.write import remove_partials

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".dog.wav.partial-{gone.stdout.strip()}-abcd1234"
    mine = tmp_path / f".cat.wav.partial-{os.getpid()}-abcd1234"
    alive = tmp_path / f".owl.wav.partial-{os.getppid()}-abcd1234"
    for path in (stale, mine, alive):
        path.write_bytes(b"x")
    remove_partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]
