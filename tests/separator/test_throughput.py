"""Throughput guarantees users rely on: models load straight into place, the start path stays light, the DDPM
inversion is batched (and equal to the step-by-step computation), and windows can share batches."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from autosep.separator import ZeroSep
from autosep.separator.loading import load_pipeline

REPO = Path(__file__).resolve().parents[2]

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


@pytest.mark.slow  # two fresh Python processes importing torch: about 20 s
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


# -- batched DDPM inversion ----------------------------------------------------------------------------------------

SOURCES = ["cello", "flute", "violin"]
LENGTH = 10_000


@pytest.fixture(scope="module")
def zs(tiny_audioldm2_dir) -> ZeroSep:
    return ZeroSep.from_pretrained(tiny_audioldm2_dir, device="cpu")


def _wave(seed: int, length: int = LENGTH) -> torch.Tensor:
    t = torch.arange(length) / 16_000
    noise = torch.randn(length, generator=torch.Generator().manual_seed(seed))
    return 0.3 * torch.sin(2 * torch.pi * (330 + 110 * seed) * t) + 0.05 * noise


class ForwardSizes:
    """The batch size of every UNet forward, in order (their count is the sequential calls a GPU waits for)."""

    def __init__(self, zs: ZeroSep, monkeypatch):
        self.sizes: list[int] = []
        original = zs.pipe.unet.forward

        def forward(sample, *args, **kwargs):
            self.sizes.append(int(sample.shape[0]))
            return original(sample, *args, **kwargs)

        monkeypatch.setattr(zs.pipe.unet, "forward", forward)


def _sequential_stems(zs: ZeroSep, wave: torch.Tensor, sources: list[str], inv_prompt: str, steps: int,
                      guidance: float, seed: int = 42) -> torch.Tensor:
    """The published code's order: the inversion step by step, each step one forward per c_inv."""
    from autosep.separator import mel
    from autosep.separator.guidance import GuidedNoise
    from autosep.separator.inversion import auxiliary_noise, ddpm_invert, make_scheduler, reverse
    from autosep.separator.prompts import inversion_prompts

    c_inv = inversion_prompts(sources, inv_prompt)
    scaled, unscale = mel.normalise(wave)
    with torch.no_grad():
        x0 = zs._encode(mel.pad_to_multiple(scaled, zs.backbone.frame_multiple))
        noise = auxiliary_noise(tuple(x0.shape), steps, seed)
        noise_for = GuidedNoise(zs._predict, guidance)
        stems = []
        for source, inv in zip(sources, c_inv):
            scheduler = make_scheduler(zs.pipe.scheduler.config, steps)
            x_top, maps = ddpm_invert(scheduler, x0, lambda x, t: noise_for(x, t, [inv]), noise)
            latents = reverse(scheduler, x_top, lambda x, t: noise_for(x, t, [source]), maps)
            stems.append(zs._decode(latents)[:, 0])
    return torch.cat(stems)[:, : wave.shape[0]] * unscale


@pytest.mark.parametrize("inv_prompt, guidance", [("others", 1.0), ("null", 1.0), ("others", 2.0)])
def test_batched_ddpm_inversion_equals_the_step_by_step_computation(zs, inv_prompt, guidance):
    wave = _wave(0)
    batched = zs.separate(wave, SOURCES, steps=6, inv_prompt=inv_prompt, guidance=guidance)
    sequential = _sequential_stems(zs, wave, SOURCES, inv_prompt, 6, guidance)
    scale = sequential.abs().max()
    assert scale > 1e-2  # audible-scale stems: the comparison means something
    torch.testing.assert_close(batched, sequential, rtol=0, atol=1e-4 * scale)


def test_batched_inversion_noise_maps_equal_the_step_by_step_ones():
    from diffusers import DDIMScheduler

    from autosep.separator.inversion import auxiliary_noise, ddpm_invert, ddpm_invert_batched, reverse

    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(8)
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(1)) * 0.3

    def eps(x, t):  # a deterministic, timestep-dependent stand-in for the UNet
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, *([1] * (x.ndim - 1)))
        return torch.tanh(torch.einsum("oc,bchw->bohw", weight, x) + t / 1000)

    def eps_all(latents, timesteps):
        flat = latents.reshape(-1, *latents.shape[2:])
        return eps(flat, timesteps.repeat_interleave(latents.shape[1])).reshape(latents.shape)

    noise = auxiliary_noise((1, 4, 8, 8), 8, seed=3)
    for zero_last in (True, False):
        x_seq, z_seq = ddpm_invert(scheduler, x0, eps, noise, zero_last=zero_last)
        x_bat, z_bat = ddpm_invert_batched(scheduler, x0, eps_all, noise, zero_last=zero_last)
        torch.testing.assert_close(x_bat, x_seq)
        for a, b in zip(z_bat, z_seq):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # With the exact last z, reversing with the same model gives back x0: the maps are the inversion's.
    torch.testing.assert_close(reverse(scheduler, x_bat, eps, z_bat), x0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inv_prompt", ["null", "others"])
def test_a_ddpm_window_costs_at_most_steps_plus_one_sequential_unet_calls(zs, monkeypatch, inv_prompt):
    # 3 sources, 10 steps, default batch size: the whole inversion (every timestep, every c_inv) in one forward,
    # then one forward per reverse step for all sources together.
    spy = ForwardSizes(zs, monkeypatch)
    result = zs.separate_detailed(_wave(0), SOURCES, steps=10, inv_prompt=inv_prompt)
    distinct = 1 if inv_prompt == "null" else 3
    assert len(spy.sizes) <= 10 + 1
    assert spy.sizes == [9 * distinct] + [3] * 10
    assert result.unet_evaluations == sum(spy.sizes)


def test_batch_size_bounds_every_forward_of_the_batched_inversion(zs, monkeypatch):
    wave = _wave(0)
    unbounded = zs.separate(wave, SOURCES, steps=6, guidance=2.0)
    bounded = ZeroSep(zs.pipe, zs.model_id, zs.device, zs.dtype, batch_size=4)
    spy = ForwardSizes(bounded, monkeypatch)
    seen = []
    stems = bounded.separate_detailed(wave, SOURCES, steps=6, guidance=2.0,
                                      progress=lambda done, total: seen.append(done)).stems
    assert max(spy.sizes) <= 4
    # Inversion: 5 timesteps x 3 c_inv x 2 branches = 30 evaluations in forwards of 4 (a sample's two branches
    # stay together); reverse: 6 steps of 3 sources x 2 branches in forwards of 4 + 2.
    assert spy.sizes == [4] * 7 + [2] + [4, 2] * 6
    assert seen == list(range(1, 13))  # progress still advances one inversion step at a time
    torch.testing.assert_close(stems, unbounded, rtol=0, atol=1e-4 * unbounded.abs().max())


# -- several windows per batch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("inversion", ["ddpm", "ddim"])
def test_several_windows_separated_together_equal_one_window_at_a_time(zs, monkeypatch, inversion):
    waves = [_wave(0), _wave(1), _wave(2)]
    sources = [["cello", "flute"], ["flute", "violin", "cello"], ["violin"]]
    alone = [zs.separate_detailed(w, s, inversion=inversion, steps=5) for w, s in zip(waves, sources)]
    spy = ForwardSizes(zs, monkeypatch)
    together = zs.separate_windows(waves, sources, inversion=inversion, steps=5)
    # The sequential calls of one window for the work of three.
    assert len(spy.sizes) == (1 + 5 if inversion == "ddpm" else 5 + 5)
    assert sum(spy.sizes) == sum(r.unet_evaluations for r in together)
    for one, batched in zip(alone, together):
        assert batched.sources == one.sources and batched.inversion_prompts == one.inversion_prompts
        assert batched.unet_evaluations == one.unet_evaluations
        scale = one.stems.abs().max()
        assert scale > 1e-2
        torch.testing.assert_close(batched.stems, one.stems, rtol=0, atol=1e-4 * scale)


def test_windows_of_different_lengths_are_grouped_by_latent_shape(zs):
    waves = [_wave(0), _wave(1, length=3_000)]
    together = zs.separate_windows(waves, [["cello"], ["flute"]], steps=3)
    assert [r.stems.shape for r in together] == [(1, LENGTH), (1, 3_000)]
    alone = zs.separate(waves[1], ["flute"], steps=3)
    torch.testing.assert_close(together[1].stems, alone, rtol=0, atol=1e-4 * alone.abs().max())


def test_a_forward_that_runs_out_of_memory_is_split_and_later_forwards_keep_the_size_that_fitted(zs, monkeypatch,
                                                                                                 caplog):
    wave = _wave(0)
    expected = zs.separate(wave, SOURCES, steps=5)
    small = ZeroSep(zs.pipe, zs.model_id, zs.device, zs.dtype)  # unbounded, like the default
    real = small.backbone.predict
    sizes = []

    def limited_memory(latents, timestep, batch, dtype):
        if latents.shape[0] > 5:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        sizes.append(latents.shape[0])
        return real(latents, timestep, batch, dtype)

    monkeypatch.setattr(small.backbone, "predict", limited_memory)
    with caplog.at_level(logging.WARNING):
        result = small.separate_detailed(wave, SOURCES, steps=5)
    assert max(sizes) <= 5
    # 12 inversion samples: 12 -> 6 -> 3 fits; later forwards go straight to 3 at most.
    assert sizes == [3] * 4 + [3] * 5
    assert result.unet_evaluations == sum(sizes) == 12 + 15
    assert len([r for r in caplog.records if "did not fit in memory" in r.getMessage()]) == 2
    torch.testing.assert_close(result.stems, expected, rtol=0, atol=1e-4 * expected.abs().max())
