"""Startup time of the commands that load no model, and peak memory of ``autosep tag`` on long files.

    python benchmarks/startup_and_tag_memory.py [--tree PATH] [--minutes 1 10]

Prints a table. Startup: best wall time of 3 runs of ``autosep --help``, ``autosep models list``,
``autosep missing.wav`` and ``autosep tag missing.wav`` (offline, empty caches), and whether torch, diffusers or
transformers were imported. Memory: peak RSS of ``autosep tag FILE`` on generated stereo 44.1 kHz recordings,
with a tiny random-weight Cnn14 (the real checkpoint's network at narrow widths; memory is the audio's, not the
model's). ``--tree`` measures another checkout (e.g. an older commit exported with ``git archive``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "diffusers", "transformers")
PROBE = ("import json, sys\nfrom autosep.cli import main\ncode = main(sys.argv[1:])\n"
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")


def environment(tree: Path, work: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(tree), HOME=str(work / "home"), AUTOSEP_CACHE=str(work / "cache"),
                HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1")


def startup(tree: Path, work: Path) -> list[tuple[str, float, str]]:
    rows = []
    for args in (["--help"], ["models", "list"], ["missing.wav"], ["tag", "missing.wav"]):
        best, heavy = float("inf"), "?"
        for _ in range(3):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=work, env=environment(tree, work),
                                  capture_output=True, text=True)
            best = min(best, time.perf_counter() - start)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
            heavy = ", ".join(json.loads(lines[-1])) if lines else "?"
        rows.append(("autosep " + " ".join(args), best, heavy or "none"))
    return rows


_FIXTURES = """
import sys
from pathlib import Path
import numpy as np, soundfile as sf, torch
from autosep.taggers.panns import CNN14_FILENAME, build_cnn14
work, minutes = Path(sys.argv[1]), [float(m) for m in sys.argv[2:]]
torch.manual_seed(0)
torch.save({"model": build_cnn14(527, (2, 2, 4, 4, 4, 8)).state_dict()}, work / CNN14_FILENAME)
for length in minutes:
    rate = 44100
    t = np.arange(int(length * 60 * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(work / f"{length:g}min.wav", np.stack([mono, 0.8 * mono], axis=1).astype(np.float32), rate,
             subtype="PCM_16")
"""


def tag_memory(tree: Path, work: Path, minutes: list[float]) -> list[tuple[float, float, float]]:
    # The recordings and the checkpoint are made in a child process: this one stays small, so the children it
    # starts (whose peak RSS counts the pages they were forked with) measure only autosep's own memory.
    subprocess.run([sys.executable, "-c", _FIXTURES, str(work), *map(str, minutes)], env=environment(tree, work),
                   check=True)
    checkpoint = work / "Cnn14_mAP=0.431.pth"
    rows = []
    for length in minutes:
        path = work / f"{length:g}min.wav"
        code = ("import resource, sys\nfrom autosep.cli import main\nmain(sys.argv[1:])\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, "tag", str(path), "--tagger-model", str(checkpoint),
                               "--device", "cpu", "--json"], cwd=work, env=environment(tree, work),
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak = int(proc.stdout.strip().splitlines()[-1]) / 1024
        rows.append((length, peak, wall))
        path.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "home").mkdir()
        print(f"tree: {args.tree}\n")
        print("| command | best of 3 (s) | heavy modules imported |\n|---|---:|---|")
        for name, seconds, heavy in startup(args.tree, work):
            print(f"| `{name}` | {seconds:.2f} | {heavy} |")
        print("\n| `autosep tag` on | peak RSS (MB) | wall (s) |\n|---|---:|---:|")
        for length, peak, wall in tag_memory(args.tree, work, args.minutes):
            print(f"| {length:g} min stereo 44.1 kHz | {peak:.0f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
