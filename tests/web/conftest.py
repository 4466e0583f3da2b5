"""Fixtures of the web app's tests: one ``autosep web`` server per test module on the tiny models.

Offline: the server listens on loopback only, Gradio's analytics and version check are off (``start`` sets
them), and the top-level conftest's network guard fails a test on any other connection from this process.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio", reason='the web extra is not installed (pip install -e ".[web]")')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_mix(path: Path, seconds: float = 3.0, rate: int = 44100) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.25 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(len(t))
    data = np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)
    sf.write(path, data, rate, subtype="PCM_16")
    return sf.read(path, dtype="float64", always_2d=True)[0]


@pytest.fixture
def port() -> int:
    """A free port on loopback."""
    return free_port()


@pytest.fixture
def make_mix():
    """``make_mix(path)`` writes a 3 s stereo 44.1 kHz 16-bit recording and returns its samples (float64)."""
    return write_mix


@pytest.fixture(scope="module")
def web_config(tiny_audioldm2_dir, tiny_cnn14_checkpoint):
    from autosep.pipeline import PipelineOptions
    from autosep.web.engine import WebConfig

    options = PipelineOptions(model=str(tiny_audioldm2_dir), tagger_model=str(tiny_cnn14_checkpoint), steps=1,
                              window=2.56, device="cpu", planner={"threshold": 0.0, "max_sources": 2})
    return WebConfig(options, max_duration_s=20.0, max_upload_mb=5.0)


@pytest.fixture(scope="module")
def server(web_config):
    import torch

    from autosep.web.command import start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the module's requests run in the server's threads, not the test's
    running = start(web_config, port=free_port())
    yield running
    running.close()
    torch.set_num_threads(threads)
    assert not running.root.exists(), "the server's temporary folder must be removed on close"
