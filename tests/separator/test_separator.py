"""ZeroSep on tiny random-weight AudioLDM2 / AudioLDM pipelines loaded through the user's from_pretrained path."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from autosep.errors import ModelNotAvailableError
from autosep.separator import ZeroSep
from autosep.separator.backbones import SamplingRun
from autosep.separator.backbones.audioldm import inversion_eps
from autosep.separator.guidance import GuidedNoise
from autosep.separator import mel
from autosep.separator.inversion import (
    auxiliary_noise,
    ddim_invert,
    ddpm_invert,
    ddpm_invert_batched,
    make_inverse_scheduler,
    make_scheduler,
    reverse,
    sigma,
)

SOURCES = ["cello", "flute", "violin"]
STEPS = 6
LENGTH = 10_000  # not on the tiny model's 1280-sample grid: exercises padding and trimming


# Tiny models on a shared 2-core machine: one thread avoids oversubscription (about 30x faster here).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def zs(tiny_audioldm2_dir) -> ZeroSep:
    return ZeroSep.from_pretrained(tiny_audioldm2_dir, device="cpu")


@pytest.fixture(scope="module")
def zs_v1(tiny_audioldm_dir) -> ZeroSep:
    return ZeroSep.from_pretrained(tiny_audioldm_dir, device="cpu")


@pytest.fixture(scope="module")
def wave() -> torch.Tensor:
    t = torch.arange(LENGTH) / 16_000
    rng = torch.Generator().manual_seed(1)
    return 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(LENGTH, generator=rng)


def _x0(zs: ZeroSep, wave: torch.Tensor) -> torch.Tensor:
    scaled, _ = mel.normalise(wave)
    return zs._encode(mel.pad_to_multiple(scaled, zs.backbone.frame_multiple))


def _run(noise_for: GuidedNoise) -> SamplingRun:
    """The sampling services of one separation (its inversion counts no progress)."""
    return SamplingRun("ddpm", STEPS, 42, noise_for, lambda: None, contextlib.nullcontext)


class UNetSpy:
    """Wraps a UNet's forward; records, per call, how many rows were conditional and unconditional."""

    def __init__(self, zs: ZeroSep, monkeypatch):
        self.calls: list[tuple[int, int]] = []
        self.key, self.unconditional = self._signature(zs)
        original = zs.pipe.unet.forward

        def forward(sample, timestep, *args, **kwargs):
            rows = kwargs[self.key]
            uncond = sum(bool(torch.equal(row, self.unconditional[0].to(row.dtype))) for row in rows)
            self.calls.append((rows.shape[0] - uncond, uncond))
            return original(sample, timestep, *args, **kwargs)

        monkeypatch.setattr(zs.pipe.unet, "forward", forward)

    @staticmethod
    def _signature(zs: ZeroSep):
        batch = zs.backbone.stack([zs._conditioning("")], zs._compute_dtype)
        key = "encoder_hidden_states" if "encoder_hidden_states" in batch else "class_labels"
        return key, batch[key]

    @property
    def conditional(self) -> int:
        return sum(c for c, _ in self.calls)

    @property
    def unconditional_rows(self) -> int:
        return sum(u for _, u in self.calls)


# -- loading ------------------------------------------------------------------------------------------------


def test_fixture_stores_gpt2model_like_the_published_checkpoint_and_still_loads(tiny_audioldm2_dir, zs):
    from transformers import GPT2LMHeadModel

    index = json.loads((tiny_audioldm2_dir / "model_index.json").read_text())
    assert index["language_model"] == ["transformers", "GPT2Model"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert isinstance(zs.pipe.language_model, GPT2LMHeadModel)
    conditioning = zs.backbone.encode("cello", zs.device)
    assert conditioning["generated"].shape == (1, 8, 16)  # 8 GPT-2 generated tokens, as max_new_tokens says
    assert torch.isfinite(conditioning["generated"]).all()
    assert zs.model_id == str(tiny_audioldm2_dir)
    assert zs.sample_rate == 16_000


def test_the_gpt2_language_model_keeps_the_checkpoint_weights(tiny_audioldm2_dir, zs):
    from transformers import GPT2Model

    stored = GPT2Model.from_pretrained(tiny_audioldm2_dir, subfolder="language_model")
    for name, weight in stored.state_dict().items():
        torch.testing.assert_close(zs.pipe.language_model.transformer.state_dict()[name], weight)


def test_missing_model_offline_names_it_and_how_to_fetch_it():
    with pytest.raises(ModelNotAvailableError) as info:
        ZeroSep.from_pretrained("audioldm2-large", device="cpu")
    message = str(info.value)
    assert "cvssp/audioldm2-large" in message
    assert "autosep models download audioldm2-large" in message
    assert "offline" in message
    assert "NetworkAccessError" not in repr(info.value.__cause__)  # offline mode never tried the network


def test_an_alias_loads_offline_from_the_hugging_face_cache(tiny_audioldm2_dir, wave):
    from tiny_models.audioldm2 import install_in_hf_cache

    install_in_hf_cache(tiny_audioldm2_dir, "cvssp/audioldm2-music")
    cached = ZeroSep.from_pretrained("audioldm2-music", device="cpu")
    assert cached.model_id == "cvssp/audioldm2-music"
    assert cached.separate(wave, ["cello"], steps=2).shape == (1, LENGTH)


def test_folders_that_are_not_pipelines_are_refused_clearly(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="model_index.json"):
        ZeroSep.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(ModelNotAvailableError, match="neither a known name"):
        ZeroSep.from_pretrained("./no/such/folder", device="cpu")


# -- inversion ----------------------------------------------------------------------------------------------


def test_ddpm_inversion_then_reverse_with_the_same_prompt_reproduces_x0(zs, wave):
    x0 = _x0(zs, wave)
    scheduler = make_scheduler(zs.pipe.scheduler.config, 10)
    noise_for = GuidedNoise(zs._predict, guidance=1.0)
    eps = lambda x, t: noise_for(x, t, ["cello"])  # noqa: E731
    noise = auxiliary_noise(tuple(x0.shape), 10, seed=3)

    x_top, zs_exact = ddpm_invert(scheduler, x0, eps, noise, zero_last=False)
    rebuilt = reverse(scheduler, x_top, eps, zs_exact)
    assert (rebuilt - x0).abs().max() < 1e-4

    # The default zeroes only the last step's noise map (the reverse then ends on the model's own estimate).
    x_top_default, zs_default = ddpm_invert(scheduler, x0, eps, noise)
    assert torch.equal(x_top_default, x_top)
    assert torch.count_nonzero(zs_default[-1]) == 0
    for exact, default in zip(zs_exact[:-1], zs_default[:-1]):
        torch.testing.assert_close(default, exact, rtol=0, atol=1e-5)


@pytest.mark.parametrize("set_alpha_to_one", [True, False])
def test_sigma_is_the_noise_scale_ddim_step_applies_at_eta_1(zs, set_alpha_to_one):
    config = {**zs.pipe.scheduler.config, "set_alpha_to_one": set_alpha_to_one}
    scheduler = make_scheduler(config, 10)
    x = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    for t in scheduler.timesteps:  # the last one steps past t = 0, onto final_alpha_cumprod
        with_noise = scheduler.step(eps, t, x, eta=1.0, variance_noise=z).prev_sample
        without = scheduler.step(eps, t, x, eta=1.0, variance_noise=torch.zeros_like(z)).prev_sample
        torch.testing.assert_close(with_noise - without, sigma(scheduler, t) * z, rtol=1e-5, atol=1e-6)
    assert all(float(sigma(scheduler, t)) > 1e-3 for t in scheduler.timesteps[:-1])
    # The final step lands on final_alpha_cumprod: 1 (no noise left to add) or alphas_cumprod[0].
    assert (float(sigma(scheduler, scheduler.timesteps[-1])) == 0) == set_alpha_to_one


def test_the_recording_is_normalised_before_it_is_padded_to_the_grid(zs, monkeypatch):
    seen = []
    real_log_mel = mel.log_mel
    monkeypatch.setattr(mel, "log_mel", lambda wave: seen.append(wave.clone()) or real_log_mel(wave))
    offset = 0.4 + 0.1 * torch.sin(torch.arange(LENGTH) / 7.0)  # a large DC offset
    zs.separate(offset, ["cello"], steps=1)
    (features_input,) = seen
    assert features_input.shape[-1] > LENGTH  # the tiny model's grid needs padding at this length
    assert torch.all(features_input[LENGTH:] == 0)  # digital silence: the offset never leaks into the padding
    assert abs(float(features_input[:LENGTH].mean())) < 1e-6
    assert float(features_input[:LENGTH].abs().max()) == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore:.*past_key_values.*:FutureWarning")  # diffusers' own GPT-2 loop
@pytest.mark.parametrize("backbone", ["audioldm2", "audioldm"])
def test_ddim_reverse_at_w1_equals_the_diffusers_pipeline(backbone, zs, zs_v1):
    separator = zs if backbone == "audioldm2" else zs_v1
    steps = 5
    x_top = torch.randn((1, 8, 16, 16), generator=torch.Generator().manual_seed(7))
    scheduler = make_scheduler(separator.pipe.scheduler.config, steps)
    noise_for = GuidedNoise(separator._predict, guidance=1.0)
    ours = reverse(scheduler, x_top, lambda x, t: noise_for(x, t, ["dog barking"]))

    # The pipelines hand their latents to a per-step callback (AudioLDM v1 has no output_type="latent").
    seen = []
    separator.pipe(
        "dog barking", latents=x_top.clone(), guidance_scale=1.0, num_inference_steps=steps, audio_length_in_s=0.64,
        callback=lambda step, t, latents: seen.append(latents.clone()), callback_steps=1,
    )
    assert len(seen) == steps
    torch.testing.assert_close(ours, seen[-1], rtol=1e-5, atol=1e-5)


# -- guidance and batching ----------------------------------------------------------------------------------


def test_w1_never_evaluates_the_unconditional_branch(zs, wave, monkeypatch):
    spy = UNetSpy(zs, monkeypatch)
    result = zs.separate_detailed(wave, ["cello", "flute"], steps=STEPS, guidance=1.0, inv_prompt="others")
    assert spy.unconditional_rows == 0 and result.details["unconditional_evaluations"] == 0
    # DDPM: inversion for both c_inv ("flute", "cello") except the last step (z = 0), reverse for both sources.
    assert spy.conditional == result.unet_evaluations == 2 * (STEPS - 1) + 2 * STEPS


@pytest.mark.parametrize("guidance, encoded", [(1.0, {"cello", "flute"}), (0.5, {"cello", "flute", ""})])
def test_each_prompt_is_encoded_once_per_run_and_the_empty_one_only_when_guidance_needs_it(zs, wave, monkeypatch,
                                                                                          guidance, encoded):
    monkeypatch.setattr(zs, "_conditionings", {})  # the module's separator has encoded these prompts before
    calls = []
    encode = zs.backbone.encode
    monkeypatch.setattr(zs.backbone, "encode", lambda prompt, device: calls.append(prompt) or encode(prompt, device))
    # Two windows, two passes: every inversion and denoising call of the run asks for the same three prompts.
    zs.separate_windows([wave, 0.5 * wave], [["cello", "flute"]] * 2, steps=2, guidance=guidance,
                        inv_prompt="others", passes=2)
    assert sorted(calls) == sorted(encoded)


def test_w0_never_evaluates_the_conditional_branch(zs, wave, monkeypatch):
    spy = UNetSpy(zs, monkeypatch)
    result = zs.separate_detailed(wave, ["cello", "flute"], steps=STEPS, guidance=0.0, inv_prompt="others")
    assert spy.conditional == 0 and result.details["conditional_evaluations"] == 0
    assert spy.unconditional_rows == result.unet_evaluations == 2 * (STEPS - 1) + 2 * STEPS


@pytest.mark.parametrize("guidance", [0.25, 0.75, 2.5])  # highlighting between mixture and source, and beyond
def test_other_weights_batch_both_branches_into_one_forward(zs, wave, monkeypatch, guidance):
    spy = UNetSpy(zs, monkeypatch)
    result = zs.separate_detailed(wave, ["cello", "flute"], steps=STEPS, guidance=guidance, inv_prompt="others")
    # The DDPM inversion's steps are independent: all of them in one forward, then one forward per reverse step.
    assert len(spy.calls) == 1 + STEPS
    assert spy.calls[0] == (2 * (STEPS - 1), 2 * (STEPS - 1))
    assert all(cond == 2 and uncond == 2 for cond, uncond in spy.calls[1:])
    assert result.unet_evaluations == 4 * (2 * STEPS - 1)


# -- highlighting: w in [0, 1] moves from the mixture (w = 0) to the isolated source (w = 1) ---------------------


def test_highlighting_at_w0_with_null_inversion_reproduces_the_mixture_latents(zs, wave, monkeypatch):
    x0 = _x0(zs, wave)
    scheduler = make_scheduler(zs.pipe.scheduler.config, 10)
    noise_for = GuidedNoise(zs._predict, guidance=0.0)
    spy = UNetSpy(zs, monkeypatch)
    # DDPM inversion with the null c_inv, z kept at the last step; the reverse asks for "cello" at w = 0.
    x_top, maps = ddpm_invert(scheduler, x0, lambda x, t: noise_for(x, t, [""]),
                              auxiliary_noise(tuple(x0.shape), 10, seed=3), zero_last=False)
    rebuilt = reverse(scheduler, x_top, lambda x, t: noise_for(x, t, ["cello"]), maps)
    assert (rebuilt - x0).abs().max() < 1e-4 * x0.abs().max()
    assert spy.conditional == 0 and spy.unconditional_rows == 2 * 10  # c_rev was never looked at

    # Through the public call (last z = 0) every source gets the same stem at w = 0: the mixture's reconstruction.
    stems = zs.separate(wave, ["cello", "flute"], steps=STEPS, guidance=0.0, inv_prompt="null")
    assert stems.abs().max() > 1e-2
    torch.testing.assert_close(stems[0], stems[1], rtol=0, atol=1e-6 * float(stems.abs().max()))


# -- iterative separation: passes = K feeds each stem back as the mixture ------------------------------------------


@pytest.mark.parametrize("inversion", ["ddpm", "ddim"])
def test_one_pass_is_the_single_separation_bit_for_bit(zs, wave, inversion):
    # The separation written out by hand from its parts: normalise, pad, encode, invert, reverse, decode, trim.
    scaled, unscale = mel.normalise(wave)
    x0 = zs._encode(mel.pad_to_multiple(scaled, zs.backbone.frame_multiple))
    config = zs.pipe.scheduler.config
    scheduler = make_scheduler(config, STEPS)
    noise_for = GuidedNoise(zs._predict, guidance=1.0)
    with torch.no_grad():
        if inversion == "ddpm":  # every inversion timestep in one forward, as the separator makes it
            x_top, maps = ddpm_invert_batched(scheduler, x0, inversion_eps(_run(noise_for), [""]),
                                              auxiliary_noise(tuple(x0.shape), STEPS, seed=42))
        else:
            x_top, maps = ddim_invert(make_inverse_scheduler(config, STEPS), x0,
                                      lambda x, t: noise_for(x, t, [""])), None
        latents = reverse(scheduler, x_top, lambda x, t: noise_for(x, t, ["cello"]), maps)
        expected = zs._decode(latents)[:, 0, :LENGTH] * unscale

    result = zs.separate_detailed(wave, ["cello"], inversion=inversion, steps=STEPS, passes=1)
    assert torch.equal(result.stems, expected)
    assert torch.equal(zs.separate(wave, ["cello"], inversion=inversion, steps=STEPS), expected)  # the default
    assert result.details["passes"] == 1 and result.details["unet_evaluations_per_pass"] == [result.unet_evaluations]


def test_pass_two_separates_each_stem_of_pass_one_again(zs, wave):
    first = zs.separate(wave, ["cello", "flute"], steps=STEPS, inv_prompt="null")
    two = zs.separate_detailed(wave, ["cello", "flute"], steps=STEPS, inv_prompt="null", passes=2)
    # Each stem of pass 1 is its own mixture now: separating it alone with the same prompts and seed is pass 2.
    again = torch.cat([zs.separate(first[i], [source], steps=STEPS, inv_prompt="null")
                       for i, source in enumerate(["cello", "flute"])])
    scale = float(again.abs().max())
    assert scale > 1e-2
    torch.testing.assert_close(two.stems, again, rtol=0, atol=1e-4 * scale)
    assert not torch.allclose(two.stems, first, atol=1e-2 * scale)  # the second pass did change the stems
    # Pass 1 shares the null inversion; pass 2 inverts each source's own stem.
    assert two.details["unet_evaluations_per_pass"] == [(STEPS - 1) + 2 * STEPS, 2 * (STEPS - 1) + 2 * STEPS]
    assert two.unet_evaluations == sum(two.details["unet_evaluations_per_pass"])


def test_later_passes_keep_c_rev_and_c_inv_and_take_the_previous_stems_as_input(zs, wave, monkeypatch):
    features_inputs, prompts = [], []
    real_log_mel, real_predict = mel.log_mel, zs._predict
    monkeypatch.setattr(mel, "log_mel", lambda w: features_inputs.append(w.clone()) or real_log_mel(w))
    monkeypatch.setattr(zs, "_predict", lambda x, t, p, *s: prompts.append(list(p)) or real_predict(x, t, p, *s))
    seen = []
    result = zs.separate_detailed(wave, ["cello", "flute"], steps=STEPS, passes=3, progress=lambda *a: seen.append(a))

    # c_inv = the other source: all inversion timesteps in one forward, then one forward per reverse step.
    one_pass = [["flute", "cello"] * (STEPS - 1)] + [["cello", "flute"]] * STEPS
    assert prompts == one_pass * 3
    assert result.inversion_prompts == ["flute", "cello"]
    assert len(features_inputs) == 1 + 2 + 2  # the mixture, then each source's stem in passes 2 and 3
    monkeypatch.undo()
    pass_two = zs.separate(wave, ["cello", "flute"], steps=STEPS, passes=2)  # pass 2's stems are pass 3's input
    expected = [mel.pad_to_multiple(mel.normalise(stem)[0], zs.backbone.frame_multiple) for stem in pass_two]
    for seen_input, stem in zip(features_inputs[3:], expected):
        torch.testing.assert_close(seen_input, stem, rtol=0, atol=1e-6)
    assert seen[-1] == (6 * STEPS, 6 * STEPS) and len(seen) == 6 * STEPS
    assert result.unet_evaluations == 3 * (2 * (STEPS - 1) + 2 * STEPS)


@pytest.mark.parametrize("inversion, inversion_evaluations", [("ddpm", STEPS - 1), ("ddim", STEPS)])
def test_null_inversion_is_computed_once_for_all_sources(zs, wave, monkeypatch, inversion, inversion_evaluations):
    spy = UNetSpy(zs, monkeypatch)
    result = zs.separate_detailed(wave, SOURCES, inversion=inversion, steps=STEPS, inv_prompt="null")
    assert result.inversion_prompts == ["", "", ""]
    assert result.unet_evaluations == inversion_evaluations + len(SOURCES) * STEPS
    assert spy.unconditional_rows == inversion_evaluations  # the shared inversion with the empty prompt


def test_same_seed_gives_identical_stems_and_another_seed_does_not(zs, wave):
    first = zs.separate(wave, ["cello", "flute"], steps=STEPS, seed=5)
    again = zs.separate(wave, ["cello", "flute"], steps=STEPS, seed=5)
    other = zs.separate(wave, ["cello", "flute"], steps=STEPS, seed=6)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("inversion", ["ddpm", "ddim"])
def test_batched_equals_one_at_a_time(zs, wave, inversion):
    together = zs.separate(wave, SOURCES, inversion=inversion, steps=STEPS, inv_prompt="null", guidance=1.5)
    alone = torch.cat([zs.separate(wave, [s], inversion=inversion, steps=STEPS, inv_prompt="null", guidance=1.5)
                       for s in SOURCES])
    scale = together.abs().max()
    assert scale > 1e-2  # the tiny model makes audible-scale stems, so the comparison means something
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-4 * scale)

    split = ZeroSep(zs.pipe, zs.model_id, zs.device, zs.dtype, batch_size=1)
    one_by_one = split.separate(wave, SOURCES, inversion=inversion, steps=STEPS, inv_prompt="others", guidance=1.5)
    batched = zs.separate(wave, SOURCES, inversion=inversion, steps=STEPS, inv_prompt="others", guidance=1.5)
    torch.testing.assert_close(one_by_one, batched, rtol=0, atol=1e-4 * scale)


def test_each_stem_follows_its_own_prompt(zs, wave):
    """A stem belongs to its prompt, not to its place in the list: listing the sources the other way round gives
    the same stems the other way round, and the two prompts give clearly different stems."""
    stems = zs.separate(wave, ["cello", "flute"], steps=STEPS)
    swapped = zs.separate(wave, ["flute", "cello"], steps=STEPS)
    scale = float(stems.abs().max())
    torch.testing.assert_close(swapped.flip(0), stems, rtol=0, atol=1e-4 * scale)
    apart = float((stems[0] - stems[1]).pow(2).mean().sqrt() / stems.pow(2).mean().sqrt())
    assert apart > 0.1, f"the two prompts gave nearly the same stem ({apart:.3f} of the RMS apart)"


# -- the public call ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [LENGTH, 10_240, 300])
def test_stems_have_the_input_length_and_are_float32_cpu(zs, length):
    wave = np.random.default_rng(0).standard_normal(length).astype(np.float64) * 0.1  # numpy input works too
    stems = zs.separate(wave, ["cello", "flute"], steps=2)
    assert stems.shape == (2, length)
    assert stems.dtype == torch.float32 and stems.device.type == "cpu"
    assert torch.isfinite(stems).all()


def test_output_is_returned_at_the_input_scale(zs, wave):
    quiet = zs.separate(wave * 0.1, ["cello"], steps=STEPS)
    loud = zs.separate(wave, ["cello"], steps=STEPS)
    # Both are peak-normalised to the same model input up to float32 rounding, which the VAE, UNet and vocoder
    # carry through at ~1e-5 of the stem's peak; a wrong scale would be off by 10x.
    assert loud.abs().max() > 1e-2
    torch.testing.assert_close(quiet * 10, loud, rtol=0, atol=1e-4 * loud.abs().max())


def test_detailed_result_reports_prompts_retries_work_and_progress(zs, wave):
    seen = []
    result = zs.separate_detailed(wave, SOURCES, steps=STEPS, progress=lambda done, total: seen.append((done, total)))
    assert result.inversion_prompts == ["flute, violin", "cello, violin", "cello, flute"]
    assert result.fp32_retry == [False, False, False]
    assert result.unet_evaluations == 3 * (STEPS - 1) + 3 * STEPS
    assert seen[-1] == (2 * STEPS, 2 * STEPS) and len(seen) == 2 * STEPS
    assert result.stems.shape == (3, LENGTH)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sources=[]), "at least one"),
        (dict(sources="cello"), "list of prompts"),
        (dict(sources=["cello", "cello"]), "duplicates"),
        (dict(sources=["cello", " "]), "non-empty"),
        (dict(steps=0), "steps must be"),
        (dict(steps=2.5), "steps must be"),
        (dict(inversion="sde"), "'ddpm'"),
        (dict(guidance=-1.0), "guidance must be"),
        (dict(guidance=float("nan")), "guidance must be"),
        (dict(inv_prompt="target"), "others, null"),
        (dict(seed="forty-two"), "seed must be"),
        (dict(passes=0), "passes must be"),
        (dict(passes=1.5), "passes must be"),
        (dict(sample_rate=44_100), "resample"),
        (dict(wave=torch.zeros(2, 1_000)), "must be mono, .*got 2 channels"),
        (dict(wave=torch.zeros(0)), "empty"),
        (dict(wave=torch.full((100,), float("nan"))), "NaN"),
        (dict(wave=[0.0, 0.1]), "torch tensor or numpy array"),
    ],
)
def test_invalid_arguments_raise_value_errors_that_say_what_to_pass(zs, wave, kwargs, message):
    call = dict(wave=wave, sources=["cello"], steps=2)
    call.update(kwargs)
    with pytest.raises(ValueError, match=message):
        zs.separate(**call)


def test_batch_size_must_be_positive(zs):
    with pytest.raises(ValueError, match="batch_size"):
        ZeroSep(zs.pipe, zs.model_id, zs.device, zs.dtype, batch_size=0)


def test_non_finite_stems_at_reduced_precision_are_recomputed_in_fp32(tiny_audioldm2_dir, wave, monkeypatch):
    low = ZeroSep.from_pretrained(tiny_audioldm2_dir, device="cpu", dtype="bf16")
    reference = ZeroSep.from_pretrained(tiny_audioldm2_dir, device="cpu", dtype="fp32")
    # The fp32 rerun uses the (bf16-rounded) UNet weights the low-precision model has: the reference does the
    # same (the text encoders are float32 in both).
    reference.pipe.unet.to(torch.bfloat16).to(torch.float32)

    original = low.pipe.unet.forward

    def overflowing_in_bf16(sample, *args, **kwargs):
        out = original(sample, *args, **kwargs)
        if sample.dtype == torch.bfloat16:
            return (out[0] * float("inf"),)
        return out

    monkeypatch.setattr(low.pipe.unet, "forward", overflowing_in_bf16)
    result = low.separate_detailed(wave, ["cello", "flute"], steps=3)
    assert result.fp32_retry == [True, True]
    assert torch.isfinite(result.stems).all()
    expected = reference.separate(wave, ["cello", "flute"], steps=3)
    torch.testing.assert_close(result.stems, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())
    assert low.pipe.unet.dtype == torch.bfloat16  # back to the compute precision afterwards


def test_ddim_inversion_runs_in_float32_at_reduced_precision_and_the_reverse_pass_does_not(tiny_audioldm2_dir, wave,
                                                                                            monkeypatch):
    low = ZeroSep.from_pretrained(tiny_audioldm2_dir, device="cpu", dtype="bf16")
    dtypes = []
    original = low.pipe.unet.forward

    def recording(sample, *args, **kwargs):
        dtypes.append((sample.dtype, next(low.pipe.unet.parameters()).dtype))
        return original(sample, *args, **kwargs)

    monkeypatch.setattr(low.pipe.unet, "forward", recording)
    low.separate(wave, ["cello", "flute"], inversion="ddim", steps=STEPS)
    assert dtypes == [(torch.float32, torch.float32)] * STEPS + [(torch.bfloat16, torch.bfloat16)] * STEPS
    assert low.pipe.unet.dtype == torch.bfloat16 and low.backbone.text_modules[0].dtype == torch.float32

    dtypes.clear()  # DDPM inversion does not chain its steps (benchmarks/inversion_precision.py): no change there
    low.separate(wave, ["cello", "flute"], inversion="ddpm", steps=STEPS)
    assert dtypes == [(torch.bfloat16, torch.bfloat16)] * (1 + STEPS)  # the whole inversion in one forward


def test_audioldm_v1_separates_with_its_clap_class_label_conditioning(zs_v1, wave, monkeypatch):
    spy = UNetSpy(zs_v1, monkeypatch)
    result = zs_v1.separate_detailed(wave, ["cello", "flute"], steps=STEPS)
    assert result.stems.shape == (2, LENGTH) and torch.isfinite(result.stems).all()
    assert spy.unconditional_rows == 0
    assert result.unet_evaluations == 2 * (STEPS - 1) + 2 * STEPS
    embedding = zs_v1.backbone.encode("cello", zs_v1.device)["clap"]
    torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(1))  # the normalised CLAP text embedding


@pytest.mark.parametrize("fixture", ["tiny_audioldm2_dir", "tiny_tango_dir", "tiny_stable_audio_3_dir"])
def test_half_precision_runs_only_the_denoiser_in_fp16(fixture, request):
    # Flan-T5 (AudioLDM2's text_encoder_2, Tango's encoder) overflows in float16 in its feed-forward output, which
    # transformers keeps in float32 (_keep_in_fp32_modules); autosep keeps every text encoder in float32.
    low = ZeroSep.from_pretrained(request.getfixturevalue(fixture), device="cpu", dtype="fp16")
    assert {p.dtype for p in low.backbone.denoiser.parameters()} == {torch.float16}
    for module in [*low.backbone.text_modules, *low.backbone.float32_modules]:
        assert {p.dtype for p in module.parameters() if p.is_floating_point()} <= {torch.float32}, type(module)
    kept = [name for module in low.backbone.text_modules for name in getattr(module, "_keep_in_fp32_modules", None)
            or []]
    if fixture != "tiny_stable_audio_3_dir":
        assert "wo" in kept  # the T5 encoders the fix is about are among them
    conditioning = low._conditioning("a dog barking")
    assert all(t.dtype in (torch.float32, torch.int64, torch.bool) for t in conditioning.values())
    batch = low.backbone.stack([conditioning], low._compute_dtype)
    assert all(v.dtype in (torch.float16, torch.int64, torch.bool) or not v.is_floating_point()
               for v in batch.values() if isinstance(v, torch.Tensor))
