"""A recording's length is judged by its format (issue 14, item 2): exact headers (PCM WAV/AIFF, FLAC) make a
shortfall a truncation that is reported and recorded; for compressed formats the decoded length is the truth.

Real files come from ffmpeg (an mp3 without a Xing header, whose frame count libsndfile can only estimate) and
from cutting written files short, as an interrupted copy does.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from test_pipeline_flow import BandSeparatorDouble

from autosep.pipeline.batch import run_batch
from autosep.pipeline.recording import open_audio
from autosep.pipeline.pipeline import Pipeline
from autosep.pipeline.settings import PipelineOptions

RATE = 16000


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)


def _cut(path, keep_fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


def _run(tmp_path):
    settings = PipelineOptions(sources=["low hum"], window=1.0, steps=2, out=str(tmp_path / "out")).settings()
    pipeline = Pipeline(settings, separator=BandSeparatorDouble())
    return run_batch([str(tmp_path / "in")], settings, pipeline=pipeline)


@pytest.mark.parametrize("fmt, subtype, suffix", [("WAV", "PCM_16", "wav"), ("AIFF", "PCM_16", "aiff"),
                                                   ("FLAC", "PCM_16", "flac")])
def test_a_file_cut_short_is_processed_at_its_real_length_with_a_warning(tmp_path, fmt, subtype, suffix):
    path = tmp_path / "in" / f"copy.{suffix}"
    path.parent.mkdir()
    sf.write(path, _tone(20.0), RATE, format=fmt, subtype=subtype)  # the header promises 20 s
    _cut(path, 0.1)
    outcome = _run(tmp_path)
    (result,) = outcome.results
    assert result.status == "done", result.message
    manifest = result.manifest
    real = manifest.input.frames
    assert 0.5 * RATE < real < 3 * RATE  # what the data holds, not the 20 s of the header
    assert manifest.input.header_frames == 20 * RATE and manifest.flags.truncated_input
    (warning,) = [w for w in result.warnings if "shorter than its header" in w]
    assert f"copy.{suffix}" in warning and "20.00 s promised" in warning and f"{real / RATE:.2f} s" in warning
    for stem in result.files.values():
        assert sf.info(stem).frames == real  # stems have the length really there


def test_a_complete_file_is_not_truncated(tmp_path):
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "whole.wav", _tone(2.0), RATE, subtype="PCM_16")
    (result,) = _run(tmp_path).results
    assert result.status == "done" and not result.manifest.flags.truncated_input
    assert result.manifest.input.header_frames is None
    assert not any("header" in w for w in result.warnings)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")
def test_an_mp3_without_a_xing_header_is_read_at_its_decoded_length(tmp_path):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "noxing.mp3"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                    "-ar", "44100", "-c:a", "libmp3lame", "-write_xing", "0", str(path)], check=True)
    with sf.SoundFile(str(path)) as handle:
        estimate = handle.frames
        decoded = len(handle.read(dtype="float32"))
    assert estimate != decoded  # the situation this test is about: libsndfile's count is a guess
    with open_audio(path) as recording:
        recording.scan(RATE)
        assert recording.frames == decoded and not recording.truncated
    (result,) = _run(tmp_path).results
    assert result.status == "done", result.message
    assert result.manifest.input.frames == decoded and not result.manifest.flags.truncated_input
    assert not any("header" in w or "truncated" in w for w in result.warnings)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")
def test_a_cut_mp3_gets_autosep_s_own_warning_and_not_the_decoder_s_raw_lines(tmp_path, capfd):
    """The Xing header states the frame count; data cut short of it is a truncation, said once in autosep's words.
    mpg123's own line ("Warning: Xing stream size off...") stays out of the terminal."""
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "cut.mp3"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=12",
                    "-ar", "16000", "-c:a", "libmp3lame", str(path)], check=True)
    _cut(path, 0.3)
    capfd.readouterr()
    (result,) = _run(tmp_path).results
    assert result.status == "done", result.message
    (warning,) = [w for w in result.warnings if "shorter than its header" in w]
    assert "cut.mp3" in warning and "12.0" in warning  # about 12 s promised
    assert result.manifest.flags.truncated_input
    assert "Xing" not in capfd.readouterr().err
