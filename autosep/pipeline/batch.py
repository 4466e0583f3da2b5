"""A batch: expand the inputs, check the output folder, decide once per input whether it needs work, load the
models once (only when something needs them), and process every recording.

Shared by the command line and the Python API. Each input's output folder is computed once and its manifest read
once, here: done already (skipped), another input's results (refused unless ``overwrite``), or to process.
Exit codes: :mod:`autosep.errors`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .. import stopping
from ..errors import EXIT_INTERRUPTED, EXIT_NOTHING_RAN, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, AutosepError, SettingsError
from .inputs import InputFile, collect_inputs
from .manifest import Manifest
from .naming import is_inside
from .progress import Progress
from .recording import probe_audio
from .pipeline import Pipeline, RecordingResult, output_folder, write_remix
from .video_out import write_video_out
from .settings import RunSettings
from .write import DiskFullError


@dataclass
class BatchOutcome:
    results: list[RecordingResult] = field(default_factory=list)
    exit_code: int = EXIT_OK
    error: str | None = None  # why nothing could run
    interrupted: bool = False
    interrupted_at: Path | None = None  # the recording that was being processed
    pipeline: Pipeline | None = None  # the pipeline with its models loaded, for the next batch


def check_output_root(out: Path) -> None:
    """Create the output folder and prove a file can be written there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".autosep-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AutosepError(f"cannot write to the output folder {out}: {reason}; pass a writable folder with -o")


def _inside_output_below_root(item: InputFile, out_root: Path) -> bool:
    """Whether ``item`` was found in an input folder's subfolder that is the output folder."""
    if not is_inside(item.path, out_root):
        return False
    return is_inside(out_root, item.root) and os.path.realpath(out_root) != os.path.realpath(item.root)


class _EarlierOutput:
    """Whether a file found by walking a folder or glob (not named itself) is a stem an earlier run wrote (its
    folder's manifest lists it), in this run's output folder or any other: ``"**/*.wav"`` must not take the
    stems of another output folder as recordings. Each folder's manifest is read once."""

    def __init__(self, out_root: Path):
        self.out_root = out_root
        self._manifests: dict[Path, Manifest | None] = {}

    def __call__(self, item: InputFile) -> bool:
        if Path(item.given).expanduser().is_file():  # named on the command line: an input whatever it is
            return False
        folder = item.path.parent
        if folder not in self._manifests:
            self._manifests[folder] = Manifest.read(folder)
        manifest = self._manifests[folder]
        return manifest is not None and manifest.is_autosep and manifest.lists(item.path.name)


@dataclass
class _Work:
    item: InputFile
    folder: Path
    previous: Manifest | None  # the manifest already in the folder, read once


def _describe(result: RecordingResult) -> str:
    if not result.ok:
        return f"failed: {result.message}"
    return {"skipped": "already done (manifest.json exists; --overwrite redoes it)"}.get(result.status, result.status)


def _decide(work: _Work, settings: RunSettings) -> RecordingResult | None:
    """The one decision whether an input needs processing: a result when it does not (done, or refused)."""
    previous = work.previous
    if previous is None or settings.dry_run:
        return None
    if not previous.is_for(work.item.path):
        if settings.output.overwrite:
            return None
        return RecordingResult.failed(
            work.item.path, f"{work.item.path}: {work.folder} already holds the results for another input "
                            f"({previous.input_path}); use a different --out, or --overwrite to replace them")
    if settings.output.overwrite:
        return None
    differs = previous.differences(settings.request(), work.item.path)
    if "input" in differs:  # the file was edited since: its old stems no longer add up to it, whatever was asked
        return None
    if differs:  # never reported as done: the stems there answer another request
        return RecordingResult.failed(work.item.path, f"{work.item.path}: done with other settings "
                                                      f"({', '.join(differs)}); pass --overwrite to redo it")
    return RecordingResult.skipped(work.item, previous)


def run_batch(inputs: list[str], settings: RunSettings, progress: Progress | None = None,
              pipeline: Pipeline | None = None) -> BatchOutcome:
    """Process ``inputs`` (files, folders, globs). ``pipeline`` may be passed with models already loaded.

    In four steps: **collect** the recordings (and check the output folder), **decide** once per input whether it
    needs processing, **load** the models (only when something needs them), and **loop** over the recordings.
    With ``settings.ray``, the loop runs on Ray workers (``ray_engine``), which load the models themselves;
    everything before and after (results, exit code) is the same.
    """
    progress = progress or Progress()
    outcome = BatchOutcome(pipeline=pipeline)
    files = _collect(inputs, settings, outcome, progress)
    if files is None:
        return outcome
    planned = _decide_each(files, settings)
    on_ray = settings.ray is not None and not settings.dry_run  # then the workers load the models, not this process
    if pipeline is None and not on_ray and any(isinstance(entry, _Work) for entry in planned):
        pipeline = outcome.pipeline = _load(settings, progress, outcome)
        if pipeline is None:
            return outcome
    if on_ray:
        return _run_on_ray(planned, settings, progress, outcome)
    return _loop(planned, pipeline, settings, progress, outcome)


def _collect(inputs: list[str], settings: RunSettings, outcome: BatchOutcome, progress: Progress
             ) -> list[InputFile] | None:
    """The recordings to consider, the inputs that name none recorded as failed; None (with ``outcome``'s exit
    code and error set) when nothing can run: no input found, or the output folder is not writable."""
    files, missing = collect_inputs(inputs)
    out_root = settings.output.out
    # Stems from an earlier run inside an input folder (autosep music/ -o music/stems) are not new inputs;
    # a file named directly, or -o pointing at the input folder itself, is still processed.
    # Stems of earlier runs written into the input folder itself (autosep music/ -o music/) are not inputs either.
    earlier_output = _EarlierOutput(out_root)
    found, files = files, [item for item in files
                           if not _inside_output_below_root(item, out_root) and not earlier_output(item)]
    for absent in missing:
        outcome.results.append(RecordingResult.failed(Path(absent.given), f"{absent.given}: {absent.reason}"))
    kept = {item.given for item in files}
    for given in [g for g in dict.fromkeys(item.given for item in found) if g not in kept]:
        outcome.results.append(RecordingResult.failed(
            Path(given), f"{given}: holds only autosep's own output (the stems and manifest.json of an earlier run), "
                         "no recordings; give the folder of the recordings instead"))
    if not files:
        outcome.exit_code = EXIT_NOTHING_RAN
        outcome.error = "no input found: " + "; ".join(r.message for r in outcome.results) if outcome.results \
            else "no input given"
        return None
    for result in outcome.results:  # say so now, not only in the summary after a long model load and batch
        progress.warn(result.message)
    if not settings.dry_run:
        try:
            check_output_root(out_root)
        except AutosepError as exc:
            outcome.exit_code, outcome.error = EXIT_NOTHING_RAN, str(exc)
            return None
    return files


def _decide_each(files: list[InputFile], settings: RunSettings) -> list[_Work | RecordingResult]:
    """Per recording, its work (output folder, the manifest there) or the result decided without processing
    (:func:`_decide`). Two inputs never share an output folder (mix.wav and mix.flac, or a/x.wav and b/x.wav
    given as files): the first keeps it, the others are refused rather than overwriting it."""
    planned: list[_Work | RecordingResult] = []
    owners: dict[str, InputFile] = {}
    for item in files:
        try:
            folder = output_folder(settings.output.out, item)
        except AutosepError as exc:
            planned.append(RecordingResult.failed(item.path, str(exc)))
            continue
        key = os.path.normcase(os.path.abspath(folder))
        if key in owners:
            planned.append(RecordingResult.failed(
                item.path, f"{item.path}: refused, it would write to the same output folder {folder} as "
                           f"{owners[key].path}; rename one of them or process them with different -o folders"))
            continue
        owners[key] = item
        work = _Work(item, folder, Manifest.read(folder))
        decided = _decide(work, settings)
        if decided is None:  # to be processed: an unreadable file is named now, before any model loads
            try:
                probe_audio(item.path)
            except AutosepError as exc:
                decided = RecordingResult.failed(item.path, str(exc))
        planned.append(decided or work)
    return planned


def _load(settings: RunSettings, progress: Progress, outcome: BatchOutcome) -> Pipeline | None:
    """The models loaded once for the whole batch; None (``outcome``'s exit code and error set) if they cannot be."""
    try:
        return Pipeline.load(settings, progress)
    except SettingsError as exc:  # a setting only the loaded model could check (an overlap its window cannot hold)
        outcome.exit_code, outcome.error = EXIT_USAGE, exc.for_command_line()
    except AutosepError as exc:
        outcome.exit_code, outcome.error = EXIT_NOTHING_RAN, str(exc)
    except Exception as exc:  # a broken model folder fails in many ways: say which model, not a traceback
        outcome.exit_code = EXIT_NOTHING_RAN
        tagger = f"tagger {settings.tagging.tagger}, " if settings.tagged else ""
        outcome.error = (f"could not load the models ({tagger}separator {settings.models.separator}): "
                         f"{type(exc).__name__}: {exc}")
    return None


def _loop(planned: list[_Work | RecordingResult], pipeline: Pipeline | None, settings: RunSettings,
          progress: Progress, outcome: BatchOutcome) -> BatchOutcome:
    """Every recording in turn: processed, or its decided result settled; stops on Ctrl-C or a full disk."""
    progress.start_batch(len(planned))
    try:
        for entry in planned:
            stopping.checkpoint()  # a stop asked for during the last recording's final steps ends the batch here
            path = entry.item.path if isinstance(entry, _Work) else entry.input
            outcome.interrupted_at = path
            progress.start_file(str(path))
            if isinstance(entry, _Work):
                result = pipeline.process(entry.item, entry.folder, entry.previous)
            else:
                result = _settled(entry, settings, progress)
            outcome.results.append(result)
            progress.end_file(str(path), _describe(result))
        outcome.interrupted_at = None
        stopping.checkpoint()
    except KeyboardInterrupt:
        outcome.interrupted = True
        outcome.exit_code = EXIT_INTERRUPTED
        return outcome
    except DiskFullError as exc:  # every later recording would fail the same way
        outcome.exit_code, outcome.error = EXIT_NOTHING_RAN, str(exc)
        return outcome
    finally:
        progress.close()
    _set_exit_code(outcome)
    return outcome


def _settled(result: RecordingResult, settings: RunSettings, progress: Progress) -> RecordingResult:
    """An input decided without processing (done already, or refused); a done one still gets --keep/--remove."""
    if result.status == "skipped":  # --keep/--remove on stems an earlier run wrote
        try:
            write_remix(result, settings.output, progress)
            write_video_out(result, settings.output, progress)
        except AutosepError as exc:
            return RecordingResult.failed(result.input, str(exc))
    return result


def _set_exit_code(outcome: BatchOutcome) -> None:
    ok = sum(1 for r in outcome.results if r.ok)
    failed = len(outcome.results) - ok
    outcome.exit_code = EXIT_OK if failed == 0 else (EXIT_NOTHING_RAN if ok == 0 else EXIT_PARTIAL)


def _run_on_ray(planned: list[_Work | RecordingResult], settings: RunSettings, progress: Progress,
                outcome: BatchOutcome) -> BatchOutcome:
    """The processing loop of :func:`run_batch` on Ray workers (``ray_engine``); this process loads no model.
    Inputs decided without processing are answered here first; results keep the inputs' order."""
    from .ray_engine import run_on_ray, worker_label

    results: list[RecordingResult | None] = [None] * len(planned)
    progress.start_batch(len(planned))
    for index, entry in enumerate(planned):
        if not isinstance(entry, _Work):
            progress.start_file(str(entry.input))
            results[index] = _settled(entry, settings, progress)
            progress.end_file(str(entry.input), _describe(results[index]))
    todo = [index for index, entry in enumerate(planned) if isinstance(entry, _Work)]
    try:
        if todo:
            work = [(planned[i].item, planned[i].folder, planned[i].previous) for i in todo]
            # closed on the way out whatever happens: an interrupted run stops its workers there
            with contextlib.closing(run_on_ray(work, settings, progress)) as finished:
                for position, result in finished:
                    index = todo[position]
                    results[index] = result
                    name = str(planned[index].item.path)
                    progress.start_file(name)
                    progress.end_file(name, f"{_describe(result)} ({worker_label(result)})")
    except KeyboardInterrupt:
        outcome.interrupted, outcome.exit_code = True, EXIT_INTERRUPTED
    except SettingsError as exc:  # a pool the cluster cannot hold
        outcome.exit_code, outcome.error = EXIT_USAGE, str(exc)
    except AutosepError as exc:  # no cluster at the address, a node that cannot see the files, no model loads
        outcome.exit_code, outcome.error = EXIT_NOTHING_RAN, str(exc)
    finally:
        progress.close()
    outcome.results.extend(result for result in results if result is not None)
    if not outcome.interrupted and outcome.error is None:
        _set_exit_code(outcome)
    return outcome
