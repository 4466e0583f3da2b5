"""Python API: ``autosep.AutoSep(**options).run(paths)`` and ``autosep.separate_file(path, **options)``.

Options are the :class:`autosep.pipeline.PipelineOptions` fields (``sources``, ``tagger``, ``model``,
``steps``, ``out``, ``render``, ...). Models are loaded on the first run and reused by later runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import soundfile as sf

from .batch import run_batch
from ..errors import AutosepError
from .recording import Pipeline, PipelineOptions, RecordingResult


class StemFiles(Mapping):
    """Stems by source name, each read from its file (float32 ``[frames, channels]``) when accessed."""

    def __init__(self, files: dict[str, Path]):
        self.files = dict(files)

    def __getitem__(self, name: str) -> np.ndarray:
        return sf.read(str(self.files[name]), dtype="float32", always_2d=True)[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


class AutoSep:
    def __init__(self, **options):
        self.options = PipelineOptions(**options)
        self.options.validate()
        self._pipeline: Pipeline | None = None

    def run(self, paths: str | os.PathLike | list[str | os.PathLike]) -> list[RecordingResult]:
        """Process files, folders or globs; one :class:`RecordingResult` per recording (failed ones included).

        Each done result carries ``files``, ``sample_rate``, ``plan`` and ``manifest``; ``result.stems`` maps
        source names to the written stems as float32 arrays ``[frames, channels]``, read from the files when
        accessed (so a batch of long recordings does not hold every stem in memory). Raises AutosepError if
        nothing could run.
        """
        inputs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if self._pipeline is None and inputs:
            self._pipeline = Pipeline.load(self.options)
        outcome = run_batch([str(p) for p in inputs], self.options, pipeline=self._pipeline)
        if outcome.error:
            raise AutosepError(outcome.error)
        for result in outcome.results:
            result.stems = StemFiles(result.files) if result.status in ("done", "skipped") else {}
        return outcome.results


def separate_file(path: str | os.PathLike, **options) -> RecordingResult:
    """Process one file and return its result; raises AutosepError with the reason if it failed."""
    if not Path(path).is_file():
        raise AutosepError(f"{path}: no such file; check the path")
    results = AutoSep(**options).run(path)
    result = results[0]
    if not result.ok:
        raise AutosepError(result.message)
    return result
