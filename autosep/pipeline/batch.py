"""A batch: expand the inputs, check the output folder, load the models once, process every recording.

Shared by the command line and the Python API. Exit codes: 0 all inputs done, 1 nothing could run,
2 usage error, 3 some inputs failed and the rest were done, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AutosepError
from .inputs import InputFile, collect_inputs
from .manifest import MANIFEST_NAME
from .naming import is_inside
from .recording import Pipeline, PipelineOptions, RecordingResult
from .progress import Progress
from .write import read_json

if TYPE_CHECKING:
    from .ray_engine import RaySettings

EXIT_OK, EXIT_NOTHING_RAN, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclass
class BatchOutcome:
    results: list[RecordingResult] = field(default_factory=list)
    exit_code: int = EXIT_OK
    error: str | None = None  # why nothing could run
    interrupted: bool = False
    interrupted_at: Path | None = None  # the recording that was being processed


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


def _earlier_output(item: InputFile, out_root: Path) -> bool:
    """Whether ``item``, found by walking a folder or glob, is a stem an earlier run wrote (beside its manifest)."""
    if item.path.parent == item.root or not is_inside(item.path, out_root):
        return False
    manifest = read_json(item.path.parent / MANIFEST_NAME)
    if not manifest or "manifest_version" not in manifest:
        return False
    entries = list(manifest.get("sources") or []) + [manifest.get("residual")]
    written = [entry for entry in entries if isinstance(entry, dict)]
    return item.path.name in {str(entry.get("file")) for entry in written}


def _already_done(folder: Path, item: InputFile) -> bool:
    manifest = read_json(folder / MANIFEST_NAME)
    if not manifest:
        return False
    try:
        return Path(str(manifest.get("input", {}).get("path", ""))).resolve() == item.path.resolve()
    except OSError:
        return False


def _describe(result: RecordingResult) -> str:
    if not result.ok:
        return f"failed: {result.message}"
    return {"skipped": "already done (manifest.json exists; --overwrite redoes it)"}.get(result.status, result.status)


def run_batch(inputs: list[str], options: PipelineOptions, progress: Progress | None = None,
              pipeline: Pipeline | None = None, ray: RaySettings | None = None) -> BatchOutcome:
    """Process ``inputs`` (files, folders, globs). ``pipeline`` may be passed with models already loaded.

    With ``ray``, the recordings still to do are processed by Ray workers (``ray_engine``) instead of here;
    everything before (inputs, output checks, skips) and after (results, exit code) is the same.
    """
    progress = progress or Progress()
    outcome = BatchOutcome()
    try:
        options.validate()
    except AutosepError as exc:
        return BatchOutcome(exit_code=EXIT_USAGE, error=str(exc))

    files, missing = collect_inputs(inputs)
    out_root = Path(options.out)
    # Stems from an earlier run inside an input folder (autosep music/ -o music/stems) are not new inputs;
    # a file named directly, or -o pointing at the input folder itself, is still processed.
    # Stems of earlier runs written into the input folder itself (autosep music/ -o music/) are not inputs either.
    files = [item for item in files
             if not _inside_output_below_root(item, out_root) and not _earlier_output(item, out_root)]
    for absent in missing:
        outcome.results.append(RecordingResult(Path(absent.given), None, "failed", f"{absent.given}: {absent.reason}"))
    if not files:
        outcome.exit_code = EXIT_NOTHING_RAN
        outcome.error = "no input found: " + "; ".join(r.message for r in outcome.results) if outcome.results \
            else "no input given"
        return outcome
    for result in outcome.results:  # say so now, not only in the summary after a long model load and batch
        progress.warn(result.message)

    if not options.dry_run:
        try:
            check_output_root(out_root)
        except AutosepError as exc:
            outcome.exit_code, outcome.error = EXIT_NOTHING_RAN, str(exc)
            return outcome

    # Two inputs must never share an output folder (mix.wav and mix.flac, or a/x.wav and b/x.wav given as
    # files): the first keeps it, the others are refused rather than overwriting it.
    planned: list[tuple[InputFile, Path]] = []
    owners: dict[str, InputFile] = {}
    for item in files:
        folder = out_root / item.relative
        key = os.path.normcase(os.path.abspath(folder))
        if key in owners:
            outcome.results.append(RecordingResult(
                item.path, None, "failed",
                f"{item.path}: refused, it would write to the same output folder {folder} as {owners[key].path}; "
                "rename one of them or process them with different -o folders"))
            continue
        owners[key] = item
        planned.append((item, folder))

    pending = [item for item, folder in planned if options.overwrite or options.dry_run
               or not _already_done(folder, item)]
    if ray is not None and not options.dry_run:
        return _run_on_ray(planned, pending, options, ray, progress, outcome)
    if pipeline is None and pending:
        try:
            pipeline = Pipeline.load(options, progress)
        except AutosepError as exc:
            outcome.exit_code, outcome.error = EXIT_NOTHING_RAN, str(exc)
            return outcome
        except Exception as exc:  # a broken model folder fails in many ways: say which model, not a traceback
            outcome.exit_code = EXIT_NOTHING_RAN
            tagger = "" if options.sources is not None else f"tagger {options.tagger}, "
            outcome.error = (f"could not load the models ({tagger}separator {options.model}): "
                             f"{type(exc).__name__}: {exc}")
            return outcome
    elif pipeline is None:
        pipeline = Pipeline(options, progress=progress)  # everything is done already; nothing to load

    progress.start_batch(len(planned))
    try:
        for item, _folder in planned:
            name = str(item.path)
            outcome.interrupted_at = item.path
            progress.start_file(name)
            result = pipeline.process(item)
            outcome.results.append(result)
            progress.end_file(name, _describe(result))
        outcome.interrupted_at = None
    except KeyboardInterrupt:
        outcome.interrupted = True
        outcome.exit_code = EXIT_INTERRUPTED
        return outcome
    finally:
        progress.close()

    _set_exit_code(outcome)
    return outcome


def _set_exit_code(outcome: BatchOutcome) -> None:
    ok = sum(1 for r in outcome.results if r.ok)
    failed = len(outcome.results) - ok
    outcome.exit_code = EXIT_OK if failed == 0 else (EXIT_NOTHING_RAN if ok == 0 else EXIT_PARTIAL)


def _run_on_ray(planned: list[tuple[InputFile, Path]], pending: list[InputFile], options: PipelineOptions,
                ray: RaySettings, progress: Progress, outcome: BatchOutcome) -> BatchOutcome:
    """The processing loop of :func:`run_batch`, on Ray: finished recordings are answered here, without models."""
    from .ray_engine import RayUsageError, run_on_ray

    todo = {id(item) for item in pending}
    results: list[RecordingResult | None] = [None] * len(planned)
    local = Pipeline(options, progress=progress)  # no models: it only reports recordings that are already done
    for index, (item, _folder) in enumerate(planned):
        if id(item) not in todo:
            results[index] = local.process(item)
    remaining = [index for index, (item, _folder) in enumerate(planned) if id(item) in todo]
    progress.start_batch(len(planned))
    for index, (item, _folder) in enumerate(planned):
        if results[index] is not None:
            progress.start_file(str(item.path))
            progress.end_file(str(item.path), _describe(results[index]))
    try:
        if remaining:
            for position, result in run_on_ray([planned[i][0] for i in remaining], options, ray,
                                               Path(options.out), progress):
                index = remaining[position]
                results[index] = result
                name = str(planned[index][0].path)
                where = getattr(result, "processed_by", None) or {}
                progress.start_file(name)
                progress.end_file(name, f"{_describe(result)} (worker {where.get('host', '?')}:{where.get('pid', '?')})")
    except KeyboardInterrupt:
        outcome.results.extend(r for r in results if r is not None)
        outcome.interrupted, outcome.exit_code = True, EXIT_INTERRUPTED
        return outcome
    except RayUsageError as exc:
        outcome.exit_code, outcome.error = EXIT_USAGE, str(exc)
        return outcome
    except AutosepError as exc:
        outcome.results.extend(r for r in results if r is not None)
        outcome.exit_code, outcome.error = EXIT_NOTHING_RAN, str(exc)
        return outcome
    finally:
        progress.close()
    outcome.results.extend(r for r in results if r is not None)
    _set_exit_code(outcome)
    return outcome
