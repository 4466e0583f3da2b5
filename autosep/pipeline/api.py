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
    """A batch runner that loads its models once. ``engine="ray"`` processes the recordings on Ray workers
    (``ray_address``: None for a local instance, ``"auto"`` or ``"ray://host:10001"`` to join a cluster;
    ``ray_workers``, ``ray_cpus_per_worker``, ``ray_gpus_per_worker``, ``ray_retries`` size and guard the pool)."""

    def __init__(self, *, engine: str = "local", ray_address: str | None = None, ray_workers: int | None = None,
                 ray_cpus_per_worker: float = 1.0, ray_gpus_per_worker: float | None = None, ray_retries: int = 2,
                 **options):
        self.options = PipelineOptions(**options)
        self.options.validate()
        self._pipeline: Pipeline | None = None
        if engine not in ("local", "ray"):
            raise AutosepError(f"engine must be 'local' or 'ray', got {engine!r}")
        self.ray = None
        if engine == "ray":
            from .ray_engine import LOCAL, RaySettings, import_ray

            self.ray = RaySettings(address=ray_address or LOCAL, workers=ray_workers,
                                   cpus_per_worker=ray_cpus_per_worker, gpus_per_worker=ray_gpus_per_worker,
                                   retries=ray_retries)
            import_ray()

    def run(self, paths: str | os.PathLike | list[str | os.PathLike]) -> list[RecordingResult]:
        """Process files, folders or globs; one :class:`RecordingResult` per recording (failed ones included).

        Each done result carries ``files``, ``sample_rate``, ``plan`` and ``manifest``; ``result.stems`` maps
        source names to the written stems as float32 arrays ``[frames, channels]``, read from the files when
        accessed (so a batch of long recordings does not hold every stem in memory). Raises AutosepError if
        nothing could run.
        """
        inputs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if self.ray is not None:  # the workers load the models; this process loads none
            outcome = run_batch([str(p) for p in inputs], self.options, ray=self.ray)
        else:
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
