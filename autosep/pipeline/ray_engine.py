"""The Ray engine: a batch's remaining recordings processed on a Ray cluster, one separator per worker.

The driver lists, checks and skips the inputs exactly as a local run does (``batch``); only the processing of the
recordings that are left moves here. They go through Ray Data (``from_items`` + ``map_batches`` with an actor
pool, one recording in flight per actor so a worker whose models loaded late still gets its share): each actor
loads the tagger and separator once and processes whole recordings, writing straight into the output folder with
the same atomic writes as a local run (temporary file, then rename; the manifest last). The inputs and that
folder must therefore be at the same absolute path on every node; :func:`ray_placement.check_visible` proves it
first. Reaching the cluster: :mod:`ray_connect`; the run's own files: :mod:`ray_state`.

Faults stay per recording: anything a worker raises while handling a recording comes back as that recording's
failure, and the batch goes on. A worker process that dies (out of memory, node lost) is restarted by Ray, which
runs its recording again; the attempt counter in the state folder bounds that at ``retries`` re-runs (each one
reported on one line), after which the recording fails alone. On Ctrl-C or SIGTERM the driver asks the workers to
drop their recordings, which removes their temporaries, and stops.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import pickle
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .inputs import InputFile
from .manifest import Manifest
from .ray_connect import LOCAL, RayConnectError, RayUsageError, connect, import_ray
from .ray_placement import SharedStorageError, check_visible, live_nodes, pool_size
from .ray_state import STATE_FOLDER, RunState
from .ray_stream import is_client, stream, stream_through_client
from .settings import RunSettings
from .folder_lock import clear_stale_lock
from .write import partials, remove_partials

__all__ = ["LOCAL", "STATE_FOLDER", "RayConnectError", "RayUsageError", "RecordingWorker", "SharedStorageError",
           "run_on_ray", "worker_label"]

log = logging.getLogger("autosep")
STOP_POLL_S = 0.2  # how often a worker looks for the driver's stop request
STOP_WAIT_S = 10.0  # how long the driver waits for the workers to remove their temporaries after a stop


class RecordingWorker:
    """One Ray actor: loads the models once, then processes whole recordings (``batch_size=1``)."""

    # (the run's settings, the state folder, the driver's working directory), bound by :func:`run_on_ray`
    config: tuple[RunSettings, str, str]

    def __init__(self):
        from .pipeline import Pipeline

        settings, state, driver_cwd = self.config
        if os.path.isdir(driver_cwd):  # a model folder given as a relative path means the same here
            os.chdir(driver_cwd)
        self.pipeline = Pipeline.load(settings)
        self.state = RunState(Path(state))
        self.retries = settings.ray.retries
        self.where = {"engine": "ray", "host": socket.gethostname(), "pid": os.getpid()}
        self.busy = False
        try:
            import ray

            self.where["node_id"] = ray.get_runtime_context().get_node_id()
            self.where["node_ip"] = ray.util.get_node_ip_address()
        except Exception:  # outside Ray (the class used directly): the host is enough
            pass
        threading.Thread(target=self._stop_when_asked, daemon=True).start()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        results = [self._guarded(int(index), blob) for index, blob in zip(batch["index"], batch["work"])]
        return {"index": np.asarray(batch["index"]),
                "result": np.array([pickle.dumps(result) for result in results], dtype=object)}

    def process(self, item: InputFile, folder: Path, previous: Manifest | None):
        """Process one recording; a subclass may wrap this (e.g. to record or inject faults)."""
        return self.pipeline.process(item, folder, previous)

    def count_attempt(self, index: int, item: InputFile) -> int:
        """The attempt at recording ``index`` (``item``) this is (a subclass may wrap this too)."""
        return self.state.count_attempt(index)

    def _guarded(self, index: int, blob: bytes):
        """One recording, whatever happens in the bookkeeping around it: an exception is its failure."""
        from .pipeline import RecordingResult

        item = None
        try:
            item, folder, previous = pickle.loads(blob)
            return self._one(index, item, folder, previous)
        except Exception as exc:
            name = item.path if item is not None else f"recording {index}"
            result = RecordingResult.failed(Path(str(name)), f"{name}: the Ray worker on {self._node()} failed "
                                                             f"handling it: {type(exc).__name__}: {exc}")
            result.processed_by = dict(self.where)
            return result
        finally:
            self.busy = False

    def _one(self, index: int, item: InputFile, folder: Path, previous: Manifest | None):
        from .pipeline import RecordingResult

        if self.state.stop_requested:  # the driver is stopping: take nothing new
            return RecordingResult.failed(item.path, f"{item.path}: not started, the run was stopped")
        attempt = self.count_attempt(index, item)
        self.pipeline.processed_by = where = dict(self.where, attempt=attempt)
        if attempt > self.retries + 1:
            remove_partials(folder, any_process=True)  # the dead worker's: nobody else writes this folder
            result = RecordingResult.failed(
                item.path, f"{item.path}: its Ray worker died {attempt - 1} times while processing it (out of "
                           "memory? node lost?); not retried again (--ray-retries)")
        else:
            self.busy = True
            result = self.process(item, folder, previous)
        result.processed_by = where
        return result

    def _node(self) -> str:
        return self.where.get("node_ip") or self.where["host"]

    def _stop_when_asked(self) -> None:
        """Interrupt the recording in progress (Ctrl-C in the actor: its temporaries are removed) once the
        driver asks the workers to stop."""
        while not self.state.stop_requested:
            time.sleep(STOP_POLL_S)
        while not self.busy:  # idle now: a recording taken just as the request came is interrupted too
            time.sleep(STOP_POLL_S)
        _thread.interrupt_main()


def worker_label(result: Any) -> str:
    """Where a result was processed, for the progress line: the node's address and id, and the worker's pid."""
    where = getattr(result, "processed_by", None) or {}
    if not where:
        return "no worker result"
    node = where.get("node_ip") or where.get("host", "?")
    node_id = str(where.get("node_id") or "")[:8]
    return f"node {node}{f' {node_id}' if node_id else ''}, pid {where.get('pid', '?')}"


def run_on_ray(work: Sequence[tuple[InputFile, Path, Manifest | None]], settings: RunSettings, progress: Any,
               worker: type[RecordingWorker] | None = None) -> Iterator[tuple[int, Any]]:
    """Process ``work`` (input, output folder, the manifest already there) on Ray; yields ``(index into work,
    RecordingResult)`` as each recording finishes, after forwarding its warnings to ``progress``.

    Raises RayUsageError (a pool no node can hold, Ray Client missing), RayConnectError (the address did not
    answer), SharedStorageError (a node cannot see an input or the output folder), or AutosepError when the
    workers could not start (their models failed to load). Closing the generator early (Ctrl-C) stops the workers.
    """
    ray = import_ray()
    worker = worker or RecordingWorker  # looked up now, so a subclass patched in for a test is used
    settings = _absolute(settings)
    work = [(_absolute_input(item), Path(os.path.abspath(folder)), previous) for item, folder, previous in work]
    started = connect(ray, settings.ray)
    state = None
    finished: set[int] = set()
    try:
        nodes = live_nodes(ray)
        pool = pool_size(nodes, settings.ray, len(work))
        state = RunState.create(settings.output.out)
        check_visible(ray, nodes, state.folder, [item.path for item, _, _ in work])
        progress.stage(f"ray: {pool.workers} worker(s), {pool.cpus:g} CPU and {pool.gpus:g} GPU each, "
                       f"{len(nodes)} live node(s)")
        args = (work, settings, str(state.folder), worker, pool, os.getcwd())
        per_worker: Counter[str] = Counter()
        with _RetryReporter(state, work, settings.ray.retries):
            for index, result in (stream_through_client if is_client(ray) else stream)(ray, *args):
                finished.add(index)
                per_worker[worker_label(result)] += 1
                for warning in result.warnings:
                    progress.warn(warning)
                yield index, result
        if per_worker:
            progress.stage("ray: recordings per worker: "
                           + "; ".join(f"{w}: {n}" for w, n in sorted(per_worker.items())))
        for index in sorted(set(range(len(work))) - finished):  # a block Ray Data dropped: never silent
            yield index, _no_result(work[index][0])
    except (KeyboardInterrupt, GeneratorExit):
        if state is not None:
            _stop_workers(state, [work[i][1] for i in range(len(work)) if i not in finished])
        raise
    finally:
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()
        for index in set(range(len(work))) - finished:  # no worker writes these folders any more
            remove_partials(work[index][1], any_process=True)
            clear_stale_lock(work[index][1])
        if state is not None:
            state.remove()


def _stop_workers(state: RunState, folders: list[Path]) -> None:
    """Ask the workers to stop and give them a moment to remove the temporaries of the recordings they drop."""
    state.request_stop()
    until = time.monotonic() + STOP_WAIT_S
    time.sleep(4 * STOP_POLL_S)  # every worker has looked for the request by then
    while time.monotonic() < until and any(partials(folder) for folder in folders):
        time.sleep(STOP_POLL_S)


class _RetryReporter(threading.Thread):
    """Reports, on one line each (an error-level line, so ``-q`` shows it too), a recording that is run again
    because its worker died, as soon as the new attempt starts."""

    def __init__(self, state: RunState, work: Sequence[tuple[InputFile, Path, Manifest | None]], retries: int):
        super().__init__(daemon=True)
        self.state, self.work, self.retries = state, work, retries
        self.done = threading.Event()
        self.reported: dict[int, int] = {}

    def __enter__(self) -> "_RetryReporter":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join(timeout=2)
        # A retry that started and finished between two polls (a short recording on an idle machine) is still
        # reported: the attempt files stay until the batch's state is removed, after this.
        self.report_new_attempts()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.report_new_attempts()

    def report_new_attempts(self) -> None:
        for index, attempt in self.state.attempts().items():
            if 1 < attempt <= self.retries + 1 and self.reported.get(index, 1) < attempt:
                self.reported[index] = attempt
                log.error("%s: its Ray worker died; running it again (attempt %d of %d, --ray-retries)",
                          self.work[index][0].path, attempt, self.retries + 1)


def _no_result(item: InputFile):
    from .pipeline import RecordingResult

    return RecordingResult.failed(item.path, f"{item.path}: its Ray task failed without a result (see the Ray logs "
                                             "of the worker's node: ray logs, or /tmp/ray/session_latest/logs)")


def _absolute_input(item: InputFile) -> InputFile:
    return replace(item, path=Path(os.path.abspath(item.path)), root=Path(os.path.abspath(item.root)))


def _absolute(settings: RunSettings) -> RunSettings:
    """``settings`` with the output folder made absolute here: a worker's working directory is not the driver's.
    (Model paths stay as given, as the manifests record them; the workers resolve them from the driver's working
    directory when their node has it.)"""
    return replace(settings, output=replace(settings.output, out=Path(os.path.abspath(settings.output.out))))
