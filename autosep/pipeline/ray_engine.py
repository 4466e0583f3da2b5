"""The Ray engine: a batch's remaining recordings processed on a Ray cluster, one separator per worker.

The driver lists, checks and skips the inputs exactly as a local run does (``batch``); only the processing of the
recordings that are left moves here. They go through Ray Data (``from_items`` + ``map_batches`` with an actor
pool): each actor loads the tagger and separator once and processes whole recordings, one at a time, writing
straight into the output folder with the same atomic writes as a local run (temporary file, then rename; the
manifest last). That folder must therefore be one every node sees; :func:`check_shared_storage` proves it first.

Faults: a recording that fails comes back as a failed result and the batch goes on. A worker process that dies
(out of memory, node lost) is restarted by Ray, which runs its recording again; an attempt counter kept in the
output folder bounds that at ``retries`` re-runs, after which the recording fails alone with a message saying so.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import AutosepError, SettingsError
from .inputs import InputFile
from .manifest import Manifest
from .settings import RAY_INSTALL_HINT, RaySettings, RunSettings

LOCAL = "local"  # --ray without an address: start a Ray instance on this machine
STATE_FOLDER = ".autosep-ray"  # inside the output folder: the storage marker and the attempt counters


class RayUsageError(SettingsError):
    """``--ray`` cannot be used as asked (Ray missing, a pool the cluster cannot hold): a usage error, exit 2."""


class SharedStorageError(AutosepError):
    """A worker's node cannot see the output folder the driver wrote to."""


def import_ray():
    """Ray, or a usage error with the install command (Ray is an optional extra)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never report usage from a user's batch
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUsageError(f"--ray needs Ray, which is not installed here: {RAY_INSTALL_HINT}") from None
    return ray


def pool_size(resources: dict[str, float], settings: RaySettings, recordings: int) -> tuple[int, float, float]:
    """(workers, CPUs each, GPUs each) for a cluster with ``resources`` (``ray.cluster_resources()``)."""
    gpus_each = settings.gpus_per_worker
    if gpus_each is None:
        gpus_each = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    if settings.workers is not None:
        workers = settings.workers
    elif gpus_each > 0:
        workers = int(resources.get("GPU", 0) // gpus_each)
    else:
        workers = int(resources.get("CPU", 0) // settings.cpus_per_worker)
    if workers < 1:
        raise RayUsageError(
            f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs) cannot hold one "
            f"worker of {settings.cpus_per_worker:g} CPUs and {gpus_each:g} GPUs; lower --ray-cpus-per-worker "
            "or --ray-gpus-per-worker")
    return max(1, min(workers, recordings)), settings.cpus_per_worker, gpus_each


def connect(ray, address: str) -> bool:
    """Join the cluster at ``address``, or start a local instance; True when this call started Ray.

    A Ray session that is already initialised (a notebook, a test module) is reused as it is.
    """
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address == LOCAL:
        # One machine: everything on loopback, so no interface is probed or exposed.
        ray.init(_node_ip_address="127.0.0.1", **quiet)
    else:
        ray.init(address=address, **quiet)
    return True


def _marker_seen(path: str) -> tuple[str, bool]:
    return socket.gethostname(), os.path.exists(path)


def check_shared_storage(ray, state: Path) -> None:
    """Write a marker in the output folder and have a task on every alive node look for it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = state / f"storage-check-{uuid.uuid4().hex[:8]}"
    marker.write_text("autosep\n")
    try:
        probe = ray.remote(num_cpus=0)(_marker_seen)
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                           .remote(str(marker.resolve())) for node in nodes])
    finally:
        marker.unlink(missing_ok=True)
    blind = sorted(host for host, seen in answers if not seen)
    if blind:
        raise SharedStorageError(
            f"the output folder {state.parent} is not visible on Ray node(s) {', '.join(blind)}: with --ray the "
            "workers write the stems themselves, so -o must be a folder every node sees at the same path "
            "(a shared filesystem such as NFS)")


class RecordingWorker:
    """One Ray actor: loads the models once, then processes whole recordings (``batch_size=1``)."""

    config: tuple[RunSettings, str]  # (the run's settings, the state folder), bound by :func:`run_on_ray`

    def __init__(self):
        from .pipeline import Pipeline

        settings, state = self.config
        self.pipeline = Pipeline.load(settings)
        self.state = Path(state)
        self.retries = settings.ray.retries
        self.where = {"engine": "ray", "host": socket.gethostname(), "pid": os.getpid()}
        try:
            import ray

            self.where["node_id"] = ray.get_runtime_context().get_node_id()
        except Exception:  # outside Ray (the class used directly): the host is enough
            pass

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        results = [self._one(int(index), *pickle.loads(blob)) for index, blob in zip(batch["index"], batch["work"])]
        return {"index": np.asarray(batch["index"]),
                "result": np.array([pickle.dumps(result) for result in results], dtype=object)}

    def process(self, item: InputFile, folder: Path, previous: Manifest | None):
        """Process one recording; a subclass may wrap this (e.g. to record or inject faults)."""
        return self.pipeline.process(item, folder, previous)

    def _one(self, index: int, item: InputFile, folder: Path, previous: Manifest | None):
        from .pipeline import RecordingResult

        attempt = self._count_attempt(index)
        if attempt > self.retries + 1:
            return RecordingResult.failed(item.path, f"{item.path}: its Ray worker died {attempt - 1} times while "
                                                     "processing it (out of memory? node lost?); not retried again "
                                                     "(--ray-retries)")
        self.pipeline.processed_by = dict(self.where, attempt=attempt)
        result = self.process(item, folder, previous)
        result.processed_by = self.pipeline.processed_by
        return result

    def _count_attempt(self, index: int) -> int:
        """This run's attempts at recording ``index``, this one included (kept on the shared storage)."""
        counter = self.state / f"attempts-{index}"
        try:
            attempt = int(counter.read_text() or 0) + 1
        except (FileNotFoundError, ValueError):
            attempt = 1
        partial = counter.with_name(f".{counter.name}.{os.getpid()}")
        partial.write_text(str(attempt))
        os.replace(partial, counter)
        return attempt


def run_on_ray(work: Sequence[tuple[InputFile, Path, Manifest | None]], settings: RunSettings, progress: Any,
               worker: type[RecordingWorker] | None = None) -> Iterator[tuple[int, Any]]:
    """Process ``work`` (input, output folder, the manifest already there) on Ray; yields ``(index into work,
    RecordingResult)`` as recordings finish.

    Raises RayUsageError (a pool the cluster cannot hold), SharedStorageError, or AutosepError when the workers
    could not start (their models failed to load).
    """
    ray = import_ray()
    worker = worker or RecordingWorker  # looked up now, so a subclass patched in for a test is used
    ray_settings: RaySettings = settings.ray
    started = connect(ray, ray_settings.address)
    out_root = settings.output.out
    state = out_root / STATE_FOLDER / uuid.uuid4().hex[:12]
    try:
        state.mkdir(parents=True, exist_ok=True)
        check_shared_storage(ray, state)
        workers, cpus, gpus = pool_size(ray.cluster_resources(), ray_settings, len(work))
        progress.stage(f"ray: {workers} worker(s), {cpus:g} CPU and {gpus:g} GPU each, "
                       f"{len(ray.nodes())} node(s)")
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        dataset = ray.data.from_items([{"index": i, "work": pickle.dumps(entry)} for i, entry in enumerate(work)],
                                      override_num_blocks=len(work))
        # The run's settings travel inside the class (pickled with it) rather than as constructor arguments,
        # which Ray would keep in the object store, where a restarted actor might no longer find them.
        bound = type(worker.__name__, (worker,), {"config": (settings, str(state))})
        results = dataset.map_batches(bound, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                                      num_cpus=cpus, num_gpus=gpus)
        per_worker: Counter[str] = Counter()
        try:
            for row in results.iter_rows():
                result = pickle.loads(row["result"])
                where = getattr(result, "processed_by", None) or {}
                per_worker[f"{where.get('host', '?')}:{where.get('pid', '?')}"] += 1
                yield int(row["index"]), result
        except ray.exceptions.RayError as exc:
            raise AutosepError(f"the Ray workers could not run ({_first_line(exc)}); check that the models load "
                               "on the workers' nodes (autosep models download ...)") from None
        if per_worker:
            progress.stage("ray: recordings per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(per_worker.items())))
    finally:
        shutil.rmtree(state, ignore_errors=True)
        try:
            (out_root / STATE_FOLDER).rmdir()  # only if no other run is using it
        except OSError:
            pass
        if started:
            ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return next((line.strip() for line in reversed(text) if line.strip()), type(exc).__name__)
