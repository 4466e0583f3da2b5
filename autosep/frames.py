"""Decoding and resampling: any common audio or video file in, float32 samples out.

soundfile (libsndfile) reads wav, flac, ogg/vorbis/opus and mp3 and reports the subtype we need to write stems
in the input's own format; PyAV (which carries its own FFmpeg) reads everything else: m4a/aac, wma, and the
audio track of video files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AutosepError

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .aac .wma .aif .aiff .aifc .caf .w64 .rf64 .mka .ac3".split()
)
VIDEO_EXTENSIONS = frozenset(".mp4 .m4v .mkv .mov .webm .avi .wmv .flv .3gp .mpg .mpeg .ts".split())
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS


class AudioDecodeError(AutosepError):
    """The file could not be read as audio; the message names it and says what to do."""


@dataclass
class Recording:
    """Decoded audio: ``samples`` is float32 ``[frames, channels]`` at ``sample_rate``."""

    path: Path
    samples: np.ndarray
    sample_rate: int
    subtype: str | None = None  # soundfile subtype of the source ("PCM_16", "FLOAT", ...), None if decoded by PyAV
    container: str | None = None  # soundfile format ("WAV", "FLAC", ...) or the FFmpeg container name

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.frames / float(self.sample_rate)

    def mono(self) -> np.ndarray:
        """The channel average, float32 ``[frames]``."""
        return self.samples.mean(axis=1, dtype=np.float32) if self.channels > 1 else self.samples[:, 0].copy()


def load_audio(path: str | os.PathLike) -> Recording:
    """Decode ``path`` at its own sample rate and channel count.

    Raises :class:`AudioDecodeError` (never a library traceback) for a missing, empty, truncated or
    non-audio file, with a message that names the file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioDecodeError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise AudioDecodeError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: the file is empty (0 bytes); re-export or re-copy it")
    try:
        recording = _load_with_soundfile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_error:
        try:
            recording = _load_with_pyav(path)
        except AudioDecodeError:
            raise
        except Exception as av_error:  # PyAV raises many kinds of errors for unreadable input
            raise AudioDecodeError(
                f"{path}: not a readable audio or video file ({_short(sf_error)}; {_short(av_error)}). "
                "Convert it to WAV or FLAC, e.g. with ffmpeg or sox, and try again"
            ) from None
    if recording.frames == 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples")
    return recording


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]


def _load_with_soundfile(path: Path) -> Recording:
    with sf.SoundFile(str(path)) as handle:
        samples = handle.read(dtype="float32", always_2d=True)
        return Recording(path, samples, int(handle.samplerate), handle.subtype, handle.format)


def _load_with_pyav(path: Path) -> Recording:
    import av  # imported lazily: only files libsndfile cannot read need FFmpeg

    with av.open(str(path)) as container:
        streams = container.streams.audio
        if not streams:
            raise AudioDecodeError(f"{path}: the file has no audio track")
        stream = streams[0]
        chunks: list[np.ndarray] = []
        sample_rate = None
        for frame in container.decode(stream):
            sample_rate = sample_rate or frame.sample_rate
            chunks.append(_frame_to_float(frame))
        if not chunks or sample_rate is None:
            raise AudioDecodeError(f"{path}: the audio track holds no samples")
        samples = np.concatenate(chunks, axis=0)
        return Recording(path, samples, int(sample_rate), None, container.format.name)


def _frame_to_float(frame) -> np.ndarray:
    """An ``av.AudioFrame`` as float32 ``[frames, channels]``, whatever its sample format."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.reshape(channels, -1).T
    else:
        data = data.reshape(-1, channels)
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    elif data.dtype.kind == "u":
        info = np.iinfo(data.dtype)
        data = (data.astype(np.float32) - (info.max + 1) / 2) / ((info.max + 1) / 2)
    return np.ascontiguousarray(data, dtype=np.float32)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample along the first axis (``[frames]`` or ``[frames, channels]``) with soxr, high quality."""
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    out = soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def is_media_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS
