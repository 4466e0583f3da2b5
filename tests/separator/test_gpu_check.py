"""benchmarks/gpu_check.py, the one command for a GPU machine, runs here in its quick CPU mode on the session's
tiny AudioLDM2, so the script a lent GPU runs is known to work before it gets there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_quick_cpu_check_prints_every_part_of_the_table(tiny_audioldm2_dir, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)

    code = gpu_check.main(["--cpu", "--quick"], tiny={"audioldm2": tiny_audioldm2_dir})
    table = capsys.readouterr().out
    assert code == 0, table
    rows = [line for line in table.splitlines() if line.startswith("│")]
    precision = [r for r in rows if "precision" in r]
    assert len(precision) == 3 and all("PASS" in r and "embeddings finite=True" in r for r in precision)
    for denoiser in ("tango UNet", "stable-audio-open DiT", "stable-audio-3 DiT"):
        timed = [r for r in rows if "speed" in r and denoiser in r]
        assert len(timed) == 4 and all(" ms" in r and "finite" in r for r in timed)  # fp32/bf16 x batch 1, 3
    calls = [int(r.split(": ")[1].split(" forwards")[0]) for r in rows if "calls" in r]
    assert calls == [6, 3]  # two windows together take the sequential forwards of one (2 steps, ddpm)
