"""Reading a recording: one :class:`Recording` type, read in blocks so long files never sit in memory whole.

Files libsndfile can open and seek (wav, flac, ogg, mp3, aiff...) are read block by block from disk. Everything
else (m4a/aac, opus in mp4, wma, the soundtrack of video files) is decoded whole through PyAV; memory then grows
with the length of those files only. NaN and infinite samples are replaced by 0 as they are read (and counted
by :meth:`Recording.scan`), so every later stage sees finite audio. Any file that cannot be read raises
:class:`AudioDecodeError` naming the file and what to do, never a library traceback.

How long a recording is: for PCM WAV/AIFF and FLAC the header says it exactly, so data that stops short of it
(a half-copied file) is a truncation, reported by ``header_frames`` and processed at the length really there.
For compressed formats (mp3, ogg/vorbis, opus) the header's frame count is only an estimate (an mp3 without a
Xing header has none at all): the decoded length is the truth, silently. :meth:`Recording.scan`, the first full
read, settles ``frames``.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AutosepError
from ..logs import captured_native_stderr
from ..stopping import checkpoint

log = logging.getLogger("autosep")

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .aac .wma .aif .aiff .aifc .caf .w64 .rf64 .mka .ac3".split()
)
VIDEO_EXTENSIONS = frozenset(".mp4 .m4v .mkv .mov .webm .avi .wmv .flv .3gp .mpg .mpeg .ts".split())
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
SILENCE_PEAK = 1e-4  # -80 dBFS: a recording, window or stem whose peak stays below this counts as silence


class AudioDecodeError(AutosepError):
    """The file could not be read as audio; the message names it and says what to do."""


def is_media_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


@dataclass
class ScanResult:
    peak: float
    non_finite: int


EXACT_LENGTH_CONTAINERS = frozenset({"WAV", "WAVEX", "AIFF", "FLAC", "W64", "RF64", "CAF"})


class Recording:
    """An open recording: its format, and float32 ``[frames, channels]`` blocks read on demand."""

    path: Path
    sample_rate: int
    channels: int
    frames: int  # the real length once scanned (before: what the header says)
    subtype: str | None  # soundfile subtype ("PCM_16", "FLOAT", ...), None when decoded by PyAV
    container: str | None  # soundfile format ("WAV", "FLAC", ...) or the FFmpeg container name
    header_frames: int | None = None  # the length an exact header promises, when the data falls short of it
    _estimated = False  # the header's length is an estimate (compressed formats): the decoded length decides

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

    def scan(self, block_frames: int, on_block: Callable[[int, np.ndarray], None] | None = None) -> ScanResult:
        """One streaming pass: the peak level and the number of NaN/inf samples. ``on_block(start, block)`` sees
        every (sanitized) block, so the tagger can ride along on the same pass."""
        peak, non_finite = 0.0, 0
        start = 0
        while start < self.frames:
            checkpoint()  # a Ctrl-C asked for while reading stops here (autosep.stopping)
            count = min(block_frames, self.frames - start)
            raw = self._read_until_end(start, count)
            if len(raw) < count:  # the data ends before the header said it would
                if not self._estimated:
                    self.header_frames = self.header_frames or self.frames
                self.frames = start + len(raw)
                self._reopen()  # a decoder that hit the damage may not seek any more
            bad = ~np.isfinite(raw)
            if bad.any():
                non_finite += int(bad.sum())
                raw = np.where(bad, 0.0, raw).astype(np.float32)
            if raw.size:
                peak = max(peak, float(np.abs(raw).max()))
            if on_block is not None and len(raw):
                on_block(start, raw)
            start += len(raw)
            if len(raw) < count:
                break
        if self.frames == 0:
            raise AudioDecodeError(f"{self.path}: the file holds no audio samples")
        return ScanResult(peak, non_finite)

    @property
    def truncated(self) -> bool:
        """Whether the data stops short of the length the file's (exact) header promises."""
        return self.header_frames is not None and self.header_frames > self.frames

    def _read_until_end(self, start: int, count: int) -> np.ndarray:
        """Up to ``count`` frames from ``start``; fewer where the data ends, even when the decoder fails there
        (a cut-off FLAC frame)."""
        try:
            return self._read(start, count)
        except (sf.LibsndfileError, RuntimeError) as exc:
            error = exc
        # The decoder failed inside this block: keep what decodes before the damage, in small steps.
        pieces, step = [], 4096
        for offset in range(start, start + count, step):
            try:
                piece = self._read(offset, min(step, start + count - offset))
            except (sf.LibsndfileError, RuntimeError):
                break
            pieces.append(piece)
            if len(piece) < step:
                break
        if start == 0 and not pieces:
            raise AudioDecodeError(f"{self.path}: cannot decode the audio ({error}); re-export or re-copy it") \
                from None
        return np.concatenate(pieces) if pieces else np.zeros((0, self.channels), dtype=np.float32)

    def _read(self, start: int, count: int) -> np.ndarray:
        """Up to ``count`` frames as stored (NaN kept), fewer at the end of the file."""
        raise NotImplementedError

    def _reopen(self) -> None:
        """Start reading afresh (after the data turned out to end early)."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _FileRecording(Recording):
    """Read from disk through libsndfile, block by block."""

    def __init__(self, path: Path, handle: sf.SoundFile, decoder_lines: list[str] = ()):
        self.path, self._file = path, handle
        self.sample_rate, self.channels, self.frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
        self.subtype, self.container = handle.subtype, handle.format
        # A compressed file's count is an estimate, unless its decoder says the data falls short of a count its
        # header states (an mp3's Xing frame count): then the shortfall is a truncation, as for a WAV.
        self._estimated = handle.format not in EXACT_LENGTH_CONTAINERS and not any(
            note in line for line in decoder_lines for note in _LENGTH_MISMATCH_NOTES)
        # libsndfile quietly shortens a WAV/AIFF whose data stops early to the data there: the header says more.
        declared = _declared_frames(path, handle.format)
        if declared is not None and declared > self.frames:
            self.header_frames = declared

    def _read(self, start: int, count: int) -> np.ndarray:
        if count <= 0:
            return np.zeros((0, self.channels), dtype=np.float32)
        self._file.seek(start)
        return self._file.read(count, dtype="float32", always_2d=True)

    def _reopen(self) -> None:
        self._file.close()
        self._file = _open_soundfile(self.path)[0]

    def close(self) -> None:
        self._file.close()


class _DecodedRecording(Recording):
    """Decoded whole (PyAV, or a libsndfile file that cannot seek) and held in memory."""

    def __init__(self, path: Path, samples: np.ndarray, sample_rate: int, subtype: str | None,
                 container: str | None):
        self.path, self._samples = path, samples
        self.sample_rate, self.channels, self.frames = int(sample_rate), int(samples.shape[1]), int(samples.shape[0])
        self.subtype, self.container = subtype, container

    def _read(self, start: int, count: int) -> np.ndarray:
        return np.asarray(self._samples[start : start + max(count, 0)], dtype=np.float32)


def _declared_frames(path: Path, container: str) -> int | None:
    """The frame count a WAV's ``data`` chunk or an AIFF's ``COMM`` chunk declares (None when unknown)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if container in ("WAV", "WAVEX") and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                return _riff_frames(handle)
            if container == "AIFF" and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_frames(handle)
    except (OSError, struct.error):
        pass
    return None


def _chunks(handle, order: str):
    """(name, size) of each chunk of a RIFF (``order`` "<") or IFF (">") file from the current position; the
    caller reads a chunk's body or the generator skips it."""
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return
        name, size = header[:4], struct.unpack(order + "I", header[4:])[0]
        start = handle.tell()
        yield name, size
        handle.seek(start + size + (size & 1))


def _riff_frames(handle) -> int | None:
    block_align = None
    for name, size in _chunks(handle, "<"):
        if name == b"fmt ":
            block_align = struct.unpack("<H", handle.read(size)[12:14])[0]
        elif name == b"data":
            # 0 and 0xFFFFFFFF are placeholders of streamed writers: no promise made.
            return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
    return None


def _aiff_frames(handle) -> int | None:
    for name, _ in _chunks(handle, ">"):
        if name == b"COMM":
            return struct.unpack(">I", handle.read(6)[2:6])[0]
    return None


def probe_audio(path: str | os.PathLike) -> None:
    """Check, without decoding it, that ``path`` is a file autosep can read (the header opens; for files
    libsndfile cannot read, FFmpeg finds an audio track): what a batch asks of every input before any model
    loads. Raises :class:`AudioDecodeError` as :func:`open_audio` would."""
    path = Path(path)
    _check_file(path)
    try:
        handle, _ = _open_soundfile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_error:
        try:
            import av

            with av.open(str(path)) as container:
                if not container.streams.audio:
                    raise AudioDecodeError(f"{path}: the file has no audio track")
        except AudioDecodeError:
            raise
        except Exception as av_error:  # PyAV raises many kinds of errors for unreadable input
            raise _unreadable(path, sf_error, av_error) from None
        return
    handle.close()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioDecodeError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise AudioDecodeError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: the file is empty (0 bytes); re-export or re-copy it")


def open_audio(path: str | os.PathLike) -> Recording:
    """Open ``path`` for block reading.

    Raises :class:`AudioDecodeError` for a missing, empty, truncated or non-audio file, with a message that
    names the file.
    """
    path = Path(path)
    _check_file(path)
    try:
        handle, decoder_lines = _open_soundfile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as sf_error:
        return _decode_with_pyav(path, sf_error)
    if handle.frames > 0 and handle.seekable():
        return _FileRecording(path, handle, decoder_lines)
    with handle:
        samples = handle.read(dtype="float32", always_2d=True)
    if len(samples) == 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples")
    return _DecodedRecording(path, samples, int(handle.samplerate), handle.subtype, handle.format)


# mpg123 (libsndfile's mp3 decoder) when the data is shorter than the Xing header's frame count says.
_LENGTH_MISMATCH_NOTES = ("Xing stream size off",)


def _open_soundfile(path: Path) -> tuple[sf.SoundFile, list[str]]:
    """libsndfile's handle, and what its decoder printed while opening (kept from the user's view: autosep says
    what it means in its own words; shown with -v)."""
    with captured_native_stderr() as lines:
        handle = sf.SoundFile(str(path))
    for line in lines:
        log.debug("%s: decoder: %s", path, line)
    return handle, lines


def _decode_with_pyav(path: Path, sf_error: BaseException) -> Recording:
    try:
        recording = _pyav_decode(path)
    except AudioDecodeError:
        raise
    except Exception as av_error:  # PyAV raises many kinds of errors for unreadable input
        raise _unreadable(path, sf_error, av_error) from None
    if recording.frames == 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples")
    return recording


def _unreadable(path: Path, sf_error: BaseException, av_error: BaseException) -> AudioDecodeError:
    return AudioDecodeError(f"{path}: not a readable audio or video file ({_short(sf_error)}; {_short(av_error)}). "
                            "Convert it to WAV or FLAC, e.g. with ffmpeg or sox, and try again")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]


def _pyav_decode(path: Path) -> Recording:
    import av  # imported lazily: only files libsndfile cannot read need FFmpeg

    with av.open(str(path)) as container:
        streams = container.streams.audio
        if not streams:
            raise AudioDecodeError(f"{path}: the file has no audio track")
        chunks: list[np.ndarray] = []
        sample_rate = None
        for frame in container.decode(streams[0]):
            sample_rate = sample_rate or frame.sample_rate
            chunks.append(_frame_to_float(frame))
        if not chunks or sample_rate is None:
            raise AudioDecodeError(f"{path}: the audio track holds no samples")
        return _DecodedRecording(path, np.concatenate(chunks, axis=0), int(sample_rate), None, container.format.name)


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
