"""The README's Python examples run as written (issue 14, item 4), on the tiny models, offline.

Every ```python block of README.md is executed in order in one namespace, in a folder holding the files the
examples name (``mix.wav``, ``recordings/``). The default model names resolve to the tiny random-weight models
(``audioldm2`` to the tiny AudioLDM2 folder, the PANNs checkpoint to the tiny Cnn14), the way a user's download
would be found.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_python_examples():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2 and any("autosep.AutoSep" in b for b in blocks) and any("ZeroSep" in b for b in blocks)


def test_readme_python_blocks_run(tmp_path, monkeypatch, tiny_audioldm2_dir, tiny_stable_audio_3_dir,
                                  tiny_cnn14_checkpoint, capsys):
    from autosep.separator import loading
    from autosep.taggers import panns

    aliases = {**loading.model_aliases(), "audioldm2": str(tiny_audioldm2_dir),
               "stable-audio-3": str(tiny_stable_audio_3_dir)}
    monkeypatch.setattr(loading, "model_aliases", lambda: aliases)
    monkeypatch.setattr(panns, "legacy_checkpoint_path", lambda: tiny_cnn14_checkpoint)
    monkeypatch.setattr(panns, "CNN14_SIZE", tiny_cnn14_checkpoint.stat().st_size)
    monkeypatch.setattr(panns, "CNN14_MD5", hashlib.md5(tiny_cnn14_checkpoint.read_bytes()).hexdigest())
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    t = np.arange(int(2.0 * 16000)) / 16000
    mix = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    sf.write("mix.wav", np.stack([mix, 0.8 * mix], axis=1), 16000, subtype="PCM_16")
    Path("recordings").mkdir()
    sf.write("recordings/take.wav", mix[::-1].copy(), 16000, subtype="PCM_16")

    namespace: dict = {"__name__": "readme"}
    for block in python_blocks(README.read_text(encoding="utf-8")):
        exec(compile(block, "README.md", "exec"), namespace)  # the README is this project's own file
    capsys.readouterr()
    assert len(namespace["results"]) == 2 and all(r.status == "done" for r in namespace["results"])
    assert namespace["dog"].shape[1] == 1  # generative: the separator's own mono stems
    assert tuple(namespace["stems"].shape[:2]) == (2, 2)  # two stereo stems from the full-band separator
