"""Batch throughput: the same folder of recordings run locally and with ``--ray`` at 1, 2, ... workers.

Runs on the CPU with the tiny random-weight models of the test fixtures (built into a temporary folder; nothing
is downloaded) and prints recordings per minute, per worker, and the speed-up over the local run. The tiny
models make the per-recording work small, so the figures show the engine's overhead and scaling on this
machine, not a GPU cluster's: there, each worker holds one GPU and a recording takes minutes, which makes the
engine's fixed costs (starting Ray, loading the models once per worker) negligible.

    python benchmarks/ray_throughput.py --recordings 8 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from autosep.cli import main as autosep  # noqa: E402
from tiny_models.audioldm2 import build_tiny_audioldm2  # noqa: E402


def write_recordings(folder: Path, count: int, seconds: float) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * 200 * (i + 1) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"take{i:03d}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")


def timed_run(args: list[str]) -> float:
    started = time.perf_counter()
    code = autosep(args)
    if code != 0:
        raise SystemExit(f"autosep exited {code} for {' '.join(args)}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.12, help="length of each recording")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5)
    options = parser.parse_args()

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)  # the local run uses one thread, like each 1-CPU Ray worker
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_audioldm2(root / "tiny-audioldm2")
        write_recordings(root / "in", options.recordings, options.seconds)
        common = [str(root / "in"), "-q", "--model", str(model), "-s", "low hum", "-s", "high whistle",
                  "--steps", str(options.steps), "--window", "2.56", "--device", "cpu", "--overwrite"]
        rows = [("local (1 process, 1 thread)", 1, timed_run([*common, "-o", str(root / "local")]))]
        import ray

        from autosep.pipeline.ray_connect import start_private_instance

        started = time.perf_counter()
        # One instance for every run (as a cluster would be), so each row pays only for its workers.
        start_private_instance(ray, num_cpus=max(options.workers))
        ray_start = time.perf_counter() - started
        for workers in options.workers:
            seconds = timed_run([*common, "-o", str(root / f"ray{workers}"), "--ray", "--ray-workers", str(workers)])
            rows.append((f"--ray --ray-workers {workers}", workers, seconds))
        ray.shutdown()

    table = Table(title=f"{options.recordings} recordings of {options.seconds:g} s, 2 sources, {options.steps} steps, "
                        f"tiny AudioLDM2, {os.cpu_count()} CPUs")
    for column in ("engine", "workers", "wall time (s)", "recordings / min", "per worker / min", "speed-up"):
        table.add_column(column, justify="right" if column != "engine" else "left")
    local_seconds = rows[0][2]
    for name, workers, seconds in rows:
        per_minute = 60 * options.recordings / seconds
        table.add_row(name, str(workers), f"{seconds:.1f}", f"{per_minute:.1f}", f"{per_minute / workers:.1f}",
                      f"{local_seconds / seconds:.2f}x")
    Console(width=140).print(table)
    print(f"Starting the local Ray instance took {ray_start:.1f} s (not in the rows); each --ray row includes "
          "starting its workers and loading the models once per worker.")


if __name__ == "__main__":
    main()
