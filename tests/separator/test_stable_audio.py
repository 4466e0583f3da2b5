"""ZeroSep on the full-band backbones (Stable Audio Open, Stable Audio 3), on tiny random-weight pipelines built
from the diffusers config classes, saved with save_pretrained and loaded back through ``ZeroSep.from_pretrained``.

The samplers are checked against diffusers' own pipelines, the edit-friendly inversions for exact reconstruction,
the ODE inversions for a close round trip, and the separator for its shapes, batching and evaluation counts.
"""

from __future__ import annotations

import logging

import pytest
import torch

from autosep.separator import ZeroSep
from autosep.separator import flow_inversion as fi
from tiny_models.stable_audio import SAO_SAMPLE_SIZE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 44_100
STEPS = 6


@pytest.fixture(scope="module")
def sao(tiny_stable_audio_open_dir) -> ZeroSep:
    return ZeroSep.from_pretrained(tiny_stable_audio_open_dir, device="cpu")


@pytest.fixture(scope="module")
def sa3(tiny_stable_audio_3_dir) -> ZeroSep:
    return ZeroSep.from_pretrained(tiny_stable_audio_3_dir, device="cpu")


def stereo(seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * RATE)) / RATE
    left = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.02 * torch.randn(t.shape, generator=generator)
    right = 0.2 * torch.sin(2 * torch.pi * 660 * t) + 0.02 * torch.randn(t.shape, generator=generator)
    return torch.stack([left, right])


def model_fn(zs: ZeroSep, prompt: str, seconds: float):
    """The backbone's model call for one prompt (what the separator's guidance wraps at w = 1)."""
    backbone = zs.backbone
    conditioning = backbone.encode(prompt, zs.device)

    def fn(x, sigma):
        batch = backbone.stack([conditioning] * x.shape[0], torch.float32, seconds)
        return backbone.predict(x, sigma, batch, torch.float32).float()

    return fn


def latent_of(zs: ZeroSep, wave: torch.Tensor) -> torch.Tensor:
    length = zs.backbone.padded_length(wave.shape[-1])
    with torch.no_grad():
        return zs.backbone.encode_audio(torch.nn.functional.pad(wave, (0, length - wave.shape[-1])), 42)


def test_loaded_through_the_users_path_with_the_models_rate_and_channels(sao, sa3):
    for zs, name in ((sao, "stable-audio-open"), (sa3, "stable-audio-3")):
        assert (zs.sample_rate, zs.channels, zs.backbone.name) == (RATE, 2, name)
    # Stable Audio Open's window is its DiT's training length: sample_size latent frames of 256 samples here.
    assert sao.default_window == pytest.approx(SAO_SAMPLE_SIZE * 256 / RATE)


# -- Stable Audio Open: SDE DPM-Solver++ -----------------------------------------------------------------------

def test_sao_reverse_pass_is_the_pipelines_own_sampling(sao):
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    pipe, seconds = sao.pipe, 0.7
    shape = (1, pipe.transformer.config.in_channels, pipe.transformer.config.sample_size)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = pipe("cello", audio_end_in_s=seconds, num_inference_steps=STEPS, guidance_scale=1.0,
                        latents=latents.clone(), generator=torch.Generator().manual_seed(7),
                        output_type="latent").audios
        scheduler = fi.sde_scheduler(pipe.scheduler.config, STEPS)
        # The Brownian-tree noise the pipeline's scheduler draws for each step with that generator's seed.
        tree = BrownianTreeNoiseSampler(latents, sigma_min=scheduler.config.sigma_min,
                                        sigma_max=scheduler.config.sigma_max, seed=7)
        noises = [tree(scheduler.sigmas[i], scheduler.sigmas[i + 1]) for i in range(STEPS)]
        ours = fi.sde_reverse(scheduler, latents * scheduler.init_noise_sigma, model_fn(sao, "cello", seconds),
                              noises)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=1e-5), float((ours - expected).abs().max())


def test_sao_edit_friendly_inversion_reconstructs_x0_exactly(sao):
    x0 = latent_of(sao, stereo())
    fn = model_fn(sao, "cello", 0.5)
    noise = fi.auxiliary_noise(tuple(x0.shape), STEPS, seed=1)
    with torch.no_grad():
        x_top, zs, residual = fi.sde_edit_friendly_invert(fi.sde_scheduler(sao.pipe.scheduler.config, STEPS), x0,
                                                          fn, noise, zero_last=False)
        back = fi.sde_reverse(fi.sde_scheduler(sao.pipe.scheduler.config, STEPS), x_top, fn, zs, residual)
        # A different c_rev does not come back to x0: the reconstruction is not a property of the noise alone.
        other = fi.sde_reverse(fi.sde_scheduler(sao.pipe.scheduler.config, STEPS), x_top,
                               model_fn(sao, "flute", 0.5), zs, residual)
    assert float((back - x0).abs().max()) < 1e-4
    assert float((other - x0).abs().max()) > 1e-3


def test_sao_ode_inversion_round_trip_comes_back_close(sao):
    # Random weights are no denoiser at all (D(x0, sigma_min) is far from x0), so the round trip is checked on
    # the exact v-prediction of Gaussian data N(0, s^2), whose probability-flow ODE is smooth like a trained
    # model's: D(x, sigma) = s^2 / (s^2 + sigma^2) x, v = (D - c_skip x) / c_out.
    scheduler = fi.sde_scheduler(sao.pipe.scheduler.config, 50)
    s2 = 0.25

    def gaussian_v(x, sigma):
        sigma = sigma.reshape(-1, 1, 1)
        denoised = s2 / (s2 + sigma ** 2) * x
        c_skip = 1 / (sigma ** 2 + 1)
        c_out = -sigma / (sigma ** 2 + 1) ** 0.5
        return (denoised - c_skip * x) / c_out

    x0 = 0.5 * torch.randn((1, 8, 64), generator=torch.Generator().manual_seed(0))
    x_top = fi.sde_ode_invert(scheduler, x0, gaussian_v)
    back = fi.sde_ode_reverse(scheduler, x_top, gaussian_v)
    error = float((back - x0).abs().max() / x0.abs().max())
    # Measured: 5.9% of the peak at 50 steps, 3.2% at 100 (first order: halves with twice the steps).
    assert error < 0.1, error
    assert float(x_top.std()) > 50 * float(x0.std())  # it did go up to the top noise level


# -- Stable Audio 3: rectified flow ----------------------------------------------------------------------------

def test_sa3_reverse_pass_is_the_pipelines_own_sampling(sa3):
    pipe, seconds = sa3.pipe, 0.5
    frames = -(-int(seconds * RATE) // pipe.vae.downsampling_ratio)
    latents = torch.randn((1, pipe.vae.config.latent_dim, frames), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = pipe("cello", duration=seconds, num_inference_steps=STEPS, guidance_scale=1.0,
                        latents=latents.clone(), output_type="latent").audios
        ours = fi.flow_reverse(fi.flow_scheduler(pipe.scheduler.config, STEPS), latents,
                               model_fn(sa3, "cello", seconds))
    assert torch.allclose(ours, expected, atol=1e-5, rtol=1e-5), float((ours - expected).abs().max())


def test_sa3_edit_friendly_inversion_reconstructs_x0_exactly(sa3):
    x0 = latent_of(sa3, stereo())
    fn = model_fn(sa3, "cello", 0.5)
    scheduler = fi.flow_scheduler(sa3.pipe.scheduler.config, STEPS)
    with torch.no_grad():
        x_top, zs = fi.flow_edit_friendly_invert(scheduler, x0, fn, fi.auxiliary_noise(tuple(x0.shape), STEPS, 1),
                                                 zero_last=False)
        back = fi.flow_reverse(scheduler, x_top, fn, zs)
        other = fi.flow_reverse(scheduler, x_top, model_fn(sa3, "flute", 0.5), zs)
    assert float((back - x0).abs().max()) < 1e-4
    assert float((other - x0).abs().max()) > 1e-3


def test_sa3_ode_inversion_round_trip_comes_back_close(sa3):
    x0 = latent_of(sa3, stereo())
    fn = model_fn(sa3, "cello", 0.5)
    scheduler = fi.flow_scheduler(sa3.pipe.scheduler.config, 25)
    with torch.no_grad():
        x_top = fi.flow_ode_invert(scheduler, x0, fn)
        back = fi.flow_reverse(scheduler, x_top, fn)
    error = float((back - x0).abs().max()) / float(x0.abs().max())
    assert error < 0.1, error  # measured on this tiny model: 5.5% of the peak at 25 steps, 2.0% at 100
    assert float((x_top - x0).abs().max()) > 0.5 * float(x0.abs().max())


# -- the separator -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["sao", "sa3"])
def test_stems_match_the_inputs_layout_rate_and_length(which, request):
    zs = request.getfixturevalue(which)
    wave = stereo(0.4)
    stems = zs.separate(wave, ["cello", "flute"], steps=2, sample_rate=RATE)
    assert stems.shape == (2, 2, wave.shape[-1]) and stems.dtype == torch.float32
    assert bool(torch.isfinite(stems).all()) and float(stems.abs().max()) > 1e-3
    mono = zs.separate(wave[0], ["cello", "flute"], steps=2)
    assert mono.shape == (2, wave.shape[-1])
    assert zs.separate(wave[:1], ["cello"], steps=2).shape == (1, 1, wave.shape[-1])
    # Mono goes in as both channels: the same as passing it duplicated, averaged back to one channel.
    duplicated = zs.separate(wave[0].expand(2, -1), ["cello", "flute"], steps=2)
    assert torch.allclose(mono, duplicated.mean(dim=1), atol=1e-6)
    with pytest.raises(ValueError, match="mono or 2 channels"):
        zs.separate(torch.zeros(3, 100), ["cello"], steps=2)
    with pytest.raises(ValueError, match="44100 Hz"):
        zs.separate(wave, ["cello"], steps=2, sample_rate=16_000)


@pytest.mark.parametrize("which", ["sao", "sa3"])
def test_batched_inversion_equals_one_sample_at_a_time(which, request, tiny_stable_audio_open_dir,
                                                       tiny_stable_audio_3_dir):
    folder = tiny_stable_audio_open_dir if which == "sao" else tiny_stable_audio_3_dir
    batched = request.getfixturevalue(which)
    single = ZeroSep.from_pretrained(folder, device="cpu", batch_size=1)
    wave = stereo(0.3)
    for inv_prompt in ("others", "null"):
        a = batched.separate(wave, ["cello", "flute", "violin"], steps=4, inv_prompt=inv_prompt)
        b = single.separate(wave, ["cello", "flute", "violin"], steps=4, inv_prompt=inv_prompt)
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())


@pytest.mark.parametrize("which", ["sao", "sa3"])
def test_evaluation_counts(which, request):
    zs = request.getfixturevalue(which)
    wave, sources, n = stereo(0.3), ["cello", "flute", "violin"], 4
    # Edit-friendly, null c_inv: one inversion shared by all sources (its last step needs no model call), no
    # unconditional branch at w = 1.
    result = zs.separate_detailed(wave, sources, steps=n, inv_prompt="null")
    assert result.unet_evaluations == (n - 1) + 3 * n
    assert result.details["unconditional_evaluations"] == 0
    # "others": one inversion per distinct c_inv.
    result = zs.separate_detailed(wave, sources, steps=n, inv_prompt="others")
    assert result.unet_evaluations == 3 * (n - 1) + 3 * n
    # ODE inversion: every step is evaluated (Stable Audio Open refines its first step with 2 more calls).
    result = zs.separate_detailed(wave, sources, steps=n, inversion="ddim", inv_prompt="null")
    extra = fi.FIRST_STEP_ITERATIONS if which == "sao" else 0
    assert result.unet_evaluations == n + extra + 3 * n
    assert result.details["sampler"] == zs.backbone.samplers["ddim"]
    # w = 2: both branches for the sources; the null c_inv is the unconditional branch itself (one evaluation).
    result = zs.separate_detailed(wave, sources, steps=n, inv_prompt="null", guidance=2.0)
    assert result.details["unconditional_evaluations"] == (n - 1) + 3 * n
    assert result.unet_evaluations == (n - 1) + 6 * n


def test_window_length_is_the_duration_conditioning(sa3):
    # The same audio conditioned as a shorter window is a different separation: seconds_total is the real length.
    wave = stereo(0.3)
    full = sa3.separate_detailed(wave, ["cello"], steps=2)
    assert full.details["seconds_total"] == pytest.approx(wave.shape[-1] / RATE)
    padded = sa3.separate(torch.nn.functional.pad(wave, (0, RATE // 10)), ["cello"], steps=2)[..., :wave.shape[-1]]
    assert float((padded - full.stems).abs().max()) > 1e-4


def test_the_distilled_stable_audio_3_warns_and_is_sampled_deterministically(tiny_stable_audio_3_dir, caplog):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableAudio3Pipeline

    pipe = StableAudio3Pipeline.from_pretrained(tiny_stable_audio_3_dir)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, stochastic_sampling=True)
    with caplog.at_level(logging.WARNING):
        zs = ZeroSep(pipe, "stabilityai/stable-audio-3-medium", torch.device("cpu"), torch.float32)
    assert "distilled" in caplog.text and "stable-audio-3" in caplog.text
    wave = stereo(0.3)
    first = zs.separate(wave, ["cello"], steps=3, seed=5)
    assert torch.equal(first, zs.separate(wave, ["cello"], steps=3, seed=5))


@pytest.mark.parametrize("layout", ["stereo", "mono"])
def test_full_band_pass_two_separates_each_stem_of_pass_one_again(sa3, layout):
    wave = stereo() if layout == "stereo" else stereo()[0]
    sources = ["cello", "flute"]
    first = sa3.separate(wave, sources, steps=3, inv_prompt="null")
    seen = []
    two = sa3.separate_detailed(wave, sources, steps=3, inv_prompt="null", passes=2,
                                progress=lambda done, total: seen.append((done, total)))
    assert two.stems.shape == first.shape
    again = torch.cat([sa3.separate(first[i], [source], steps=3, inv_prompt="null")
                       for i, source in enumerate(sources)])
    scale = float(again.abs().max())
    torch.testing.assert_close(two.stems, again, rtol=0, atol=1e-4 * scale)
    assert two.details["passes"] == 2 and len(two.details["unet_evaluations_per_pass"]) == 2
    assert two.unet_evaluations == sum(two.details["unet_evaluations_per_pass"])
    # Pass 1, then pass 2 with both stems in one batch (as on every backbone): 2 x 3 sequential steps each.
    assert seen[-1] == (2 * 2 * 3, 2 * 2 * 3)
