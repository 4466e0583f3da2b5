"""How long loading takes and how much memory it peaks at, with and without accelerate.

Without accelerate, diffusers cannot create a model with its weights on the meta device: it allocates every
weight, fills it, and then copies the checkpoint over it (and logs a warning). With accelerate (a dependency of
autosep) the checkpoint's tensors are put in place directly. "without accelerate" is measured by hiding the
installed package from diffusers' availability check in that process only.

Each measurement runs in a fresh Python process (so import caches and freed memory never carry over), the
configurations are interleaved, and the table gives the median, min and max of ``--repeats`` runs.
Models: the tiny AudioLDM2 test fixture through autosep's own ``load_pipeline`` (every component), and the
real-size AudioLDM2 UNet (347 M parameters, random weights, saved as safetensors) through diffusers'
``from_pretrained``, which is how the pipeline loads it. No real-size text encoders are built (several GB).

    python benchmarks/loading_speed.py [--repeats 3] [--skip-real]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in the child: optionally hide accelerate, load, report seconds, peak RSS growth and initialised elements.
CHILD = r'''
import importlib.util, json, sys, time
hide, kind, folder = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
if hide:
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a, **k: None if name.split(".")[0] == "accelerate" else real_find_spec(name, *a, **k)
    class _Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "accelerate":
                raise ModuleNotFoundError(name)
    sys.meta_path.insert(0, _Hide())
sys.path.insert(0, sys.argv[4])
import psutil, torch
written = 0
for name in ("normal_", "uniform_", "fill_", "zero_"):
    original = getattr(torch.Tensor, name)
    def counted(self, *args, _original=original, **kwargs):
        global written
        if self.device.type != "meta":
            written += self.numel()
        return _original(self, *args, **kwargs)
    setattr(torch.Tensor, name, counted)
if kind == "tiny":
    from autosep.separator.loading import load_pipeline
    load = lambda: load_pipeline(__import__("pathlib").Path(folder))
else:
    from diffusers import AudioLDM2UNet2DConditionModel
    load = lambda: AudioLDM2UNet2DConditionModel.from_pretrained(folder)
import diffusers, transformers  # imports are not part of loading
import threading
process = psutil.Process()
rss_before = process.memory_info().rss
peak = rss_before
loading = True
def watch():  # the process's lifetime peak (ru_maxrss) may predate loading, so sample the RSS during it
    global peak
    while loading:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.002)
watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
start = time.perf_counter()
model = load()
seconds = time.perf_counter() - start
loading = False
watcher.join()
peak = max(peak, process.memory_info().rss)
print(json.dumps({"seconds": seconds, "peak_growth": max(0, peak - rss_before), "written": written}))
'''


def measure(hide: bool, kind: str, folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, "1" if hide else "0", kind, str(folder), str(REPO)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-real", action="store_true", help="only the tiny fixture (no 1.4 GB UNet on disk)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        from tiny_models.audioldm2 import build_tiny_audioldm2

        models = {"tiny AudioLDM2 pipeline (load_pipeline)": ("tiny", build_tiny_audioldm2(Path(tmp) / "tiny"))}
        if not args.skip_real:
            from real_size import real_size_unet

            unet_folder = Path(tmp) / "unet"
            unet = real_size_unet()
            unet.save_pretrained(unet_folder)
            del unet
            models["real-size AudioLDM2 UNet, 347 M params (from_pretrained)"] = ("real", unet_folder)
        results: dict[tuple[str, bool], list[dict]] = {(m, h): [] for m in models for h in (True, False)}
        for _ in range(args.repeats):  # interleaved: every configuration once per round
            for name, (kind, folder) in models.items():
                for hide in (True, False):
                    results[(name, hide)].append(measure(hide, kind, folder))

    table = Table(title=f"Loading, fresh process per run, median (min-max) of {args.repeats} interleaved runs "
                        "(shared 2-core CPU: times are indicative, memory and counts are not load-dependent)")
    for column in ("model", "accelerate", "load time (s)", "peak RSS growth during load (MB)", "elements filled before the "
                   "checkpoint is read"):
        table.add_column(column, justify="left" if column in ("model", "accelerate") else "right")

    def spread(values: list[float], fmt: str) -> str:
        return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"

    for (name, hide), runs in results.items():
        table.add_row(name, "hidden (before)" if hide else "installed (after)",
                      spread([r["seconds"] for r in runs], ".2f"),
                      spread([r["peak_growth"] / 1e6 for r in runs], ".0f"),
                      f"{statistics.median([r['written'] for r in runs]):,.0f}")
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
