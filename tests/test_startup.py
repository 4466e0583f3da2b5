"""Answering without the heavy libraries (issue 14, item 6): help, the model list and input errors come before
any model is loaded, so torch, diffusers and transformers must not be imported for them. The wall times are
measured by benchmarks/startup.py (speed goals are not timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers")

_PROBE = """
import json, sys
from autosep.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def probe(tmp_path: Path, *args: str) -> dict:
    # Fresh, empty caches: a model another test put in the shared test cache would be checked more closely.
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf"), AUTOSEP_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args, code", [
    (("--help",), 0),
    (("tag", "--help"), 0),
    (("models", "list"), 0),
    (("missing.wav",), 1),
    (("tag", "missing.wav"), 1),
    (("mix.wav", "--threshold", "2"), 2),
])
def test_no_heavy_import_before_a_model_loads(tmp_path, args, code):
    result = probe(tmp_path, *args)
    assert result == {"code": code, "heavy": []}
