"""``--video-out``: a real video (a test pattern with a rendered soundtrack, made with Debian's ffmpeg) written
back with the remix or a stem as its soundtrack; its video packets must be the input's, byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from autosep.commands.remix import main as remix_main
from autosep.errors import SettingsError
from autosep.pipeline.batch import run_batch
from autosep.pipeline.pipeline import Pipeline
from autosep.pipeline.recording import open_audio
from autosep.pipeline.settings import PipelineOptions
from test_pipeline_flow import BandSeparatorDouble

av = pytest.importorskip("av")
RATE = 44100


def render_clip(path, audio_codec: str, seconds: float = 2.0):
    """A test-pattern video with a two-tone stereo soundtrack (300 Hz left-heavy, 2.5 kHz), rendered by ffmpeg."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to render a test video: apt-get install ffmpeg (as .ci/run does)")
    t = np.arange(int(seconds * RATE)) / RATE
    low, high = 0.3 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 2500 * t)
    track = path.with_name(path.stem + "-track.wav")
    sf.write(track, np.stack([low + high, 0.8 * low + high], axis=1), RATE, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc=size=96x64:rate=10:duration={seconds}", "-i", str(track), "-t", str(seconds),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", audio_codec, str(path)], check=True)
    track.unlink()
    return path


def video_packets(path) -> list[tuple[bytes, int | None, bool]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(bytes(p), p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]


def soundtrack(path) -> np.ndarray:
    with open_audio(path) as recording:
        recording.scan(1 << 16)
        return recording.read(0, recording.frames)


def _separate(tmp_path, clip, **options):
    settings = PipelineOptions(sources=["low hum", "high whistle"], steps=2, window=1.0, visual=False,
                               out=str(tmp_path / "out"), **options).settings()
    pipeline = Pipeline(settings, separator=BandSeparatorDouble())
    return run_batch([str(clip)], settings, pipeline=pipeline).results[0]


def test_the_video_comes_back_with_the_remix_as_soundtrack_and_the_picture_untouched(tmp_path):
    clip = render_clip(tmp_path / "clip.mov", "pcm_s16le")  # a lossless soundtrack: the remix must be exact
    result = _separate(tmp_path, clip, remove=["low hum"], video_out=True)
    assert result.status == "done", result.message
    video = result.output / "remix.mov"
    assert video_packets(video) == video_packets(clip)  # every packet, timestamp and keyframe as it was
    remix = sf.read(result.output / "remix.wav", dtype="float32", always_2d=True)[0]
    np.testing.assert_array_equal(soundtrack(video), remix)
    assert np.abs(remix).max() > 0.1  # the whistle is heard, not silence
    manifest = json.loads((result.output / "manifest.json").read_text())
    assert manifest["video_out"] == {"file": "remix.mov", "soundtrack": "remix", "audio_codec": "pcm_s16le",
                                     "video_streams": 1, "video_packets": len(video_packets(clip))}
    assert not [p for p in result.output.iterdir() if p.name.startswith(".")]  # no temporary left


def test_one_stem_as_the_soundtrack_in_a_lossless_mkv(tmp_path):
    clip = render_clip(tmp_path / "clip.mkv", "flac")
    result = _separate(tmp_path, clip, video_out="high whistle")
    assert result.status == "done", result.message
    video = result.output / "high_whistle.mkv"
    assert video_packets(video) == video_packets(clip)
    stem = sf.read(result.files["high whistle"], dtype="float32", always_2d=True)[0]
    np.testing.assert_array_equal(soundtrack(video), stem)
    assert result.manifest.video_out.audio_codec == "flac"


def test_remix_command_writes_the_video_from_a_finished_result_aac_within_its_tolerance(tmp_path, capsys):
    clip = render_clip(tmp_path / "clip.mp4", "aac")
    result = _separate(tmp_path, clip)
    assert result.status == "done" and not (result.output / "clip.mp4").exists()
    assert remix_main([str(result.output), "--gain", "low hum=-inf", "--video-out"]) == 0
    video = result.output / "remix.mp4"
    assert video_packets(video) == video_packets(clip)
    remix = sf.read(result.output / "remix.wav", dtype="float64", always_2d=True)[0]
    decoded = soundtrack(video)[:len(remix)].astype(np.float64)
    assert len(decoded) == len(remix)  # aac pads its last frame; the start is aligned
    error = decoded - remix
    assert 10 * np.log10((remix ** 2).sum() / (error ** 2).sum()) > 20  # aac's tolerance here: about 26 dB SNR
    assert "remix.mp4" in capsys.readouterr().err


def test_an_audio_input_gets_a_warning_and_video_out_needs_a_soundtrack(tmp_path):
    audio = tmp_path / "in" / "mix.wav"
    audio.parent.mkdir()
    t = np.arange(RATE) / RATE
    sf.write(audio, 0.3 * np.sin(2 * np.pi * 300 * t), RATE, subtype="PCM_16")
    result = _separate(tmp_path, audio, video_out="low hum")
    assert result.status == "done" and any("no video stream" in w for w in result.warnings)
    assert result.manifest.video_out is None
    with pytest.raises(SettingsError, match="--video-out needs a soundtrack"):
        PipelineOptions(video_out=True).settings()
