"""Writing stems and manifests so that a file under its final name is always complete.

Every file is written to a hidden temporary file in the same folder and renamed over the final name only when
it is whole (``os.replace`` is atomic on one file system). An interrupted run leaves only ``.*.partial`` files,
which the next run removes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AutosepError

FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
BIT_DEPTHS = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}
_ALLOWED_SUBTYPES = {
    "wav": ("PCM_16", "PCM_24", "FLOAT"),
    "flac": ("PCM_16", "PCM_24"),
}
_LOSSY_SUBTYPE = {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
PARTIAL_MARK = ".partial-"
_PCM_BITS = {"PCM_16": 16, "PCM_24": 24}


class OutputError(AutosepError):
    """The stems cannot be written as asked (format limits, unwritable folder)."""


class DiskFullError(OutputError):
    """No space is left where the output goes: every later recording would fail the same way, so the batch
    stops (exit 1) after removing this recording's temporary files."""


_LOW_SPACE = 1 << 20  # bytes: below this, a failed write is taken to be the disk filling up


def write_failure(path: Path, error: BaseException) -> OutputError:
    """What a failed write of ``path`` means for the user. libsndfile reports a full disk only as "System error",
    so the free space is looked at too."""
    full = getattr(error, "errno", None) == errno.ENOSPC
    if not full:
        try:
            full = shutil.disk_usage(path.parent).free < _LOW_SPACE
        except OSError:
            full = False
    if full:
        return DiskFullError(f"no space left on device while writing {path}; free some space (or pass -o a folder "
                             "on another disk) and rerun the same command to resume")
    return OutputError(f"{path}: cannot write the file ({error})")


def choose_subtype(fmt: str, bit_depth: str | None, input_subtype: str | None) -> str:
    """The soundfile subtype for stems: ``--bit-depth`` if given, else the input's where the format allows it."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt in _LOSSY_SUBTYPE:
        if bit_depth is not None:
            raise OutputError(f"--bit-depth does not apply to {fmt}; leave it out or use --format wav/flac")
        return _LOSSY_SUBTYPE[fmt]
    allowed = _ALLOWED_SUBTYPES[fmt]
    if bit_depth is not None:
        subtype = BIT_DEPTHS.get(str(bit_depth))
        if subtype is None:
            raise OutputError(f"unknown --bit-depth {bit_depth!r}: use 16, 24 or 32f")
        if subtype not in allowed:
            raise OutputError(f"{fmt} cannot hold --bit-depth {bit_depth}; use {' or '.join(_depth(s) for s in allowed)}")
        return subtype
    # The input's own depth where possible; wider integer/float inputs keep as much as the format holds.
    widen = {"PCM_S8": "PCM_16", "PCM_U8": "PCM_16", "PCM_32": "FLOAT", "DOUBLE": "FLOAT"}
    subtype = widen.get(input_subtype or "", input_subtype)
    if subtype in allowed:
        return subtype
    if subtype == "FLOAT" and fmt == "flac":
        return "PCM_24"
    return "PCM_16"  # lossy or unknown (PyAV-decoded) inputs: 16-bit is what they carried


def _depth(subtype: str) -> str:
    return {v: k for k, v in BIT_DEPTHS.items()}[subtype]


def check_output_format(fmt: str, subtype: str, sample_rate: int, channels: int) -> None:
    """Refuse combinations the encoder cannot write, before any work is done."""
    fmt = fmt.lower()
    if fmt == "mp3":
        if sample_rate not in _MP3_RATES:
            raise OutputError(f"mp3 cannot hold {sample_rate} Hz audio; use --format flac or wav")
        if channels > 2:
            raise OutputError(f"mp3 holds at most 2 channels, the input has {channels}; use --format flac or wav")
    if not sf.check_format(FORMATS[fmt], subtype):
        raise OutputError(f"{fmt} cannot be written with subtype {subtype}")


def partials(folder: Path) -> list[Path]:
    """The temporary files (:func:`temporary_name`) in ``folder``, whoever writes them."""
    return list(folder.glob(f".*{PARTIAL_MARK}*")) if folder.is_dir() else []


def remove_partials(folder: Path, any_process: bool = False) -> None:
    """Delete temporary files an interrupted run left in ``folder``: not those of a process still running on this
    machine, unless ``any_process`` (the caller knows no process writes there any more, e.g. on another node)."""
    for leftover in partials(folder):
        pid = leftover.name.rsplit(PARTIAL_MARK, 1)[-1].split("-", 1)[0]
        if not any_process and pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid)):
            continue
        leftover.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when that cannot be told)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists but not ours, or the platform cannot tell: leave it alone
        return True
    return True


def temporary_name(final: Path) -> Path:
    return final.with_name(f".{final.name}{PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


class StemWriter:
    """Streams one stem to a temporary file; :meth:`commit` renames it to ``path``, :meth:`abort` deletes it.

    Tracks the peak and the samples clipped to full scale (integer and lossy formats cannot hold |x| > 1).
    """

    def __init__(self, path: Path, fmt: str, subtype: str, sample_rate: int, channels: int):
        self.path = path
        self.temporary = temporary_name(path)
        self.clips = subtype not in ("FLOAT", "DOUBLE")
        # Integer PCM is written as integers we round ourselves, so callers see exactly what is stored (``write``
        # returns it) and can make stems + residual add up to the input bit for bit.
        self._bits = _PCM_BITS.get(subtype)
        self.peak = 0.0
        self.clipped_samples = 0
        self.frames = 0
        try:
            self._file = sf.SoundFile(str(self.temporary), "w", samplerate=sample_rate, channels=channels,
                                      subtype=subtype, format=FORMATS[fmt.lower()])
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self.temporary.unlink(missing_ok=True)
            raise OutputError(f"{path}: cannot write a {fmt} file here ({exc})") from None

    def write(self, block: np.ndarray) -> np.ndarray:
        """Append ``block`` (float ``[frames, channels]``); returns it as stored (clipped, and rounded for
        integer PCM), float32. Clipping is counted here, on the samples as given."""
        block = np.asarray(block, dtype=np.float32)
        if block.size:
            peak = float(np.abs(block).max())
            self.peak = max(self.peak, peak)
            if self.clips and peak > 1.0:
                self.clipped_samples += int(np.count_nonzero(np.abs(block) > 1.0))
                block = np.clip(block, -1.0, 1.0)
        if self._bits is not None:
            scale = 2 ** (self._bits - 1)
            integers = np.clip(np.round(block.astype(np.float64) * scale), -scale, scale - 1).astype(np.int32)
            # libsndfile takes int16 as is and int32 as full-scale 32-bit, keeping the top bits for PCM_24.
            stored = (integers / float(scale)).astype(np.float32)
            block = integers.astype(np.int16) if self._bits == 16 else integers << (32 - self._bits)
        else:
            stored = block
        try:
            self._file.write(block)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise write_failure(self.path, exc) from None
        self.frames += len(block)
        return stored

    def commit(self) -> None:
        try:
            self._file.close()  # flushes the last buffered samples: a full disk can show only here
            os.replace(self.temporary, self.path)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise write_failure(self.path, exc) from None

    def abort(self) -> None:
        try:
            self._file.close()
        except Exception:  # closing a half-written file may fail; it is deleted anyway
            pass
        self.temporary.unlink(missing_ok=True)


class StemWriters:
    """The writers of one recording's stems, opened together: ``commit`` renames them all to their final names;
    leaving the ``with`` block without committing (an error, Ctrl-C) deletes every temporary file."""

    def __init__(self, paths: list[Path], fmt: str, subtype: str, sample_rate: int, channels: int):
        self.writers: list[StemWriter] = []
        try:
            for path in paths:
                self.writers.append(StemWriter(path, fmt, subtype, sample_rate, channels))
        except BaseException:
            self.abort()
            raise
        self._committed = False

    def __getitem__(self, index: int) -> StemWriter:
        return self.writers[index]

    def write(self, index: int, block: np.ndarray) -> np.ndarray:
        return self.writers[index].write(block)

    def commit(self) -> None:
        for writer in self.writers:
            writer.commit()
        self._committed = True

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()

    def __enter__(self) -> "StemWriters":
        return self

    def __exit__(self, *exc) -> None:
        if not self._committed:
            self.abort()


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    temporary = temporary_name(path)
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        temporary.unlink(missing_ok=True)

