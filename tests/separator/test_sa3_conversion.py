"""Stable Audio 3's original stable-audio-tools checkpoint, converted to a diffusers pipeline on first load.

The test writes a tiny checkpoint laid out as Stability publishes it (``model.safetensors`` + ``model_config.json``),
named after the upstream module tree of Stability-AI/stable-audio-3 (see ``original_state`` for where each name
comes from) and, like the published one, without the frozen T5Gemma inside: the text encoder is a tiny
``google/t5gemma-b-b-ul2`` (an encoder-decoder model, as published) in the Hugging Face cache. It loads the
checkpoint through the user's paths (a local folder; the hub id offline with the files in the cache; ``autosep
models download``) and checks that the converted pipeline holds exactly the weights it came from and separates
the same as the diffusers-format pipeline.
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

# stable-audio-3 models/blocks.py TransformerBlock: pre_norm, self_attn, ff_norm, ff (FeedForward: ff = [GLU with
# .proj, activation, Linear]); diffusers' SAME blocks call them norm_attn, attn, norm_ff, ff.proj_in / ff.proj_out.
_UPSTREAM_BLOCK = [("norm_attn.", "pre_norm."), ("attn.", "self_attn."), ("norm_ff.", "ff_norm."),
                   ("ff.proj_in.", "ff.ff.0.proj."), ("ff.proj_out.", "ff.ff.2.")]


def _upstream_qkv(weight):
    """Differential self-attention: upstream fuses [q | k | v | q2 | k2] (diffusers [q | q2 | k | k2 | v])."""
    q, q2, k, k2, v = weight.chunk(5, dim=0)
    return torch.cat([q, k, v, q2, k2])


def _vae_state(pipe) -> dict[str, torch.Tensor]:
    """``pretransform.model.*``: the AudioAutoencoder (models/autoencoders.py) of an AutoencoderPretransform.

    SAMEEncoder.layers = [TransformerResamplingBlock x depth, Transpose, Linear, Transpose]; SAMEDecoder.layers =
    [Transpose, Linear, Transpose, TransformerResamplingBlock x depth]; each block holds mapping, new_tokens and
    transformers.{j}. The SoftNormBottleneck (models/bottleneck.py) holds scaling_factor, bias and
    noise_scaling_factor, and running_std only when built with auto_scale (not here)."""
    out, depth = {}, len(pipe.vae.config.encoder_strides)
    for key, value in pipe.vae.state_dict().items():
        if key.endswith("to_qkv.weight") and pipe.vae.config.use_differential_attention:
            value = _upstream_qkv(value)
        if match := re.match(r"(encoder|decoder)\.blocks\.(\d+)\.(.*)", key):
            side, index, local = match.groups()
            index = int(index) if side == "encoder" else 3 + int(index)
            if local.startswith("transformers."):
                head, rest = local.split(".", 2)[:2], local.split(".", 2)[2]
                rest = next((old + rest[len(new):] for new, old in _UPSTREAM_BLOCK if rest.startswith(new)), rest)
                local = ".".join(head) + "." + rest
            out[f"pretransform.model.{side}.layers.{index}.{local}"] = value
        elif key.startswith("encoder.proj."):
            out[f"pretransform.model.encoder.layers.{depth + 1}.{key[len('encoder.proj.'):]}"] = value
        elif key.startswith("decoder.proj."):
            out[f"pretransform.model.decoder.layers.1.{key[len('decoder.proj.'):]}"] = value
        elif key == "bottleneck.scale":
            out["pretransform.model.bottleneck.scaling_factor"] = value
        elif key == "bottleneck.bias":
            out["pretransform.model.bottleneck.bias"] = value
    out["pretransform.model.bottleneck.noise_scaling_factor"] = torch.ones(1, 0, 1)  # noise_augment_dim 0
    return out


def _dit_state(pipe) -> dict[str, torch.Tensor]:
    """``model.model.*``: the DiffusionTransformer (models/dit.py) around its ContinuousTransformer
    (models/transformer.py: project_in, project_out, memory_tokens, rotary_pos_emb, global_cond_embedder,
    layers.{i}), with to_timestep_embed, to_cond_embed, to_global_embed, preprocess_conv and postprocess_conv."""
    out = {}
    for key, value in pipe.transformer.state_dict().items():
        if key.endswith("self_attn.to_qkv.weight") and pipe.transformer.config.use_differential_attention:
            value = _upstream_qkv(value)
        if match := re.match(r"transformer_blocks\.(\d+)\.(.*)", key):
            local = match.group(2).replace("ff.proj_in.", "ff.ff.0.proj.").replace("ff.proj_out.", "ff.ff.2.")
            out[f"model.model.transformer.layers.{match.group(1)}.{local}"] = value
        elif key == "prompt_padding_embedding":  # the learned padding of the prompt conditioner (conditioners.py)
            out["conditioner.conditioners.prompt.padding_embedding"] = value
        elif key in ("proj_in.weight", "proj_out.weight"):
            out[f"model.model.transformer.project_{key[5:]}"] = value
        elif key.split(".")[0] in ("memory_tokens", "rotary_pos_emb", "global_cond_embedder"):
            out["model.model.transformer." + key] = value
        else:
            out["model.model." + key] = value
    return out


def original_state(pipe) -> dict[str, torch.Tensor]:
    """The tiny pipeline's weights under the names the upstream module tree gives them. The conditioners
    (models/conditioners.py): seconds_total is a NumberConditioner whose NumberEmbedder.embedding is
    [ExpoFourierFeatures, Linear] (index 1 holds the weights); prompt is a T5GemmaConditioner whose frozen model
    sits in ``__dict__``, outside the module tree, so the checkpoint carries none of its tensors."""
    out = {**_vae_state(pipe), **_dit_state(pipe)}
    for key, value in pipe.duration_embedder.state_dict().items():
        if key.startswith("linear."):
            out["conditioner.conditioners.seconds_total.embedder.embedding.1." + key[len("linear."):]] = value
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
                "decoder": {"type": "same", "config": {"sinusoidal_blocks": [0]}},
                "bottleneck": {"type": "soft_norm", "config": {"dim": vae.latent_dim}}}},
            "conditioning": {"configs": [
                {"id": "prompt", "type": "t5gemma", "config": {"model_name": "google/t5gemma-b-b-ul2",
                                                               "padding_mode": "learned"}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 384}}]},
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
    state = original_state(pipe)
    assert not any(k.startswith("conditioner.conditioners.prompt.model.") for k in state)  # as published
    save_file(state, str(folder / "model.safetensors"))
    (folder / "model_config.json").write_text(json.dumps(model_config(pipe)))
    return folder


@pytest.fixture(scope="module")
def t5gemma_in_cache(tiny_differential_sa3, tmp_path_factory):
    """google/t5gemma-b-b-ul2 as its download leaves it: an encoder-decoder T5Gemma (config, tokenizer,
    weights), here with the tiny pipeline's encoder weights and a random decoder."""
    from transformers import T5GemmaConfig, T5GemmaForConditionalGeneration

    from tiny_models.audioldm2 import install_in_hf_cache

    _, pipe = tiny_differential_sa3
    config = T5GemmaConfig(**{**pipe.text_encoder.config.to_dict(), "is_encoder_decoder": True})
    full = T5GemmaForConditionalGeneration(config)
    missing = full.model.encoder.load_state_dict(pipe.text_encoder.encoder.state_dict())
    assert not missing.missing_keys
    folder = tmp_path_factory.mktemp("t5gemma")
    full.save_pretrained(folder)
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
    assert "noise_scaling_factor" in caplog.text  # the tensor diffusers has no use for is named
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
    from autosep.cli import main

    _, pipe = tiny_differential_sa3
    # `autosep models download` makes the run's own download: the checkpoint and T5Gemma's repository, converted.
    assert main(["models", "download", "stable-audio-3"]) == 0
    converted = next(sa3_convert.converted_root("stabilityai/stable-audio-3-medium-base").glob("*/model_index.json"))
    assert list((converted.parent / "text_encoder").glob("*.safetensors"))
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


def test_a_text_encoder_not_in_the_cache_is_named_with_what_to_do(original_folder, tmp_path):
    import shutil

    folder = tmp_path / "sa3"
    shutil.copytree(original_folder, folder)
    config = json.loads((folder / "model_config.json").read_text())
    config["model"]["conditioning"]["configs"][0]["config"]["model_name"] = "someone/t5gemma-never-downloaded"
    (folder / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotAvailableError, match=r"someone/t5gemma-never-downloaded.*hf download"):
        ZeroSep.from_pretrained(folder, device="cpu")


def test_a_gated_t5gemma_is_named_as_the_repository_to_accept(original_folder, tmp_path, monkeypatch):
    import shutil

    import transformers
    from huggingface_hub.errors import GatedRepoError

    from httpx2 import Request, Response  # huggingface_hub's own HTTP types (it builds its errors from them)

    def gated(source, *args, **kwargs):
        url = f"https://huggingface.co/api/models/{source}"
        response = Response(401, request=Request("GET", url), headers={"x-error-code": "GatedRepo"})
        try:
            raise GatedRepoError(f"401 Client Error. Cannot access gated repo for url {url}.", response=response)
        except GatedRepoError as exc:
            raise OSError(f"You are trying to access a gated repo: {source}") from exc

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", gated)
    folder = tmp_path / "sa3"
    shutil.copytree(original_folder, folder)
    with pytest.raises(ModelNotAvailableError, match=r"'google/t5gemma-b-b-ul2' \(needed by .*\) is gated") as info:
        ZeroSep.from_pretrained(folder, device="cpu")
    assert "accept its licence" in str(info.value) and "hf auth login" in str(info.value)
