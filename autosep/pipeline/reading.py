"""Random-access reading of a recording in blocks, so long files never sit in memory whole.

Files libsndfile can open (wav, flac, ogg, mp3, aiff...) are read block by block from disk. Everything else
(m4a, opus in mp4, video soundtracks) is decoded whole by :func:`autosep.frames.load_audio` through PyAV; memory
then grows with the length of those files only. NaN and infinite samples are replaced by 0 as they are read
(and counted by :func:`scan`), so every later stage sees finite audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..frames import AudioDecodeError, load_audio

SILENCE_PEAK = 1e-4  # -80 dBFS: a recording, window or stem whose peak stays below this counts as silence


class AudioReader:
    path: Path
    sample_rate: int
    channels: int
    frames: int
    subtype: str | None
    container: str | None

    @property
    def duration(self) -> float:
        return self.frames / float(self.sample_rate)

    def read(self, start: int, count: int) -> np.ndarray:
        """float32 ``[count, channels]`` from frame ``start`` (zero-padded past the end), non-finite -> 0."""
        block = self._read(start, max(0, min(count, self.frames - start)))
        if len(block) < count:
            block = np.concatenate([block, np.zeros((count - len(block), self.channels), dtype=np.float32)])
        if not np.isfinite(block).all():
            block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        return block

    def _read(self, start: int, count: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _SoundFileReader(AudioReader):
    def __init__(self, path: Path, handle: sf.SoundFile):
        self.path, self._file = path, handle
        self.sample_rate, self.channels, self.frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
        self.subtype, self.container = handle.subtype, handle.format

    def _read(self, start: int, count: int) -> np.ndarray:
        if count <= 0:
            return np.zeros((0, self.channels), dtype=np.float32)
        self._file.seek(start)
        return self._file.read(count, dtype="float32", always_2d=True)

    def close(self) -> None:
        self._file.close()


class _MemoryReader(AudioReader):
    def __init__(self, recording):
        self.path, self._samples = recording.path, recording.samples
        self.sample_rate, self.channels, self.frames = recording.sample_rate, recording.channels, recording.frames
        self.subtype, self.container = recording.subtype, recording.container

    def _read(self, start: int, count: int) -> np.ndarray:
        return np.asarray(self._samples[start : start + max(count, 0)], dtype=np.float32)


def open_audio(path: str | Path) -> AudioReader:
    """Open ``path`` for block reading; raises :class:`AudioDecodeError` with a clear message if it is not audio."""
    path = Path(path)
    handle = None
    if path.is_file() and path.stat().st_size > 0:
        try:
            handle = sf.SoundFile(str(path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            handle = None
    if handle is not None and handle.frames > 0 and handle.seekable():
        return _SoundFileReader(path, handle)
    if handle is not None:
        handle.close()
    return _MemoryReader(load_audio(path))  # PyAV, or load_audio's clear error for missing/empty/broken files


@dataclass
class ScanResult:
    peak: float
    non_finite: int


def scan(reader: AudioReader, block_frames: int, on_block=None) -> ScanResult:
    """One streaming pass: the peak level and the number of NaN/inf samples. ``on_block(start, block)`` sees
    every (sanitized) block, so the tagger can ride along on the same pass."""
    peak, non_finite = 0.0, 0
    for start in range(0, reader.frames, block_frames):
        count = min(block_frames, reader.frames - start)
        raw = reader._read(start, count)
        if len(raw) < count:
            raise AudioDecodeError(f"{reader.path}: the file ends early (truncated?); re-export or re-copy it")
        bad = ~np.isfinite(raw)
        if bad.any():
            non_finite += int(bad.sum())
            raw = np.where(bad, 0.0, raw).astype(np.float32)
        if raw.size:
            peak = max(peak, float(np.abs(raw).max()))
        if on_block is not None:
            on_block(start, raw)
    return ScanResult(peak, non_finite)
