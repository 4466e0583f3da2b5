"""A tiny random-weight Tango checkpoint, written in the published file layout and key names of declare-lab/tango.

The folder ``build_tiny_tango`` writes holds the six files a Tango hub repository holds: ``main_config.json`` (the
published one word for word: it names ``google/flan-t5-large`` and Stable Diffusion 2.1's scheduler by hub id),
``vae_config.json`` (latent-diffusion VAE config), ``stft_config.json``, and the three ``.bin`` state dicts saved
with ``torch.save`` under Tango's own key names: ``unet.*`` and ``text_encoder.*`` in ``pytorch_model_main.bin``;
the VAE in latent-diffusion naming (``encoder.down.0.block.0.norm1.weight``...) plus the HiFi-GAN under
``vocoder.*`` (``ups.0.weight``...) in ``pytorch_model_vae.bin``; TacotronSTFT's buffers in
``pytorch_model_stft.bin``. Because the networks are tiny, the folder also carries their architectures where a
local folder may: ``configs/diffusion_model_config.json`` (the path main_config.json names) and
``vocoder_config.json``. The tiny Flan-T5 (config and tokenizer only, as a hub download of it leaves them) is a
separate folder that tests install in the Hugging Face cache as ``google/flan-t5-large``.

The latent-diffusion names are produced by :func:`ldm_vae_state` from the diffusers VAE; tests check them with
diffusers' own LDM-to-diffusers converter, independently of autosep's key map.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .audioldm2 import _calibrate, _reference_wave, _t5_tokenizer, _vocoder, install_in_hf_cache

TEXT_ENCODER = "google/flan-t5-large"
# main_config.json of declare-lab/tango (and tango2, tango-full-ft-audiocaps, tango2-full), as published.
MAIN_CONFIG = {"text_encoder_name": TEXT_ENCODER, "scheduler_name": "stabilityai/stable-diffusion-2-1",
               "unet_model_name": None, "unet_model_config_path": "configs/diffusion_model_config.json",
               "snr_gamma": 5.0}
STFT_CONFIG = {"filter_length": 1024, "hop_length": 160, "win_length": 1024, "n_mel_channels": 64,
               "sampling_rate": 16000, "mel_fmin": 0, "mel_fmax": 8000}
T5_WIDTH = 24
# The latent-diffusion VAE normalises with 32 groups, so its narrowest layer has 32 channels.
VAE_DDCONFIG = {"double_z": True, "z_channels": 8, "resolution": 256, "downsample_time": False, "in_channels": 1,
                "out_ch": 1, "ch": 32, "ch_mult": [1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [],
                "dropout": 0.0}


def ldm_vae_state(vae) -> dict:
    """The diffusers AutoencoderKL's tensors under latent-diffusion names (Tango's pytorch_model_vae.bin)."""
    levels = len(vae.config.block_out_channels)
    resnet = {"conv_shortcut": "nin_shortcut"}
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    state = {}
    for key, tensor in vae.state_dict().items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)$", new):
            side, kind, block, j, part, name = m.groups()
            level = int(block) if kind == "down" else levels - 1 - int(block)  # LDM's up.0 is the full-size level
            new = f"{side}.{kind}.{level}.block.{j}.{resnet.get(part, part)}.{name}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)$", new):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)$", new):
            new = f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(\w+)\.(\w+)$", new):
            side, n, part, name = m.groups()
            new = f"{side}.mid.block_{int(n) + 1}.{resnet.get(part, part)}.{name}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_\w|to_out\.0)\.(\w+)$",
                           new):
            side, part, name = m.groups()
            new = f"{side}.mid.attn_1.{attention[part]}.{name}"
            if name == "weight" and part != "group_norm":
                tensor = tensor[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        state[new] = tensor.clone()
    return state


def hifigan_state(vocoder) -> dict:
    """SpeechT5HifiGan's tensors under AudioLDM HiFi-GAN names with the ``vocoder.`` prefix (no mean/scale)."""
    return {"vocoder." + re.sub(r"^upsampler\.", "ups.", k): v.clone() for k, v in vocoder.state_dict().items()
            if k not in ("mean", "scale")}


def tacotron_stft_state() -> dict:
    """TacotronSTFT's buffers as Tango saves them: the Slaney mel basis and the STFT's Fourier bases."""
    import librosa
    import numpy as np
    import torch

    n_fft, hop = STFT_CONFIG["filter_length"], STFT_CONFIG["hop_length"]
    fourier = np.fft.fft(np.eye(n_fft))
    cutoff = n_fft // 2 + 1
    fourier = np.vstack([np.real(fourier[:cutoff]), np.imag(fourier[:cutoff])])
    window = librosa.filters.get_window("hann", n_fft, fftbins=True)
    forward = torch.tensor(fourier[:, None, :] * window, dtype=torch.float32)
    inverse = torch.tensor(np.linalg.pinv(n_fft / hop * fourier).T[:, None, :] * window, dtype=torch.float32)
    mel_basis = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=64, fmin=0, fmax=8000)
    return {"mel_basis": torch.tensor(mel_basis, dtype=torch.float32), "stft_fn.forward_basis": forward,
            "stft_fn.inverse_basis": inverse}


def build_tiny_flan_t5(path: str | Path) -> Path:
    """The tiny Flan-T5 config and tokenizer (what autosep downloads of google/flan-t5-large), no weights."""
    from transformers import T5Config

    folder = Path(path)
    tokenizer = _t5_tokenizer()
    tokenizer.save_pretrained(folder)
    T5Config(vocab_size=len(tokenizer), d_model=T5_WIDTH, d_ff=32, d_kv=8, num_heads=2, num_layers=1,
             feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1).save_pretrained(folder)
    return folder


def _narrow_posterior(vae, ratio: float = 0.05) -> None:
    """Give the random VAE a posterior as narrow as a trained one's: latent-diffusion VAEs are trained with a tiny
    KL weight, so their posterior std is a small fraction of the latents' spread, while random weights put it near
    1 (Tango samples the posterior, so a wide one would drown the mixture in noise). Shifts the log-variance half
    of ``quant_conv`` so the std is ``ratio`` of the latents' std on the reference sound."""
    import math

    import torch

    from autosep.separator import mel

    with torch.no_grad():
        posterior = vae.encode(mel.log_mel(_reference_wave())[None, None]).latent_dist
        target = 2 * math.log(ratio * float(posterior.mean.std()))
        channels = vae.config.latent_channels
        vae.quant_conv.bias[channels:] += target - float(posterior.logvar.mean())


def build_tiny_tango(path: str | Path, flan_t5: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight Tango checkpoint folder in the published layout; return the folder."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    folder = Path(path)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config.from_pretrained(flan_t5))
    torch.manual_seed(seed + 1)
    # Tango's UNet at a toy size: linear projections and upcast attention as in its config, T5-wide context.
    unet = UNet2DConditionModel(
        in_channels=8, out_channels=8, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=T5_WIDTH, attention_head_dim=2, norm_num_groups=8, use_linear_projection=True,
        upcast_attention=True,
    )
    torch.manual_seed(seed + 2)
    ch = VAE_DDCONFIG["ch"]
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=8, down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[ch * m for m in VAE_DDCONFIG["ch_mult"]],
        layers_per_block=VAE_DDCONFIG["num_res_blocks"], norm_num_groups=32,
    )
    vocoder = _vocoder(seed + 3)
    _calibrate(vae, vocoder)
    _narrow_posterior(vae)

    main = {f"unet.{k}": v for k, v in unet.state_dict().items()}
    main.update({f"text_encoder.{k}": v for k, v in text_encoder.state_dict().items()})
    torch.save(main, folder / "pytorch_model_main.bin")
    torch.save({**ldm_vae_state(vae), **hifigan_state(vocoder)}, folder / "pytorch_model_vae.bin")
    torch.save(tacotron_stft_state(), folder / "pytorch_model_stft.bin")
    (folder / "main_config.json").write_text(json.dumps(MAIN_CONFIG))
    (folder / "stft_config.json").write_text(json.dumps(STFT_CONFIG))
    (folder / "vae_config.json").write_text(json.dumps(
        {"image_key": "fbank", "subband": 1, "embed_dim": 8, "time_shuffle": 1, "ddconfig": VAE_DDCONFIG,
         "scale_factor": float(vae.config.scaling_factor)}))
    (folder / "configs" / "diffusion_model_config.json").write_text(unet.to_json_string())
    vocoder_config = {k: v for k, v in vocoder.config.to_dict().items()
                      if k in ("model_in_dim", "sampling_rate", "upsample_initial_channel", "upsample_rates",
                               "upsample_kernel_sizes", "resblock_kernel_sizes", "resblock_dilation_sizes",
                               "leaky_relu_slope", "normalize_before")}
    (folder / "vocoder_config.json").write_text(json.dumps(vocoder_config))
    return folder


@pytest.fixture(scope="session")
def tiny_flan_t5_dir(tmp_path_factory) -> Path:
    """The tiny Flan-T5 config + tokenizer, also installed in the test HF cache as google/flan-t5-large."""
    folder = build_tiny_flan_t5(tmp_path_factory.mktemp("tiny-flan-t5"))
    install_in_hf_cache(folder, TEXT_ENCODER)
    return folder


@pytest.fixture(scope="session")
def tiny_tango_dir(tmp_path_factory, tiny_flan_t5_dir) -> Path:
    """A tiny Tango checkpoint folder in the published layout (its text encoder is in the HF cache)."""
    return build_tiny_tango(tmp_path_factory.mktemp("tiny-tango"), tiny_flan_t5_dir)
