"""Stable Audio 3's original stable-audio-tools checkpoint, converted to a diffusers pipeline on first load.

The test writes a tiny checkpoint in the original layout (``model.safetensors`` + ``model_config.json``) from a
tiny diffusers pipeline by the inverse of the documented key map, then loads it through the user's paths (a local
folder; the hub id in offline mode with the files in the Hugging Face cache) and checks that the converted
pipeline holds exactly the weights it came from and separates the same as the diffusers-format pipeline.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from autosep.errors import ModelNotAvailableError
from autosep.separator import ZeroSep
from autosep.separator import sa3_convert

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_VAE_INVERSE = [("norm_attn.", "pre_norm."), ("attn.", "self_attn."), ("norm_ff.", "ff_norm."),
                ("ff.proj_in.", "ff.ff.0.proj."), ("ff.proj_out.", "ff.ff.2.")]


def _original_qkv(weight):  # diffusers [q | q2 | k | k2 | v] -> original [q | k | v | q2 | k2]
    q, q2, k, k2, v = weight.chunk(5, dim=0)
    return torch.cat([q, k, v, q2, k2])


def to_original(pipe) -> dict[str, torch.Tensor]:
    """The tiny pipeline's weights under the original checkpoint's names and layout."""
    out = {}
    vae = pipe.vae.state_dict()
    depth = len(pipe.vae.config.encoder_strides)
    for key, value in vae.items():
        if key.endswith("to_qkv.weight") and pipe.vae.config.use_differential_attention:
            value = _original_qkv(value)
        match = re.match(r"(encoder|decoder)\.blocks\.(\d+)\.(.*)", key)
        if match:
            side, index, local = match.groups()
            index = int(index) if side == "encoder" else 3 + int(index)
            if local.startswith("transformers."):
                head, rest = local.split(".", 2)[:2], local.split(".", 2)[2]
                for new, old in _VAE_INVERSE:
                    if rest.startswith(new):
                        rest = old + rest[len(new):]
                        break
                local = ".".join(head) + "." + rest
            out[f"pretransform.model.{side}.layers.{index}.{local}"] = value
        elif key.startswith("encoder.proj."):
            out[f"pretransform.model.encoder.layers.{depth + 1}.{key[len('encoder.proj.'):]}"] = value
        elif key.startswith("decoder.proj."):
            out[f"pretransform.model.decoder.layers.1.{key[len('decoder.proj.'):]}"] = value
        else:
            out["pretransform.model." + key.replace("bottleneck.scale", "bottleneck.scaling_factor")] = value
    for key, value in pipe.transformer.state_dict().items():
        if key.endswith("self_attn.to_qkv.weight") and pipe.transformer.config.use_differential_attention:
            value = _original_qkv(value)
        match = re.match(r"transformer_blocks\.(\d+)\.(.*)", key)
        if match:
            local = match.group(2).replace("ff.proj_in.", "ff.ff.0.proj.").replace("ff.proj_out.", "ff.ff.2.")
            out[f"model.model.transformer.layers.{match.group(1)}.{local}"] = value
        elif key == "prompt_padding_embedding":
            out["conditioner.conditioners.prompt.padding_embedding"] = value
        elif key in ("proj_in.weight", "proj_out.weight"):
            out[f"model.model.transformer.project_{key[5:]}"] = value
        elif key.split(".")[0] in ("memory_tokens", "rotary_pos_emb", "global_cond_embedder"):
            out["model.model.transformer." + key] = value
        else:
            out["model.model." + key] = value
    for key, value in pipe.duration_embedder.state_dict().items():
        if key.startswith("linear."):
            out["conditioner.conditioners.seconds_total.embedder.embedding.1." + key[len("linear."):]] = value
    for key, value in pipe.text_encoder.state_dict().items():
        out["conditioner.conditioners.prompt.model." + key] = value
    out["pretransform.model.noise_scaling_factor"] = torch.ones(1)  # a tensor the diffusers pipeline has no use for
    return {k: v.contiguous().clone() for k, v in out.items()}


def model_config(pipe) -> dict:
    vae = pipe.vae.config
    return {
        "model_type": "diffusion_cond", "sample_rate": vae.sampling_rate, "audio_channels": 2,
        "model": {
            "pretransform": {"type": "autoencoder", "config": {
                "io_channels": vae.audio_channels, "downsampling_ratio": pipe.vae.downsampling_ratio,
                "encoder": {"type": "same", "config": {
                    "channels": vae.encoder_channels, "c_mults": list(vae.encoder_c_mults),
                    "strides": list(vae.encoder_strides), "transformer_depths": list(vae.encoder_transformer_depths),
                    "latent_dim": vae.latent_dim, "sliding_window": [vae.sliding_window, vae.sliding_window]}},
                "decoder": {"type": "same", "config": {"sinusoidal_blocks": [0]}}}},
            "conditioning": {"configs": [{"id": "seconds_total", "type": "number",
                                          "config": {"min_val": 0, "max_val": 384}}]},
            "diffusion": {"diffusion_objective": "rectified_flow"},
        },
    }


@pytest.fixture(scope="module")
def tiny_differential_sa3(tmp_path_factory):
    from diffusers import StableAudio3Pipeline

    from tiny_models.stable_audio import build_tiny_stable_audio_3

    folder = build_tiny_stable_audio_3(tmp_path_factory.mktemp("tiny-sa3-diff"), seed=3, differential=True)
    return folder, StableAudio3Pipeline.from_pretrained(folder)


@pytest.fixture(scope="module")
def original_folder(tiny_differential_sa3, tmp_path_factory):
    from safetensors.torch import save_file

    _, pipe = tiny_differential_sa3
    folder = tmp_path_factory.mktemp("sa3-original")
    save_file(to_original(pipe), str(folder / "model.safetensors"))
    (folder / "model_config.json").write_text(json.dumps(model_config(pipe)))
    return folder


@pytest.fixture(scope="module")
def t5gemma_in_cache(tiny_differential_sa3, tmp_path_factory):
    # google/t5gemma-b-b-ul2's config and tokenizer files, as a download leaves them (no weights needed).
    from tiny_models.audioldm2 import install_in_hf_cache

    _, pipe = tiny_differential_sa3
    folder = tmp_path_factory.mktemp("t5gemma")
    pipe.text_encoder.config.save_pretrained(folder)
    pipe.tokenizer.save_pretrained(folder)
    install_in_hf_cache(folder, sa3_convert.DEFAULT_TEXT_ENCODER)


def assert_same_weights(converted, pipe):
    for name in ("vae", "transformer", "duration_embedder", "text_encoder"):
        ours, theirs = getattr(converted, name).state_dict(), getattr(pipe, name).state_dict()
        assert ours.keys() == theirs.keys(), name
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), f"{name}.{key}"
    public = lambda config: {k: v for k, v in dict(config).items() if not k.startswith("_")}  # noqa: E731
    assert public(converted.vae.config) == public(pipe.vae.config)
    assert public(converted.transformer.config) == public(pipe.transformer.config)
    assert not converted.scheduler.config.stochastic_sampling


def test_a_local_original_checkpoint_is_converted_once_and_separates_like_the_diffusers_pipeline(
        tiny_differential_sa3, original_folder, t5gemma_in_cache, monkeypatch, caplog):
    diffusers_folder, pipe = tiny_differential_sa3
    zs = ZeroSep.from_pretrained(original_folder, device="cpu")
    assert_same_weights(zs.pipe, pipe)
    assert "noise_scaling_factor" in caplog.text  # the unused tensor is named
    wave = torch.randn(2, 13_000, generator=torch.Generator().manual_seed(0)) * 0.1
    reference = ZeroSep.from_pretrained(diffusers_folder, device="cpu")
    assert torch.allclose(zs.separate(wave, ["cello", "flute"], steps=3),
                          reference.separate(wave, ["cello", "flute"], steps=3), atol=1e-6)
    # The second load reads the converted pipeline from autosep's cache.
    monkeypatch.setattr(sa3_convert, "convert", lambda *a, **k: pytest.fail("converted twice"))
    assert_same_weights(ZeroSep.from_pretrained(original_folder, device="cpu").pipe, pipe)


@pytest.fixture
def sa3_repo_in_cache(original_folder):
    """The original files as the hub alias' download leaves them; removed afterwards (with the conversion), so
    no other test finds stable-audio-3 in the session's caches."""
    import shutil

    from tiny_models.audioldm2 import install_in_hf_cache

    repo = "stabilityai/stable-audio-3-medium-base"
    snapshot = install_in_hf_cache(original_folder, repo)
    yield repo
    shutil.rmtree(snapshot.parents[1], ignore_errors=True)
    shutil.rmtree(sa3_convert.converted_root(repo), ignore_errors=True)


def test_the_hub_alias_converts_the_cached_original_files_offline(sa3_repo_in_cache, tiny_differential_sa3,
                                                                  t5gemma_in_cache, monkeypatch):
    _, pipe = tiny_differential_sa3
    zs = ZeroSep.from_pretrained("stable-audio-3", device="cpu")
    assert zs.model_id == "stabilityai/stable-audio-3-medium-base" and zs.channels == 2
    assert_same_weights(zs.pipe, pipe)
    converted = sa3_convert.converted_root("stabilityai/stable-audio-3-medium-base")
    assert list(converted.glob("*/model_index.json"))
    monkeypatch.setattr(sa3_convert, "convert", lambda *a, **k: pytest.fail("converted twice"))
    ZeroSep.from_pretrained("stable-audio-3", device="cpu")


def test_a_checkpoint_missing_weights_is_refused_naming_them(original_folder, t5gemma_in_cache, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(original_folder / "model.safetensors"))
    del state["model.model.transformer.layers.1.cross_attn.to_kv.weight"]
    broken = tmp_path / "broken"
    broken.mkdir()
    save_file(state, str(broken / "model.safetensors"))
    (broken / "model_config.json").write_text((original_folder / "model_config.json").read_text())
    with pytest.raises(ModelNotAvailableError, match=r"transformer_blocks\.1\.cross_attn\.to_kv\.weight"):
        ZeroSep.from_pretrained(broken, device="cpu")
    assert not any(sa3_convert.converted_root("x").parent.glob(".converting-*"))  # nothing half-written
