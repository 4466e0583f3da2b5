"""The recordings through Ray Data, streamed back one by one as each is done.

On a driver that is a Ray node (a private instance, ``--ray auto``, ``--ray HOST:PORT``) Ray Data runs here. Over
the Ray client (``ray://``) Ray Data cannot run in the client, so a coordinator actor on the cluster runs it and
the client collects what it has finished, waiting at most half a second per call.
"""

from __future__ import annotations

import pickle
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import AutosepError
from .ray_connect import last_line
from .ray_placement import Pool
from .settings import RunSettings


def stream(ray, work: Sequence[tuple], settings: RunSettings, state: str, worker: type, pool: Pool,
           driver_cwd: str) -> Iterator[tuple[int, Any]]:
    """``(index into work, RecordingResult)`` as each recording is done: one recording per batch, in flight one
    per actor (a worker whose models loaded late still gets its share), nothing prefetched (no result waits
    behind the next)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.max_errored_blocks = -1  # an escaped error loses one recording (reported), never the batch
    dataset = ray.data.from_items([{"index": i, "work": pickle.dumps(entry)} for i, entry in enumerate(work)],
                                  override_num_blocks=len(work))
    # The run's settings travel inside the class (pickled with it) rather than as constructor arguments,
    # which Ray would keep in the object store, where a restarted actor might no longer find them.
    bound = type(worker.__name__, (worker,), {"config": (settings, state, driver_cwd)})
    strategy = ray.data.ActorPoolStrategy(min_size=pool.ready, max_size=pool.workers,
                                          max_tasks_in_flight_per_actor=1)
    results = dataset.map_batches(bound, batch_size=1, compute=strategy, num_cpus=pool.cpus, num_gpus=pool.gpus)
    try:
        for batch in results.iter_batches(batch_size=1, prefetch_batches=0, batch_format="numpy"):
            for index, blob in zip(batch["index"], batch["result"]):
                yield int(index), pickle.loads(blob)
    except ray.exceptions.RayError as exc:
        raise AutosepError(f"the Ray workers could not run ({last_line(exc)}); check that the models load "
                           "on the workers' nodes (autosep models download ...)") from None


def stream_through_client(ray, *args) -> Iterator[tuple[int, Any]]:
    """:func:`stream` run by a coordinator actor on the cluster, for a Ray client driver."""
    coordinator = ray.remote(num_cpus=0)(Coordinator).remote(*args)
    try:
        while True:
            finished, error, done = ray.get(coordinator.take.remote(0.5))
            yield from finished
            if error:
                raise AutosepError(error)
            if done:
                return
    finally:
        ray.kill(coordinator)


class Coordinator:
    """Runs :func:`stream` on a cluster node and hands out what it finished (``take``)."""

    def __init__(self, *args):
        import ray

        self.results: queue.Queue = queue.Queue()
        self.error: str | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(ray, *args), daemon=True).start()

    def _run(self, ray, *args) -> None:
        try:
            for entry in stream(ray, *args):
                self.results.put(entry)
        except Exception as exc:  # handed to the driver, which stops there
            self.error = str(exc) if isinstance(exc, AutosepError) else f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def take(self, wait_s: float) -> tuple[list[tuple[int, Any]], str | None, bool]:
        """(results finished since the last call, the error that ended the stream, whether it ended)."""
        finished = []
        try:
            finished.append(self.results.get(timeout=wait_s))
            while True:
                finished.append(self.results.get_nowait())
        except queue.Empty:
            pass
        done = self.done.is_set() and self.results.empty()
        return finished, self.error if done else None, done


def is_client(ray) -> bool:
    """Whether this process reaches Ray through the Ray client (``ray://``)."""
    try:
        return bool(ray.util.client.ray.is_connected())
    except AttributeError:
        return False

