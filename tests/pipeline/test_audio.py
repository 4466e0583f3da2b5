"""Decoding (one Recording type, read in blocks; PyAV for what libsndfile cannot read) and resampling."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from autosep.waveforms import resample
from autosep.pipeline.recording import AudioDecodeError, open_audio


def load_audio(path):
    """The whole recording and its samples."""
    with open_audio(path) as recording:
        return recording, recording.read(0, recording.frames)


def _tone(seconds=0.5, rate=44100, channels=2):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("FLAC", "PCM_16")])
def test_soundfile_formats_keep_rate_channels_subtype(tmp_path, fmt, subtype):
    path = tmp_path / f"mix.{fmt.lower()}"
    data = _tone(channels=2)
    sf.write(path, data, 44100, format=fmt, subtype=subtype)
    rec, samples = load_audio(path)
    assert (rec.sample_rate, rec.channels, rec.frames, rec.subtype) == (44100, 2, len(data), subtype)
    np.testing.assert_allclose(samples, data, atol=1e-4)


def test_pyav_reads_what_soundfile_cannot(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.m4a"
    rate, data = 48000, _tone(1.0, 48000, 2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    rec, samples = load_audio(path)
    assert rec.sample_rate == rate and rec.channels == 2 and rec.subtype is None
    assert abs(rec.frames - len(data)) < 2048  # AAC priming/padding
    assert 0.1 < np.abs(samples).max() < 1.0


@pytest.mark.parametrize(
    "content,match",
    [(b"", "empty"), (b"this is not audio\n" * 20, "not a readable audio"), (b"RIFF\x10\x00\x00\x00WAVEfmt ", "not a readable")],
)
def test_bad_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad file é.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match=match) as info:
        load_audio(path)
    assert "bad file é.wav" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="no such file"):
        load_audio(tmp_path / "absent.wav")


def test_resample_length_and_content():
    x = _tone(1.0, 44100, 1)[:, 0]
    y = resample(x, 44100, 16000)
    assert abs(len(y) - 16000) <= 1
    assert abs(np.sqrt(np.mean(y**2)) - np.sqrt(np.mean(x**2))) < 0.01
    assert resample(x, 16000, 16000) is not None
