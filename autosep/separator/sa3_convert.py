"""Stable Audio 3's original stable-audio-tools checkpoint -> a diffusers ``StableAudio3Pipeline``, once, cached.

Stability AI publishes Stable Audio 3 as ``model.safetensors`` + ``model_config.json`` (stable-audio-tools layout),
not as a diffusers pipeline. autosep converts it on first load and saves the pipeline under
``AUTOSEP_CACHE/converted/<repo>/<revision>/`` (written to a temporary folder, renamed when complete); later runs,
online or offline, load that folder.

The key map (the key names and the one layout change are those of diffusers'
``scripts/convert_stable_audio_3_to_diffusers.py``):

====================================================  ===========================================================
original (``model.safetensors``)                      diffusers component and key
====================================================  ===========================================================
``pretransform.model.encoder.layers.{i}.`` (i < d)    ``vae``: ``encoder.blocks.{i}.`` (resampling blocks)
``pretransform.model.encoder.layers.{d+1}.``          ``vae``: ``encoder.proj.`` (the Linear after d blocks + 1
                                                      Transpose)
``pretransform.model.decoder.layers.1.``              ``vae``: ``decoder.proj.`` ([Transpose, Linear, Transpose,
                                                      blocks...])
``pretransform.model.decoder.layers.{3+i}.``          ``vae``: ``decoder.blocks.{i}.``
``pretransform.model.bottleneck.scaling_factor``      ``vae``: ``bottleneck.scale`` (``bias``, ``running_std`` kept)
inside a VAE block: ``pre_norm.`` / ``ff_norm.`` /    ``norm_attn.`` / ``norm_ff.`` / ``attn.`` / ``ff.proj_in.``
``self_attn.`` / ``ff.ff.0.proj.`` / ``ff.ff.2.``     / ``ff.proj_out.``
``model.model.transformer.layers.{i}.``               ``transformer``: ``transformer_blocks.{i}.`` (``ff.ff.0.proj.``
                                                      -> ``ff.proj_in.``, ``ff.ff.2.`` -> ``ff.proj_out.``)
``model.model.transformer.project_in`` / ``_out``     ``transformer``: ``proj_in`` / ``proj_out``
``model.model.transformer.{memory_tokens,             ``transformer``: the same names at the top level
rotary_pos_emb.inv_freq, global_cond_embedder.*}``
``model.model.{to_timestep_embed, to_cond_embed,      ``transformer``: the same names
to_global_embed, preprocess_conv, postprocess_conv}``
``conditioner.conditioners.prompt.padding_embedding`` ``transformer``: ``prompt_padding_embedding``
``conditioner.conditioners.seconds_total.embedder.    ``duration_embedder``: ``linear.`` (``freqs`` is computed)
embedding.1.``
``conditioner.conditioners.prompt.model.`` (only in   ``text_encoder``: T5Gemma encoder, keys unchanged, laid
a checkpoint that trained its text encoder)           over the encoder's own weights
====================================================  ===========================================================

Differential self-attention stores its fused projection as [q | k | v | q2 | k2] in the original and
[q | q2 | k | k2 | v] in diffusers (VAE and DiT ``to_qkv.weight``); the cross-attention layout already agrees.
Configs come from the weights' shapes and, for what the weights cannot tell (the VAE's strides and sliding
window, sampling rate, the duration range, the distilled or base objective), from ``model_config.json``. The
text encoder comes from its own repository (``google/t5gemma-b-b-ul2``, gated: config, tokenizer and weights),
as diffusers' script takes it: Stable Audio 3 keeps its frozen T5Gemma out of the state dict. Every weight of
every diffusers component must be filled (only the bottleneck's ``running_std``, which exists only with
auto-scaling, may be absent: then the identity scale), or the conversion fails naming the missing keys;
original keys that map nowhere are listed in a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from typing import Any

from ..model_files import converted_root
from .loading import exception_chain

import torch

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"
DEFAULT_TEXT_ENCODER = "google/t5gemma-b-b-ul2"

_VAE = "pretransform.model."
_DIT = "model.model."
_PROMPT = "conditioner.conditioners.prompt."
_SECONDS = "conditioner.conditioners.seconds_total.embedder.embedding."

_VAE_BLOCK_RENAMES = [("pre_norm.", "norm_attn."), ("self_attn.", "attn."), ("ff_norm.", "norm_ff."),
                      ("ff.ff.0.proj.", "ff.proj_in."), ("ff.ff.2.", "ff.proj_out.")]
_DIT_BLOCK_RENAMES = [("ff.ff.0.proj.", "ff.proj_in."), ("ff.ff.2.", "ff.proj_out.")]
_DIT_TOP = {"transformer.project_in.weight": "proj_in.weight", "transformer.project_out.weight": "proj_out.weight",
            "transformer.memory_tokens": "memory_tokens",
            "transformer.rotary_pos_emb.inv_freq": "rotary_pos_emb.inv_freq"}


class ConversionError(RuntimeError):
    """The checkpoint does not convert into a complete Stable Audio 3 pipeline."""


# -- the key map ------------------------------------------------------------------------------------------------

def _reorder_qkv(weight: torch.Tensor) -> torch.Tensor:
    """[q | k | v | q2 | k2] (original) -> [q | q2 | k | k2 | v] (diffusers)."""
    q, k, v, q2, k2 = weight.chunk(5, dim=0)
    return torch.cat([q, q2, k, k2, v])


def _rename(local: str, renames: list[tuple[str, str]]) -> str:
    for old, new in renames:
        if local.startswith(old) or f".{old}" in local:
            return local.replace(old, new, 1)
    return local


def _blocks(state: dict, base: str) -> int:
    count = 0
    while f"{base}.{count}.new_tokens" in state:
        count += 1
    return count


def map_keys(state: dict[str, torch.Tensor], differential: dict[str, bool]) -> tuple[dict[str, dict], list[str]]:
    """Split the original state dict into diffusers components' state dicts. Returns (components, unused keys).

    ``differential[component]`` says whether that component's self-attention is differential (5-way to_qkv).
    """
    out: dict[str, dict] = {"vae": {}, "transformer": {}, "duration_embedder": {}, "text_encoder": {}}
    unused = []
    depth = _blocks(state, _VAE + "encoder.layers")
    vae_prefixes = [(f"{_VAE}encoder.layers.{i}.", f"encoder.blocks.{i}.", True) for i in range(depth)]
    vae_prefixes += [(f"{_VAE}decoder.layers.{3 + i}.", f"decoder.blocks.{i}.", True) for i in range(depth)]
    vae_prefixes += [(f"{_VAE}encoder.layers.{depth + 1}.", "encoder.proj.", False),
                     (f"{_VAE}decoder.layers.1.", "decoder.proj.", False),
                     (f"{_VAE}bottleneck.", "bottleneck.", False)]
    for key, value in state.items():
        target = None
        if key.startswith(_VAE):
            for old, new, block in vae_prefixes:
                if key.startswith(old):
                    local = key[len(old):]
                    if block and local.startswith("transformers."):
                        local = _rename(local, _VAE_BLOCK_RENAMES)
                    if new == "bottleneck." and local == "scaling_factor":
                        local = "scale"
                    target = ("vae", new + local)
                    break
        elif key.startswith(_DIT):
            local = key[len(_DIT):]
            match = re.match(r"transformer\.layers\.(\d+)\.(.*)", local)
            if match:
                target = ("transformer", f"transformer_blocks.{match.group(1)}."
                                         f"{_rename(match.group(2), _DIT_BLOCK_RENAMES)}")
            elif local in _DIT_TOP:
                target = ("transformer", _DIT_TOP[local])
            elif local.startswith("transformer.global_cond_embedder."):
                target = ("transformer", local[len("transformer."):])
            elif local.split(".")[0] in {"to_timestep_embed", "to_cond_embed", "to_global_embed",
                                         "preprocess_conv", "postprocess_conv"}:
                target = ("transformer", local)
        elif key == _PROMPT + "padding_embedding":
            target = ("transformer", "prompt_padding_embedding")
        elif key.startswith(_PROMPT + "model."):
            target = ("text_encoder", key[len(_PROMPT + "model."):])
        elif key.startswith(_SECONDS + "1."):
            target = ("duration_embedder", "linear." + key[len(_SECONDS + "1."):])
        if target is None:
            unused.append(key)
            continue
        component, name = target
        if name.endswith("to_qkv.weight") and differential.get(component, False) and "cross_attn" not in name:
            value = _reorder_qkv(value)
        out[component][name] = value
    return out, unused


# -- configs ----------------------------------------------------------------------------------------------------

def _get(config: dict, *path, default=None):
    for key in path:
        if not isinstance(config, dict) or key not in config:
            return default
        config = config[key]
    return config


def vae_config(state: dict, model_config: dict) -> dict:
    depth = _blocks(state, _VAE + "encoder.layers")
    if depth == 0:
        raise ConversionError("no VAE resampling blocks (pretransform.model.encoder.layers.0.new_tokens) found")
    auto = _get(model_config, "model", "pretransform", "config", default={})
    encoder = _get(auto, "encoder", "config", default={})
    decoder = _get(auto, "decoder", "config", default={})
    latent_dim = state[_VAE + "bottleneck.scaling_factor"].shape[1]
    dim = state[_VAE + "encoder.layers.0.new_tokens"].shape[-1]
    qkv = state[_VAE + "encoder.layers.0.transformers.0.self_attn.to_qkv.weight"]
    ff_in = state[_VAE + "encoder.layers.0.transformers.0.ff.ff.0.proj.weight"]
    strides = list(encoder.get("strides") or [])
    if len(strides) != depth:
        raise ConversionError(f"{CONFIG_FILE} must give the VAE encoder's strides (one per block, {depth}); they "
                              "cannot be read from the weights")
    ratio = int(auto.get("downsampling_ratio") or 0)
    if ratio <= 0:
        raise ConversionError(f"{CONFIG_FILE} has no pretransform downsampling_ratio")
    sliding = encoder.get("sliding_window") or [1]
    return {
        "audio_channels": int(auto.get("io_channels", 2)),
        "patch_size": ratio // int(math.prod(strides)),
        "encoder_channels": int(encoder["channels"]),
        "encoder_c_mults": list(encoder["c_mults"]),
        "encoder_strides": strides,
        "encoder_transformer_depths": list(encoder["transformer_depths"]),
        "latent_dim": int(latent_dim),
        "use_differential_attention": qkv.shape[0] == 5 * dim,
        "dim_heads": int(state[_VAE + "encoder.layers.0.transformers.0.self_attn.q_norm.gamma"].shape[0]),
        "ff_mult": int(ff_in.shape[0] // (2 * dim)),
        "sliding_window": int(sliding[0] if isinstance(sliding, (list, tuple)) else sliding),
        "encoder_sinusoidal_blocks": list(encoder.get("sinusoidal_blocks", [0] * depth)),
        "decoder_sinusoidal_blocks": list(decoder.get("sinusoidal_blocks", [0] * depth)),
        "sampling_rate": int(model_config.get("sample_rate", 44100)),
    }


def dit_config(state: dict) -> dict:
    p = _DIT
    timestep = state[p + "to_timestep_embed.0.weight"]
    embed_dim, features = timestep.shape
    depth = 0
    while f"{p}transformer.layers.{depth}.pre_norm.gamma" in state:
        depth += 1
    heads_dim = state[p + "transformer.layers.0.self_attn.q_norm.gamma"].shape[0]
    return {
        "io_channels": int(state[p + "preprocess_conv.weight"].shape[0]),
        "patch_size": int(state[p + "transformer.project_in.weight"].shape[1]
                          // state[p + "preprocess_conv.weight"].shape[0]),
        "embed_dim": int(embed_dim),
        "depth": depth,
        "num_heads": int(embed_dim // heads_dim),
        "cond_token_dim": int(state[p + "to_cond_embed.0.weight"].shape[1]),
        "global_cond_dim": int(state[p + "to_global_embed.0.weight"].shape[1]),
        "local_add_cond_dim": int(state[p + "transformer.layers.0.to_local_embed.0.weight"].shape[1]),
        "timestep_features_dim": int(features),
        "ff_mult": state[p + "transformer.layers.0.ff.ff.0.proj.weight"].shape[0] / (2 * embed_dim),
        "num_memory_tokens": int(state[p + "transformer.memory_tokens"].shape[0]),
        "use_differential_attention": state[p + "transformer.layers.0.self_attn.to_qkv.weight"].shape[0]
        == 5 * embed_dim,
    }


def duration_config(state: dict, model_config: dict) -> dict:
    weight = state[_SECONDS + "1.weight"]
    seconds = next((c.get("config", {}) for c in _get(model_config, "model", "conditioning", "configs", default=[])
                    if isinstance(c, dict) and c.get("id") == "seconds_total"), {})
    return {"output_dim": int(weight.shape[0]), "fourier_dim": int(weight.shape[1]),
            "min_val": float(seconds.get("min_val", 0.0)), "max_val": float(seconds.get("max_val", 384.0))}


def distilled(model_config: dict) -> bool:
    objective = (_get(model_config, "model", "diffusion", "diffusion_objective")
                 or _get(model_config, "model", "diffusion_objective") or model_config.get("diffusion_objective"))
    return objective == "rf_denoiser"


# -- building and caching -------------------------------------------------------------------------------------

def _load_strict(module: torch.nn.Module, state: dict, name: str, optional: tuple[str, ...] = ()) -> list[str]:
    """Load ``state`` into ``module``; every weight must be given (``optional`` buffers may be recomputed).
    Returns the keys of ``state`` the module does not have."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and k not in optional]
    if missing:
        raise ConversionError(f"the checkpoint has no weights for {len(missing)} {name} parameters, e.g. "
                              f"{', '.join(missing[:5])}: not a Stable Audio 3 checkpoint this converter knows")
    for key, value in state.items():
        if key in expected and tuple(expected[key].shape) != tuple(value.shape):
            raise ConversionError(f"{name} {key}: checkpoint shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)}")
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return [k for k in state if k not in expected]


def convert(state: dict[str, torch.Tensor], model_config: dict, text_encoder_source: str | os.PathLike,
            local_files_only: bool = False) -> Any:
    """A float32 ``StableAudio3Pipeline`` from an original checkpoint's state dict and ``model_config.json``."""
    from diffusers import AutoencoderSAME, FlowMatchEulerDiscreteScheduler, StableAudio3DiTModel, StableAudio3Pipeline
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder

    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    vae_cfg = vae_config(state, model_config)
    dit_cfg = dit_config(state)
    components, unused = map_keys(state, {"vae": vae_cfg["use_differential_attention"],
                                          "transformer": dit_cfg["use_differential_attention"]})
    vae = AutoencoderSAME(**vae_cfg)
    transformer = StableAudio3DiTModel(**dit_cfg)
    duration_embedder = StableAudio3DurationEmbedder(**duration_config(state, model_config))
    tokenizer, text_encoder, extra = text_encoder_from_repository(text_encoder_source, components["text_encoder"],
                                                                 local_files_only)
    # The bottleneck's running_std exists only in checkpoints trained with auto-scaling (stable-audio-3
    # bottleneck.py); without it the autoencoder keeps its identity scale (diffusers initialises it to 1).
    extra += _load_strict(vae, components["vae"], "VAE", optional=("bottleneck.running_std",))
    extra += _load_strict(transformer, components["transformer"], "DiT", optional=("rotary_pos_emb.inv_freq",))
    extra += _load_strict(duration_embedder, components["duration_embedder"], "duration embedder",
                          optional=("freqs",))
    if unused or extra:
        logger.warning("Stable Audio 3 conversion: %d checkpoint tensors map to no diffusers weight (e.g. %s)",
                       len(unused) + len(extra), ", ".join((unused + extra)[:5]))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0,
                                                stochastic_sampling=distilled(model_config))
    return StableAudio3Pipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                duration_embedder=duration_embedder, transformer=transformer, scheduler=scheduler)


def text_encoder_from_repository(source: str | os.PathLike, carried: dict[str, torch.Tensor],
                                 local_files_only: bool) -> tuple[Any, Any, list[str]]:
    """Stable Audio 3's T5Gemma encoder, as diffusers' conversion script takes it: from its own repository.

    The published checkpoint keeps its frozen text encoder out of its state dict (stable-audio-3
    ``conditioners.py`` holds the model outside the module tree unless it is trained), so the weights come from
    ``source`` through the hub cache (gated: its licence must be accepted, see loading.gated_message), overlaid
    with any encoder tensors the checkpoint does carry (one trained with the DiT). Every weight must then be
    filled. Returns (tokenizer, encoder, carried keys the encoder does not have).
    """
    from huggingface_hub.errors import GatedRepoError
    from transformers import AutoConfig, AutoTokenizer, T5GemmaEncoderModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
        config.is_encoder_decoder = False
        encoder, info = T5GemmaEncoderModel.from_pretrained(source, config=config, local_files_only=local_files_only,
                                                            dtype=torch.float32, output_loading_info=True)
    except Exception as exc:  # hub errors of every kind; a gated repository keeps its own error (its message)
        if any(isinstance(e, GatedRepoError) for e in exception_chain(exc)):
            raise
        raise ConversionError(
            f"Stable Audio 3's text encoder {source!r} (not part of its checkpoint) is not in the local Hugging Face "
            f"cache and cannot be downloaded ({type(exc).__name__}). Fetch it once while online: accept its licence "
            f"at https://huggingface.co/{source}, then `hf download {source}` (or `autosep models download "
            "stable-audio-3`, which fetches both)") from exc
    expected = encoder.state_dict()
    if carried and not any(k in expected for k in carried):
        carried = {"encoder." + k: v for k, v in carried.items()}  # stored as the bare encoder module
    missing = [k for k in info.get("missing_keys", []) if k not in carried]
    if missing:
        raise ConversionError(f"the text encoder {source} has no weights for {len(missing)} parameters, e.g. "
                              f"{', '.join(sorted(missing)[:5])}: download it again")
    extra = []
    if carried:
        extra = _load_strict(encoder, {**expected, **carried}, "text encoder")
    return tokenizer, encoder.eval(), extra



def text_encoder_source(model_config: dict) -> str:
    """The T5Gemma the checkpoint was trained with, when its config names one; else google/t5gemma-b-b-ul2."""
    for c in _get(model_config, "model", "conditioning", "configs", default=[]) or []:
        if isinstance(c, dict) and c.get("id") == "prompt":
            for value in (c.get("config") or {}).values():
                if isinstance(value, str) and "t5gemma" in value.lower():
                    return value
    return DEFAULT_TEXT_ENCODER


def local_original_checkpoint(folder: Path, local_files_only: bool) -> Path:
    """The converted pipeline for a local folder holding an original checkpoint (converted on first use; a
    changed checkpoint file is converted again)."""
    import hashlib

    checkpoint = Path(folder).resolve() / CHECKPOINT_FILE
    stat = checkpoint.stat()
    key = hashlib.sha1(f"{checkpoint}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return convert_into_cache(Path(folder), converted_root(f"local-{key}") / "main", local_files_only)


def convert_into_cache(checkpoint_folder: Path, target: Path, local_files_only: bool) -> Path:
    """Convert the original checkpoint in ``checkpoint_folder`` into the pipeline folder ``target`` (once)."""
    from safetensors.torch import load_file

    from ..logs import library_quiet

    if (target / "model_index.json").is_file():
        return target
    model_config = json.loads((Path(checkpoint_folder) / CONFIG_FILE).read_text())
    logger.warning("converting the original Stable Audio 3 checkpoint in %s to a diffusers pipeline (once) "
                   "into %s", checkpoint_folder, target)
    state = load_file(str(Path(checkpoint_folder) / CHECKPOINT_FILE), device="cpu")
    with library_quiet(progress_bars=True, warnings=True):
        pipe = convert(state, model_config, text_encoder_source(model_config), local_files_only=local_files_only)
    del state
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        with library_quiet(progress_bars=True, warnings=True):
            pipe.save_pretrained(partial, safe_serialization=True)
        os.replace(partial, target)  # complete or absent: an interrupted conversion leaves no pipeline behind
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def hub_original_checkpoint(model_id: str, offline: bool) -> Path | None:
    """For a hub repository that holds an original Stable Audio 3 checkpoint instead of a diffusers pipeline,
    the converted pipeline folder (converting it on first use); None for any other repository.

    Offline, a conversion made earlier is used (and the cached original files, if the conversion never ran).
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    root = converted_root(model_id)
    earlier = sorted(root.glob("*/model_index.json")) if root.is_dir() else []
    if offline:
        index = try_to_load_from_cache(model_id, "model_index.json")
        config = try_to_load_from_cache(model_id, CONFIG_FILE)
        if isinstance(index, str):
            return None  # a diffusers pipeline
        if not isinstance(config, str):
            return earlier[-1].parent if earlier else None
    else:
        from huggingface_hub import HfApi

        files = {s.rfilename for s in (HfApi().model_info(model_id).siblings or [])}
        if "model_index.json" in files or not {CHECKPOINT_FILE, CONFIG_FILE} <= files:
            return None
    config_path = Path(hf_hub_download(model_id, CONFIG_FILE, local_files_only=offline))
    target = root / config_path.parent.name  # the snapshot's commit hash
    if (target / "model_index.json").is_file():
        return target
    hf_hub_download(model_id, CHECKPOINT_FILE, local_files_only=offline)
    return convert_into_cache(config_path.parent, target, local_files_only=offline)
