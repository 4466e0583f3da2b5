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
from autosep.waveforms import plan_windows
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
    assert out.shape == (len(original), 2, channels)  # the sources; the residual is what they leave
    assert np.abs(out).max() > 1e-3
    # Soft masks that sum to at most 1 never take more than the input holds, bin by bin.
    assert np.sum(out.sum(axis=1) ** 2) <= np.sum(original ** 2) * 1.05


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
    residual = original - out.sum(axis=1)
    assert corr(residual[:, 0], high) > 0.99  # the 12 kHz tone no stem can explain is residual


def test_projection_reads_each_channel_once_and_derives_the_mono_mix_from_the_channel_stfts(monkeypatch):
    import torch

    from autosep.pipeline import render

    rate, channels = 22050, 3
    rng = np.random.default_rng(3)
    original = (0.1 * rng.standard_normal((rate, channels))).astype(np.float32)
    stems = (0.1 * rng.standard_normal((2, 16000))).astype(np.float32)
    calls = []
    real_stft = torch.stft

    def counted(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real_stft(x, *args, **kwargs)

    monkeypatch.setattr(torch, "stft", counted)
    out = project(original, stems, 16000, rate)
    # One STFT of all channels and one of the steering stems: no separate pass over the channel average.
    assert calls == [(channels, rate), (2, rate)]
    monkeypatch.setattr(torch, "stft", real_stft)

    # The same as masks judged on the STFT of the channel average itself, within float rounding.
    n_fft = render.stft_size(rate)
    window = torch.hann_window(n_fft)

    def stft(x):
        return real_stft(torch.from_numpy(np.ascontiguousarray(x)), n_fft, n_fft // 4, window=window, center=True,
                         pad_mode="constant", return_complex=True)

    steering = np.stack([render.fit_length(render.resample(stem, 16000, rate), rate) for stem in stems])
    power = stft(steering).abs().square()
    unexplained = (stft(original.mean(axis=1)).abs() - power.sqrt().sum(0)).clamp(min=0).square()
    masks = power / (power.sum(0) + unexplained + 1e-12)
    for c in range(channels):
        expected = torch.istft(masks * stft(original[:, c]), n_fft, n_fft // 4, window=window, center=True,
                               length=rate).numpy().T
        np.testing.assert_allclose(out[:, :, c], expected, rtol=0, atol=1e-5)


def test_projection_with_silent_stems_puts_everything_in_residual():
    original = np.random.default_rng(2).standard_normal((8000, 2)).astype(np.float32)
    out = project(original, np.zeros((2, 8000), np.float32), 16000, 16000)
    assert out.shape == (8000, 2, 2) and not out.any()  # everything is left to the residual


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


# -- overlap as a fade length ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, normalised", [("1s", "1s"), (" 0.5 S ", "0.5s"), ("25%", 0.25), (0.25, 0.25),
                                               ("0", 0.0), ("0s", "0s")])
def test_overlap_is_seconds_or_a_fraction_of_the_window(given, normalised):
    from autosep.pipeline.settings import WindowSettings

    settings = WindowSettings(window_s=10.24, overlap=given)
    assert settings.overlap == normalised
    window, hop, fade = settings.frames(16000)
    expected_fade = round(float(normalised[:-1]) * 16000) if isinstance(normalised, str) else round(window * normalised)
    assert (window, hop, fade) == (163840, 163840 - expected_fade, expected_fade)


@pytest.mark.parametrize("given", ["1.5", "100%", "-1s", "abc", "1 min", "nan"])
def test_a_bad_overlap_is_a_usage_error_naming_the_option(given):
    from autosep.errors import SettingsError
    from autosep.pipeline.settings import WindowSettings

    with pytest.raises(SettingsError, match="--overlap") as error:
        WindowSettings(window_s=10.24, overlap=given)
    assert error.value.option == "--overlap"


def test_an_overlap_in_seconds_must_be_shorter_than_the_window():
    from autosep.errors import SettingsError
    from autosep.pipeline.settings import WindowSettings

    with pytest.raises(SettingsError, match="shorter than the 2 s window"):
        WindowSettings(window_s=2.0, overlap="2s")
    # Against the separator's own window once it is known (Stable Audio's 47.55 s takes a 20 s fade).
    assert WindowSettings(overlap="20s").resolved(47.55).frames(100) == (4755, 2755, 2000)


def test_the_default_overlap_is_one_second_or_a_quarter_of_a_short_window():
    from autosep.pipeline.settings import WindowSettings

    assert WindowSettings().resolved(10.24).overlap == "1s"
    assert WindowSettings().resolved(10.24).frames(16000)[2] == 16000
    assert WindowSettings(window_s=1.0).resolved(None).overlap == "0.25s"  # no window is all fade
    # Very short windows: the default fade shrinks rather than breaking the minimum hop (a usage error when given).
    assert WindowSettings(window_s=0.6).resolved(None).overlap == "0.1s"
    assert WindowSettings(window_s=0.4).resolved(None).overlap == "0s"


def test_the_window_batch_defaults_to_one_on_a_cpu():
    import torch

    from autosep.pipeline.settings import WindowSettings

    assert WindowSettings().resolved(10.24, torch.device("cpu")).window_batch == 1
    assert WindowSettings().resolved(10.24, None).window_batch == 1
    assert WindowSettings(window_batch=3).resolved(10.24, torch.device("cpu")).window_batch == 3


def test_the_pipeline_docstring_lists_the_steps_process_runs_in_their_order():
    # Pipeline.process is its module docstring's numbered steps, one method each: the two must not drift apart.
    import ast
    import inspect
    import re
    import textwrap

    from autosep.pipeline import pipeline

    documented = re.findall(r"^\s+(\d)\. (\w+)", pipeline.__doc__, flags=re.M)
    assert [int(number) for number, _ in documented] == list(range(1, len(documented) + 1))
    tree = ast.parse(textwrap.dedent(inspect.getsource(pipeline.Pipeline._steps)))
    steps = {f"_{name}" for _, name in documented}
    called = sorted((node.lineno, node.func.attr) for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute) and node.func.attr in steps)
    assert [attr for _, attr in called] == [f"_{name}" for _, name in documented]
