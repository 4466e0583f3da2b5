"""Throughput guarantees users rely on: models load straight into place, the start path stays light, the DDPM
inversion is batched (and equal to the step-by-step computation), and windows can share batches."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from autosep.separator import ZeroSep
from autosep.separator.loading import load_pipeline

from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- loading -----------------------------------------------------------------------------------------------------


def _count_writes_to_real_memory(monkeypatch) -> Counter:
    """Count elements that random-init and fill methods write into allocated (non-meta) tensors."""
    written: Counter = Counter()
    for name in ("normal_", "uniform_", "fill_", "zero_", "bernoulli_", "random_"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if self.device.type != "meta":
                written[_name] += self.numel()
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return written


def test_loading_puts_the_checkpoint_weights_in_place_without_initialising_them(tiny_audioldm2_dir, monkeypatch,
                                                                               caplog):
    # Without accelerate, diffusers builds every model with allocated weights, fills them, then overwrites them
    # with the checkpoint (and logs that it does so). With it, parameters start on the meta device.
    written = _count_writes_to_real_memory(monkeypatch)
    with caplog.at_level(logging.WARNING):
        pipe = load_pipeline(tiny_audioldm2_dir)
    assert dict(written) == {}, f"weights were initialised before the checkpoint was read: {dict(written)}"
    assert not [r for r in caplog.records if "accelerate" in r.getMessage()]
    from safetensors.torch import load_file

    checkpoint = load_file(str(next((tiny_audioldm2_dir / "unet").glob("*.safetensors"))))
    name, value = next(iter(checkpoint.items()))
    assert torch.equal(pipe.unet.state_dict()[name], value)


def test_the_mel_filterbank_is_computed_once_and_later_runs_skip_librosa_filters(tmp_path):
    # librosa.filters imports numba (about a second per start); the Slaney filterbank is computed by it once and
    # read from autosep's cache after that. The cached matrix is exactly librosa's.
    code = (
        "import sys, torch; from autosep.separator import mel; "
        "mel.log_mel(torch.zeros(16000)); "
        "print('numba' in sys.modules)"
    )
    env = {**os.environ, "AUTOSEP_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env,
                           timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert [run.stdout.split()[-1] for run in runs] == ["True", "False"]
    cached = list((tmp_path / "cache").rglob("*.npy"))
    assert len(cached) == 1
    import librosa

    expected = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0)
    np.testing.assert_array_equal(np.load(cached[0]), expected.astype(np.float32))


def test_a_damaged_filterbank_cache_is_recomputed(tmp_path, monkeypatch):
    from autosep.separator import mel

    monkeypatch.setenv("AUTOSEP_CACHE", str(tmp_path))
    path = mel._basis_cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a numpy file")
    mel._mel_basis.cache_clear()
    try:
        basis = mel._mel_basis()
    finally:
        mel._mel_basis.cache_clear()
    assert basis.shape == (64, 513) and float(basis.sum()) > 0
    np.testing.assert_array_equal(np.load(path), basis.numpy())
