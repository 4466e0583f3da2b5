"""Python API: ``autosep.AutoSep(**options).run(paths)`` and ``autosep.separate_file(path, **options)``.

Options are the :class:`autosep.pipeline.settings.PipelineOptions` fields (``sources``, ``tagger``, ``model``,
``steps``, ``out``, ``render``, ...), checked once when the ``AutoSep`` is made, with what the names and the
files on this machine can tell before any model loads (:mod:`.preflight`: a ``model`` that can be no model, a
``remove`` name no source has, an overlap the model's window cannot hold). Models are loaded on the first run
that needs them and reused by later runs. The command line is built on this class.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import AutosepError
from .batch import BatchOutcome, run_batch
from .progress import Progress
from .pipeline import RecordingResult
from .preflight import check_before_loading
from .settings import PipelineOptions, RunSettings


class AutoSep:
    """A configured separator for whole recordings. ``AutoSep(**options)`` or ``AutoSep(settings=...)``."""

    def __init__(self, settings: RunSettings | None = None, progress: Progress | None = None, **options):
        if settings is not None and options:
            raise TypeError("pass either settings= or options, not both")
        self.settings = settings if settings is not None else PipelineOptions(**options).settings()
        self.progress = progress or Progress()
        self.warnings = check_before_loading(self.settings)  # raises SettingsError before any model loads
        self._warned = False
        self._pipeline = None

    def process(self, paths: str | os.PathLike | list[str | os.PathLike]) -> BatchOutcome:
        """Process files, folders or globs and report on the whole batch (results, exit code, interruption)."""
        inputs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not self._warned:  # said once, before the first batch's work
            self._warned = True
            for warning in self.warnings:
                self.progress.warn(warning)
        outcome = run_batch([str(p) for p in inputs], self.settings, self.progress, pipeline=self._pipeline)
        self._pipeline = outcome.pipeline or self._pipeline
        return outcome

    def run(self, paths: str | os.PathLike | list[str | os.PathLike]) -> list[RecordingResult]:
        """Process files, folders or globs; one :class:`RecordingResult` per recording (failed ones included).

        Each done result carries ``files``, ``sample_rate``, ``plan`` and ``manifest`` (a typed
        :class:`~autosep.pipeline.manifest.Manifest`, as written to manifest.json); ``result.stems`` maps
        source names to the written stems as float32 arrays ``[frames, channels]``, read from the files when
        accessed (so a batch of long recordings does not hold every stem in memory). Raises AutosepError if
        nothing could run.
        """
        outcome = self.process(paths)
        if outcome.error:
            raise AutosepError(outcome.error)
        return outcome.results


def separate_file(path: str | os.PathLike, **options) -> RecordingResult:
    """Process one file and return its result; raises AutosepError with the reason if it failed."""
    if not Path(path).is_file():
        raise AutosepError(f"{path}: no such file; check the path")
    result = AutoSep(**options).run(path)[0]
    if not result.ok:
        raise AutosepError(result.message)
    return result
