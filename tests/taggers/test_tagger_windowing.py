"""Windowed scoring: a class audible only in the middle of a long recording is found and located."""

from __future__ import annotations

import numpy as np
import pytest

from autosep.taggers import plan_sources
from autosep.waveforms import plan_windows
from autosep.taggers.base import Tagger


class LoudnessTagger(Tagger):
    """Scores "Dog" by the window's loudness and "Music" as always present: a stand-in for a real model that
    goes through the real resampling and windowing code."""

    name = "loudness"
    sample_rate = 8000
    window_seconds = 10.0
    labels = ["Dog", "Music"]

    def __init__(self):
        self.seen: list[np.ndarray] = []

    @property
    def seen_lengths(self) -> list[int]:
        return [len(w) for w in self.seen]

    def score_windows(self, windows):
        self.seen += [np.array(w) for w in windows]
        rms = np.array([np.sqrt(np.mean(w.astype(np.float64) ** 2)) for w in windows])
        return np.stack([np.clip(rms / 0.35, 0, 1), np.full(len(windows), 0.9)], axis=1)


def window_bounds(frames, window, hop):
    return [(w.start, w.end) for w in plan_windows(frames, window, hop)]


def test_window_bounds_cover_the_signal_and_end_at_its_end():
    # The taggers' scoring windows come from the same grid as the separator's windows.
    assert window_bounds(100, 40, 20) == [(0, 40), (20, 60), (40, 80), (60, 100)]
    assert window_bounds(90, 40, 20) == [(0, 40), (20, 60), (40, 80), (50, 90)]
    assert window_bounds(30, 40, 20) == [(0, 30)]
    assert window_bounds(0, 40, 20) == []


def test_class_in_the_middle_of_60_seconds_is_found_with_its_segment(audioset_dir):
    rate = 16000
    t = np.arange(60 * rate) / rate
    wave = 0.001 * np.random.default_rng(0).standard_normal(t.size)
    middle = (t >= 25) & (t < 35)
    wave[middle] += 0.5 * np.sin(2 * np.pi * 440 * t[middle])
    stereo = np.stack([wave, wave], axis=1).astype(np.float32)

    tagger = LoudnessTagger()
    result = tagger.tag(stereo, rate)

    assert set(tagger.seen_lengths) == {80000}  # resampled to 8 kHz, 10 s windows
    assert result.window_times[0] == (0.0, 10.0) and result.window_times[-1] == (50.0, 60.0)
    assert result.probs.shape == (11, 2)
    dog = result.probs[:, 0]
    assert dog.argmax() == result.window_times.index((25.0, 35.0))
    plan = plan_sources(result.probs, result.labels, result.window_times, threshold=0.25)
    by_label = {s.label: s for s in plan}
    assert by_label["Dog"].segments == [(20.0, 40.0)]  # the windows that overlap 25-35 s, nothing else
    assert by_label["Music"].segments == [(0.0, 60.0)]


def test_short_recording_is_one_window_padded_with_silence():
    tagger = LoudnessTagger()
    result = tagger.tag(np.full(3 * 8000, 0.35, dtype=np.float32), 8000)
    assert result.window_times == [(0.0, 3.0)]  # the real extent, not the padded window
    (window,) = tagger.seen
    assert len(window) == 80000  # the model always gets one whole window
    np.testing.assert_array_equal(window[:24000], np.float32(0.35))
    np.testing.assert_array_equal(window[24000:], 0.0)  # digital silence after the recording
    assert result.probs[0, 0] == pytest.approx(np.sqrt(0.3), rel=1e-5)  # 3 s of sound in a 10 s window


def test_short_recording_window_ends_at_the_real_duration_after_resampling():
    frames = 4413  # 0.10007 s at 44.1 kHz becomes 801 frames (0.100125 s) at 8 kHz
    tagger = LoudnessTagger()
    result = tagger.tag(np.zeros((frames, 2), dtype=np.float32), 44100)
    assert tagger.seen_lengths == [80000]
    assert result.window_times == [(0.0, frames / 44100)]
    assert result.duration == frames / 44100


def test_empty_recording_has_no_windows():
    tagger = LoudnessTagger()
    result = tagger.tag(np.zeros(0, dtype=np.float32), 8000)
    assert result.window_times == [] and result.probs.shape == (0, 2) and tagger.seen == []


def test_wave_must_be_one_or_two_dimensional():
    with pytest.raises(ValueError, match="frames"):
        LoudnessTagger().tag(np.zeros((2, 2, 2), dtype=np.float32), 8000)
