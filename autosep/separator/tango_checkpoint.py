"""Tango and Tango 2 (declare-lab) checkpoints read into diffusers and transformers classes (the backbone itself is
:mod:`autosep.separator.backbones.tango`).

Rule: nothing from Tango's repository runs. Its published checkpoints are plain PyTorch state dicts in six files
(``main_config.json``, ``vae_config.json``, ``stft_config.json``, ``pytorch_model_main.bin``,
``pytorch_model_vae.bin``, ``pytorch_model_stft.bin``); they are read with ``torch.load(weights_only=True)`` (no
pickled code) and their tensors are moved into equivalent library classes by the key maps below, which must use
every tensor and fill every weight (anything else is an error, never a silent partial load):

* ``pytorch_model_main.bin``: ``unet.*`` -> diffusers ``UNet2DConditionModel`` (same key names; the architecture is
  Tango's ``configs/diffusion_model_config.json``, shipped in ``tango_configs.json`` because the checkpoint only
  names that path) and ``text_encoder.*`` -> transformers ``T5EncoderModel`` (same key names; config and tokenizer
  come from the hub model ``main_config.json`` names, ``google/flan-t5-large``).
* ``pytorch_model_vae.bin``: the AudioLDM VAE in latent-diffusion naming -> diffusers ``AutoencoderKL``
  (:func:`vae_key`), and ``vocoder.*``, AudioLDM's HiFi-GAN with weight norm removed -> transformers
  ``SpeechT5HifiGan`` (:func:`vocoder_key`).
* ``pytorch_model_stft.bin``: the mel filterbank of Tango's front end; it is checked to equal autosep's
  (:mod:`autosep.separator.mel`), so the VAE sees the features it was trained on.

Tango conditions its UNet on the Flan-T5 last hidden state with the attention mask, and predicts v (Stable
Diffusion 2.1's scheduler); the separator's scheduler steps handle v-prediction. The vocoder's output is the float
waveform: Tango's own helper scales it to int16, which autosep does not carry over.
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelNotAvailableError
from ..logs import library_quiet
from .backbones.tango import text_encoder_folder


logger = logging.getLogger(__name__)

VOCODER_CONFIG_FILE = "vocoder_config.json"  # optional, in a local folder whose HiFi-GAN differs from Tango's
CONFIGS_FILE = Path(__file__).with_name("tango_configs.json")
SD21_SCHEDULER = "stabilityai/stable-diffusion-2-1"


@lru_cache(maxsize=1)
def shipped_configs() -> dict[str, Any]:
    """The Tango architecture facts autosep ships (UNet, scheduler, vocoder): see ``tango_configs.json``."""
    return json.loads(CONFIGS_FILE.read_text())


# -- key maps ---------------------------------------------------------------------------------------------------

_RESNET_PARTS = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
                 "nin_shortcut": "conv_shortcut"}
_ATTENTION_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def vae_key(key: str, levels: int) -> str | None:
    """The diffusers ``AutoencoderKL`` name of a latent-diffusion VAE key (None: not a VAE key).

    ``levels`` is the number of resolutions (len(ch_mult)). The map, for ``side`` = encoder / decoder:

    ================================================  ==============================================================
    latent-diffusion (Tango, AudioLDM)                diffusers AutoencoderKL
    ================================================  ==============================================================
    side.conv_in / side.conv_out                      same
    side.norm_out                                     side.conv_norm_out
    encoder.down.i.block.j.P                          encoder.down_blocks.i.resnets.j.P'
    encoder.down.i.downsample.conv                    encoder.down_blocks.i.downsamplers.0.conv
    decoder.up.i.block.j.P                            decoder.up_blocks.(levels-1-i).resnets.j.P' (up.0 = full size)
    decoder.up.i.upsample.conv                        decoder.up_blocks.(levels-1-i).upsamplers.0.conv
    side.mid.block_1 / block_2                        side.mid_block.resnets.0 / 1
    side.mid.attn_1.{norm,q,k,v,proj_out}             side.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}
    quant_conv / post_quant_conv                      same
    ================================================  ==============================================================

    with resnet parts P -> P': norm1, conv1, norm2, conv2 unchanged, nin_shortcut -> conv_shortcut. The attention
    q/k/v/proj_out are 1x1 convolutions there and linear layers here (:func:`convert_vae` reshapes them).
    """
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    match = re.fullmatch(r"(encoder|decoder)\.(.+)", key)
    if not match:
        return None
    side, rest = match.groups()
    if re.fullmatch(r"(conv_in|conv_out)\.(weight|bias)", rest):
        return key
    if m := re.fullmatch(r"norm_out\.(weight|bias)", rest):
        return f"{side}.conv_norm_out.{m[1]}"
    if m := re.fullmatch(r"(down|up)\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)", rest):
        kind, level, block, part, tensor = m.groups()
        if part not in _RESNET_PARTS or (kind == "down") != (side == "encoder"):
            return None
        index = int(level) if kind == "down" else levels - 1 - int(level)
        return f"{side}.{kind}_blocks.{index}.resnets.{block}.{_RESNET_PARTS[part]}.{tensor}"
    if m := re.fullmatch(r"down\.(\d+)\.downsample\.conv\.(weight|bias)", rest):
        return f"{side}.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}" if side == "encoder" else None
    if m := re.fullmatch(r"up\.(\d+)\.upsample\.conv\.(weight|bias)", rest):
        return f"{side}.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}" if side == "decoder" else None
    if m := re.fullmatch(r"mid\.block_([12])\.(\w+)\.(weight|bias)", rest):
        part = _RESNET_PARTS.get(m[2])
        return f"{side}.mid_block.resnets.{int(m[1]) - 1}.{part}.{m[3]}" if part else None
    if m := re.fullmatch(r"mid\.attn_1\.(\w+)\.(weight|bias)", rest):
        part = _ATTENTION_PARTS.get(m[1])
        return f"{side}.mid_block.attentions.0.{part}.{m[2]}" if part else None
    return None


def vocoder_key(key: str) -> str:
    """The ``SpeechT5HifiGan`` name of an AudioLDM HiFi-GAN key (``vocoder.`` already removed).

    Only the upsampling layers are renamed (``ups.i`` -> ``upsampler.i``); ``conv_pre``, ``conv_post`` and
    ``resblocks.k.convs{1,2}.j`` are named alike. The checkpoint holds plain weights (weight norm was removed
    before saving), which is what SpeechT5HifiGan has.
    """
    return re.sub(r"^ups\.(\d+)\.", r"upsampler.\1.", key)


StateDict = dict[str, torch.Tensor]


def convert_vae(state: StateDict, levels: int) -> tuple[StateDict, StateDict, list[str]]:
    """Split pytorch_model_vae.bin into (AutoencoderKL state, SpeechT5HifiGan state, keys neither map takes)."""
    vae, vocoder, unused = {}, {}, []
    for key, tensor in state.items():
        if key.startswith("vocoder."):
            vocoder[vocoder_key(key[len("vocoder."):])] = tensor
            continue
        new = vae_key(key, levels)
        if new is None:
            unused.append(key)
            continue
        if ".mid_block.attentions.0.to_" in new and new.endswith(".weight") and tensor.ndim == 4:
            tensor = tensor[:, :, 0, 0]  # 1x1 convolution -> linear layer
        vae[new] = tensor
    return vae, vocoder, unused


def split_main(state: StateDict) -> tuple[StateDict, StateDict, list[str]]:
    """Split pytorch_model_main.bin into (UNet state, T5 encoder state, keys of neither)."""
    unet, text, unused = {}, {}, []
    for key, tensor in state.items():
        if key.startswith("unet."):
            unet[key[len("unet."):]] = tensor
        elif key.startswith("text_encoder."):
            text[key[len("text_encoder."):]] = tensor
        else:
            unused.append(key)
    return unet, text, unused


# -- configs ----------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot read {path}: {exc}; download the checkpoint again") from exc


def unet_config(folder: Path, main_config: dict[str, Any]) -> dict[str, Any]:
    """The UNet architecture: the file main_config.json names, if the folder has it, else autosep's shipped copy."""
    name = main_config.get("unet_model_config_path")
    if main_config.get("unet_model_name") or not name:
        raise ModelNotAvailableError(
            f"{folder / 'main_config.json'} describes a Tango UNet initialised from "
            f"{main_config.get('unet_model_name')!r} (with extra channel-grouping layers); autosep supports the Tango checkpoints trained from a config "
            "(declare-lab/tango, tango-full-ft-audiocaps, tango2, tango2-full)"
        )
    local = folder / name
    if local.is_file():
        return _read_json(local)
    shipped = shipped_configs()
    if name != shipped["unet_config_path"]:
        raise ModelNotAvailableError(
            f"{folder / 'main_config.json'} names the UNet architecture {name!r}, which autosep does not know "
            f"(it knows {shipped['unet_config_path']!r}); put that config file at {local}"
        )
    return dict(shipped["unet"])


def scheduler_config(folder: Path, main_config: dict[str, Any]) -> dict[str, Any]:
    name = main_config.get("scheduler_name")
    if name != SD21_SCHEDULER:
        raise ModelNotAvailableError(
            f"{folder / 'main_config.json'} names the noise scheduler {name!r}; autosep knows Tango's "
            f"({SD21_SCHEDULER}, v-prediction) only"
        )
    return dict(shipped_configs()["scheduler"])


def vocoder_config(folder: Path) -> dict[str, Any]:
    local = folder / VOCODER_CONFIG_FILE
    return _read_json(local) if local.is_file() else dict(shipped_configs()["vocoder"])


def autoencoder_config(vae_config: dict[str, Any], where: Path) -> dict[str, Any]:
    """diffusers ``AutoencoderKL`` arguments equal to Tango's latent-diffusion VAE config (vae_config.json)."""
    dd = vae_config.get("ddconfig") or {}
    unsupported = []
    if dd.get("attn_resolutions"):
        unsupported.append("attention at inner resolutions (attn_resolutions)")
    if int(vae_config.get("subband", 1)) != 1:
        unsupported.append("sub-band splitting")
    if dd.get("downsample_time_stride4_levels"):
        unsupported.append("4x time downsampling")
    if not dd.get("double_z", True):
        unsupported.append("a deterministic encoder (double_z false)")
    try:
        channels = [int(dd["ch"]) * int(m) for m in dd["ch_mult"]]
        config = dict(
            in_channels=int(dd["in_channels"]), out_channels=int(dd["out_ch"]),
            down_block_types=["DownEncoderBlock2D"] * len(channels),
            up_block_types=["UpDecoderBlock2D"] * len(channels),
            block_out_channels=channels, layers_per_block=int(dd["num_res_blocks"]),
            latent_channels=int(vae_config["embed_dim"]), sample_size=int(dd["resolution"]),
            scaling_factor=float(vae_config.get("scale_factor", 1.0)), norm_num_groups=32,
        )
        if int(dd["z_channels"]) != config["latent_channels"]:
            unsupported.append("z_channels different from embed_dim")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelNotAvailableError(f"{where} is not a Tango VAE config ({exc!r} missing or invalid)") from exc
    if unsupported:
        raise ModelNotAvailableError(f"{where}: the VAE uses {', '.join(unsupported)}, which autosep does not support")
    return config


def check_front_end(stft_config: dict[str, Any], stft_state: dict[str, torch.Tensor], where: Path) -> None:
    """Refuse a checkpoint whose mel front end differs from autosep's (the VAE would read features it never saw)."""
    from . import mel

    expected = {"filter_length": mel.N_FFT, "hop_length": mel.HOP_LENGTH, "win_length": mel.WIN_LENGTH,
                "n_mel_channels": mel.N_MELS, "sampling_rate": mel.SAMPLE_RATE, "mel_fmin": mel.F_MIN,
                "mel_fmax": mel.F_MAX}
    different = {k: stft_config.get(k) for k, v in expected.items() if stft_config.get(k) is None
                 or float(stft_config[k]) != float(v)}
    if different:
        raise ModelNotAvailableError(
            f"{where / 'stft_config.json'} describes a front end autosep does not compute ({different}; autosep: "
            f"{expected})"
        )
    basis, ours = stft_state.get("mel_basis"), mel._mel_basis().double()
    if basis is None or tuple(basis.shape) != tuple(ours.shape) or not torch.allclose(basis.double(), ours, atol=1e-6):
        raise ModelNotAvailableError(
            f"{where / 'pytorch_model_stft.bin'}: its mel filterbank differs from autosep's Slaney 0-8 kHz bands"
        )


# -- loading ----------------------------------------------------------------------------------------------------


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelNotAvailableError(f"{path} is missing: the folder does not hold a complete Tango checkpoint")
    try:
        # weights_only: tensors and containers only, no pickled code; mmap: a 4.8 GB file is not copied to memory.
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files in the legacy (non-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a readable state dict"
        raise ModelNotAvailableError(f"cannot read {path} as a PyTorch state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelNotAvailableError(f"{path} does not hold a state dict (it holds a {type(state).__name__})")
    return state


def load_exactly(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Put ``state`` into ``module`` (built on the meta device): every weight filled, every tensor used."""
    result = module.load_state_dict(state, strict=False, assign=True)
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} weights missing ({', '.join(result.missing_keys[:4])}...)")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected ({', '.join(result.unexpected_keys[:4])}...)")
    if problems:
        raise ModelNotAvailableError(f"{what} does not match its architecture: {'; '.join(problems)}")


def _pipeline_class():
    from diffusers import DiffusionPipeline

    class TangoPipeline(DiffusionPipeline):
        """Tango's parts as one diffusers pipeline object: Flan-T5 encoder, v-predicting UNet, VAE, HiFi-GAN.

        It carries what the separator reads (``unet``, ``vae``, ``vocoder``, ``scheduler``, ``vae_scale_factor``,
        :meth:`mel_spectrogram_to_waveform`) and moves between devices like any diffusers pipeline. It has no
        text-to-audio ``__call__``: autosep only separates.
        """

        def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, vocoder):
            super().__init__()
            self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                  scheduler=scheduler, vocoder=vocoder)
            self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

        def mel_spectrogram_to_waveform(self, mel_spectrogram: torch.Tensor) -> torch.Tensor:
            """Float waveform [batch, samples] from VAE-decoded log-mels [batch, 1, frames, bins] (no int16 scaling)."""
            if mel_spectrogram.dim() == 4:
                mel_spectrogram = mel_spectrogram.squeeze(1)
            return self.vocoder(mel_spectrogram.to(self.vocoder.dtype)).float()

    return TangoPipeline


@lru_cache(maxsize=1)
def pipeline_class():
    """The ``TangoPipeline`` class (defined on first use, so importing this module does not import diffusers)."""
    return _pipeline_class()


def load(folder: Path) -> Any:
    """Build a ``TangoPipeline`` (float32, CPU) from a folder in Tango's published layout."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import AutoConfig, AutoTokenizer, SpeechT5HifiGan, SpeechT5HifiGanConfig, T5EncoderModel

    folder = Path(folder)
    main_config = _read_json(folder / "main_config.json")
    vae_settings = autoencoder_config(_read_json(folder / "vae_config.json"), folder / "vae_config.json")
    stft_config = _read_json(folder / "stft_config.json")
    check_front_end(stft_config, _torch_load(folder / "pytorch_model_stft.bin"), folder)
    text_encoder_name = main_config.get("text_encoder_name")
    if not text_encoder_name or "t5" not in str(text_encoder_name).lower():
        raise ModelNotAvailableError(
            f"{folder / 'main_config.json'} names the text encoder {text_encoder_name!r}; autosep's Tango backbone "
            "conditions on a T5 encoder (google/flan-t5-large)"
        )

    unet_state, text_state, unused = split_main(_torch_load(folder / "pytorch_model_main.bin"))
    if unused:
        raise ModelNotAvailableError(
            f"{folder / 'pytorch_model_main.bin'} holds {len(unused)} tensors that are neither unet.* nor "
            f"text_encoder.* ({', '.join(unused[:4])}...): not a Tango checkpoint autosep knows"
        )
    vae_state, vocoder_state, unused = convert_vae(_torch_load(folder / "pytorch_model_vae.bin"),
                                                   len(vae_settings["block_out_channels"]))
    if unused:
        raise ModelNotAvailableError(
            f"{folder / 'pytorch_model_vae.bin'} holds {len(unused)} tensors the VAE key map does not place "
            f"({', '.join(unused[:4])}...)"
        )

    encoder_folder = text_encoder_folder(str(text_encoder_name), folder, weights=not text_state)
    with library_quiet(warnings=True):
        tokenizer = AutoTokenizer.from_pretrained(encoder_folder)
        if text_state:
            with torch.device("meta"):
                text_encoder = T5EncoderModel(AutoConfig.from_pretrained(encoder_folder))
            load_exactly(text_encoder, text_state, f"{folder / 'pytorch_model_main.bin'} (text_encoder.*)")
        else:  # a checkpoint without the frozen encoder's copy: the hub model's own weights are the same
            text_encoder = T5EncoderModel.from_pretrained(encoder_folder)
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(unet_config(folder, main_config))
            vae = AutoencoderKL(**vae_settings)
            vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**vocoder_config(folder)))
    load_exactly(unet, unet_state, f"{folder / 'pytorch_model_main.bin'} (unet.*)")
    load_exactly(vae, vae_state, f"{folder / 'pytorch_model_vae.bin'} (VAE)")
    # SpeechT5HifiGan's mean/scale buffers normalise its input only when normalize_before is set, which AudioLDM's
    # HiFi-GAN never does; the checkpoint has no such tensors, so they keep their neutral values.
    vocoder_state.setdefault("mean", torch.zeros(vocoder.config.model_in_dim))
    vocoder_state.setdefault("scale", torch.ones(vocoder.config.model_in_dim))
    load_exactly(vocoder, vocoder_state, f"{folder / 'pytorch_model_vae.bin'} (vocoder.*)")
    scheduler = DDIMScheduler.from_config(scheduler_config(folder, main_config))
    for module in (text_encoder, unet, vae, vocoder):
        module.eval()
    pipe = pipeline_class()(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            vocoder=vocoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe
