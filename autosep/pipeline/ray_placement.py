"""Where a ``--ray`` batch can run: the worker pool the live nodes can hold, and what every node can see.

Both are decided before any worker starts, so a pool no node can place or a node that cannot see the files fails
at once with words, rather than waiting (Ray would wait for resources for ever) or failing recording by recording.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..errors import AutosepError
from .ray_connect import RayUsageError
from .settings import RaySettings


class SharedStorageError(AutosepError):
    """A node of the cluster cannot see the output folder or an input the driver sees (exit 1)."""


@dataclass(frozen=True)
class Node:
    """A live Ray node: its id, address and resources (``ray.nodes()``)."""

    node_id: str
    ip: str
    cpus: float
    gpus: float

    @property
    def name(self) -> str:
        """How messages name it: the address and the start of the id (hosts on one machine share a name)."""
        return f"{self.ip} (node {self.node_id[:8]})"


class Pool(NamedTuple):
    """The worker pool a batch asks Ray Data for."""

    workers: int  # at most (the actor pool's max_size)
    ready: int  # what the live nodes hold now (its min_size: more start if nodes join)
    cpus: float  # each
    gpus: float  # each


def live_nodes(ray) -> list[Node]:
    """The nodes that are alive now (``ray.nodes()`` also lists dead ones)."""
    return [Node(entry["NodeID"], entry.get("NodeManagerAddress", "?"), float(entry["Resources"].get("CPU", 0)),
                 float(entry["Resources"].get("GPU", 0)))
            for entry in ray.nodes() if entry.get("Alive")]


def pool_size(nodes: list[Node], settings: RaySettings, recordings: int) -> Pool:
    """The :class:`Pool` for the live ``nodes`` and this many ``recordings``.

    A worker must fit on one node, so the pool is counted node by node; a pool that no node can hold is refused,
    naming the largest node.
    """
    gpus_each = settings.gpus_per_worker
    if gpus_each is None:
        gpus_each = 1.0 if any(node.gpus >= 1 for node in nodes) else 0.0
    cpus_each = settings.cpus_per_worker
    held = sum(_fits(node, cpus_each, gpus_each) for node in nodes)
    if held < 1:
        largest = max(nodes, key=lambda n: (n.gpus, n.cpus) if gpus_each else (n.cpus, n.gpus), default=None)
        size = "no live node" if largest is None else (
            f"the largest node, {largest.name}, has {largest.cpus:g} CPUs and {largest.gpus:g} GPUs")
        raise RayUsageError(
            f"no Ray node can hold one worker of {cpus_each:g} CPUs and {gpus_each:g} GPUs ({size}); lower "
            "--ray-cpus-per-worker or --ray-gpus-per-worker, or add a larger node", "--ray-cpus-per-worker")
    wanted = settings.workers if settings.workers is not None else held
    wanted = max(1, min(wanted, recordings))
    return Pool(wanted, min(wanted, held), cpus_each, gpus_each)


def _fits(node: Node, cpus_each: float, gpus_each: float) -> int:
    by_cpu = int(node.cpus // cpus_each) if cpus_each > 0 else 10**6
    by_gpu = int(node.gpus // gpus_each) if gpus_each > 0 else 10**6
    return min(by_cpu, by_gpu)


def _missing_here(paths: list[str]) -> list[str]:
    """Runs on a node: which of ``paths`` it cannot see."""
    return [path for path in paths if not os.path.exists(path)]


def check_visible(ray, nodes: list[Node], state: Path, inputs: list[Path]) -> None:
    """Have a task on every live node look for the output folder (a marker the driver writes in it) and the
    inputs, by their absolute paths; the first node that lacks any is named with what it lacks."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = state / f"storage-check-{uuid.uuid4().hex[:8]}"
    marker.write_text("autosep\n")
    paths = [os.path.abspath(marker), *(os.path.abspath(path) for path in inputs)]
    try:
        probe = ray.remote(num_cpus=0)(_missing_here)
        answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
                           .remote(paths) for node in nodes])
    finally:
        marker.unlink(missing_ok=True)
    for node, missing in zip(nodes, answers):
        if missing:
            raise SharedStorageError(_lacks(node, state.parent.parent, paths[0], missing))


def _lacks(node: Node, out: Path, marker: str, missing: list[str]) -> str:
    what = []
    if marker in missing:
        what.append(f"the output folder {out}")
    inputs = [path for path in missing if path != marker]
    if inputs:
        shown = ", ".join(inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
        what.append(f"{len(inputs)} input(s): {shown}")
    return (f"Ray node {node.name} cannot see {' nor '.join(what)}: with --ray the workers read the inputs and "
            "write the stems themselves, so the inputs and -o must be on storage every node sees at the same "
            "path (a shared filesystem such as NFS)")
