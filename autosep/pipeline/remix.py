"""Remixing a finished result folder: the stems mixed back with a gain per stem, streamed block by block.

The rule: a remix is the plain weighted sum of the stems as stored, at the stems' rate, channels and bit depth
(projected stems are at the input's). Projected stems add up to the input exactly, so with every gain at 0 dB
the remix *is* the input: bit for bit for 16/24-bit PCM (the sum of integer samples is exact in float64 and
lands on the same grid), and ``-inf`` on a source removes exactly that stem. Samples beyond full scale are
clipped for integer formats and always counted and reported, never silent.

A stem is named as :meth:`Manifest.find_stem <autosep.pipeline.manifest.Manifest.find_stem>` finds it: the
manifest's source name (e.g. "Dog", and ``residual``), the stem's file name with or without extension (``dog``),
its separator prompt (``c_rev``, "dog barking") or its AudioSet mid, in any case. An unknown name raises
:class:`UnknownStemError` listing the valid ones.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AutosepError
from .manifest import MANIFEST_NAME, Manifest, UnknownStemError  # noqa: F401  (UnknownStemError: for callers)
from .naming import REMIX  # noqa: F401  (re-exported: the remix file's name, for its callers)
from .write import FORMATS, OutputError, StemWriters, check_output_format, choose_subtype

BLOCK_FRAMES = 1 << 18  # about 6 s at 44.1 kHz per read: memory stays flat for any length

_GAIN = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)|[+-]?inf)\s*(?:db)?\s*$", re.IGNORECASE)


class RemixError(AutosepError):
    """The folder is not a finished result, or its stems cannot be read or mixed."""


def parse_db(text: str) -> float:
    """``-6``, ``-6dB``, ``+3 dB``, ``0``, ``-inf`` -> decibels (float, possibly ``-inf``)."""
    match = _GAIN.match(str(text))
    if not match:
        raise ValueError(f"expected a gain in dB like -6, -6dB, +3dB or -inf, got {text!r}")
    value = float(match.group(1))
    if math.isnan(value) or value == math.inf:
        raise ValueError(f"a gain must be finite dB or -inf, got {text!r}")
    return value


def parse_gain(text: str) -> tuple[str, float]:
    """``"dog barking=-inf"`` -> ``("dog barking", -inf)``; the name may itself hold ``=``, the last one splits."""
    name, sep, value = str(text).rpartition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME=GAIN (e.g. \"dog=-inf\" or \"residual=-6dB\"), got {text!r}")
    return name.strip(), parse_db(value)


def db_to_linear(db: float) -> float:
    return 0.0 if db == -math.inf else float(10.0 ** (db / 20.0))


@dataclass
class Stem:
    name: str  # as in the manifest ("Dog", "residual")
    path: Path


@dataclass
class ResultFolder:
    """A finished result folder: its manifest and stems, in manifest order (residual last)."""

    folder: Path
    manifest: Manifest
    stems: list[Stem]

    @property
    def names(self) -> list[str]:
        return [stem.name for stem in self.stems]

    def find(self, name: str) -> Stem:
        """The stem ``name`` names (:meth:`Manifest.find_stem`); raises UnknownStemError listing the valid names."""
        key = self.manifest.find_stem(name)
        return next(stem for stem in self.stems if stem.name == key)


def open_result(folder: str | os.PathLike) -> ResultFolder:
    """Read ``folder``'s manifest and list its stems; raises RemixError if it is not a finished result."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RemixError(f"{folder}: no such folder; pass a folder autosep wrote (it holds {MANIFEST_NAME})")
    manifest = Manifest.read(folder)
    if manifest is None or not manifest.is_autosep:
        raise RemixError(f"{folder}: no readable {MANIFEST_NAME}, so not a finished autosep result; "
                         "run autosep on the recording first (or rerun it to finish an interrupted run)")
    stems = [Stem(name, path) for name, path in manifest.files.items()]
    for stem in stems:
        if not stem.path.is_file():
            raise RemixError(f"{stem.path}: listed in {manifest.path} but missing; rerun autosep with "
                             "--overwrite to write the stems again")
    if not stems:
        raise RemixError(f"{folder}: the recording has no stems (no sources were found), nothing to remix")
    return ResultFolder(folder, manifest, stems)


def resolve_gains(result: ResultFolder, gains: Mapping[str, float]) -> dict[str, float]:
    """Gains in dB by manifest name for every stem (unnamed stems stay at 0 dB). Raises UnknownStemError."""
    resolved = {stem.name: 0.0 for stem in result.stems}
    for name, db in gains.items():
        resolved[result.find(name).name] = float(db)
    return resolved


@dataclass
class RemixResult:
    path: Path
    gains_db: dict[str, float]
    sample_rate: int
    channels: int
    frames: int
    subtype: str
    peak: float
    clipped_samples: int  # samples beyond full scale (clipped in integer formats, kept in float ones)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"file": self.path.name,
                "gains_db": {k: (None if v == -math.inf else round(v, 3)) for k, v in self.gains_db.items()},
                "subtype": self.subtype, "peak": round(self.peak, 6), "clipped_samples": self.clipped_samples}


def remix(folder: str | os.PathLike | ResultFolder, gains: Mapping[str, float], out: str | os.PathLike,
          bit_depth: str | None = None) -> RemixResult:
    """Mix ``folder``'s stems with ``gains`` (dB by stem name, missing ones 0 dB, ``-inf`` mutes) into ``out``.

    The format comes from ``out``'s extension (wav, flac, ogg, mp3); the bit depth is the stems' unless
    ``bit_depth`` ("16", "24", "32f") says otherwise. ``out`` is written to a temporary name and renamed
    when complete. Raises UnknownStemError for an unknown name, RemixError/OutputError otherwise.
    """
    result = folder if isinstance(folder, ResultFolder) else open_result(folder)
    resolved = resolve_gains(result, gains)
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise OutputError(f"{out}: unknown output format {out.suffix or '(no extension)'!r}; "
                          f"name the file .{', .'.join(FORMATS)}")
    own = {stem.path.resolve() for stem in result.stems} | {(result.folder / MANIFEST_NAME).resolve()}
    if out.resolve() in own:
        raise OutputError(f"{out}: is one of the result's own files; choose another output name")

    handles = [sf.SoundFile(str(stem.path)) for stem in result.stems]
    try:
        rate, channels, frames = handles[0].samplerate, handles[0].channels, handles[0].frames
        for stem, handle in zip(result.stems, handles):
            if (handle.samplerate, handle.channels, handle.frames) != (rate, channels, frames):
                raise RemixError(f"{stem.path}: {handle.frames} frames, {handle.samplerate} Hz, {handle.channels} "
                                 f"channels, unlike {result.stems[0].path.name}; the folder mixes results of "
                                 "different runs, rerun autosep with --overwrite")
        stem_subtype = _widest(handle.subtype for handle in handles)
        subtype = choose_subtype(fmt, bit_depth, stem_subtype)
        check_output_format(fmt, subtype, rate, channels)
        out.parent.mkdir(parents=True, exist_ok=True)
        weights = [db_to_linear(resolved[stem.name]) for stem in result.stems]
        beyond = 0
        with StemWriters([out], fmt, subtype, rate, channels) as writers:  # removed unless committed
            for start in range(0, max(frames, 1), BLOCK_FRAMES):
                count = min(BLOCK_FRAMES, frames - start)
                if count <= 0:
                    break
                # float64: integer PCM reads back as k / 2^(bits-1), so the sum of unit-gain stems is exact.
                mixed = np.zeros((count, channels), dtype=np.float64)
                for weight, handle in zip(weights, handles):
                    if weight == 0.0:
                        continue
                    block = handle.read(count, dtype="float64", always_2d=True)
                    mixed += block if weight == 1.0 else weight * block
                beyond += int(np.count_nonzero(np.abs(mixed) > 1.0))
                writers.write(0, mixed)
            writers.commit()
        writer = writers[0]
    finally:
        for handle in handles:
            handle.close()
    warnings = []
    if beyond:
        fix = ("they are kept in the float file" if not writer.clips else
               "lower the gains, or write a float file (.wav with bit depth 32f) to keep them")
        warnings.append(f"{out}: {beyond} samples went beyond full scale (peak {_dbfs(writer.peak)}) and were "
                        f"{'clipped' if writer.clips else 'not clipped'}; {fix}")
    return RemixResult(out, resolved, int(rate), int(channels), int(frames), subtype, float(writer.peak),
                       beyond, warnings)


def _widest(subtypes) -> str:
    order = ["PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]
    known = [s for s in subtypes if s in order]
    return max(known, key=order.index) if known else "PCM_16"  # lossy stems (ogg/mp3): 16-bit is what they hold


def _dbfs(peak: float) -> str:
    return "-inf dBFS" if peak <= 0 else f"{20 * math.log10(peak):+.1f} dBFS"

