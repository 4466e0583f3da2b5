"""Tiny random-weight Stable Audio Open and Stable Audio 3 pipelines, saved in the diffusers layout of the hub repos.

``build_tiny_stable_audio_open(path)`` writes a ``StableAudioPipeline`` folder like
``stabilityai/stable-audio-open-1.0`` (T5 encoder + tokenizer, ``StableAudioProjectionModel`` for the text and the
seconds_start / seconds_total numbers, ``StableAudioDiTModel``, ``AutoencoderOobleck``, and the published
``CosineDPMSolverMultistepScheduler`` settings). ``build_tiny_stable_audio_3(path)`` writes a ``StableAudio3Pipeline``
folder (T5Gemma encoder + Gemma tokenizer, ``StableAudio3DurationEmbedder``, ``StableAudio3DiTModel``,
``AutoencoderSAME``, ``FlowMatchEulerDiscreteScheduler`` as in the base checkpoint: deterministic Euler).

Both work at the real models' 44.1 kHz stereo; only the networks are tiny (the VAEs downsample 256x, so a second is
172 latent frames) and the tokenizers are trained offline on a few phrases. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .audioldm2 import PHRASES, _save, _t5_tokenizer

SAMPLE_RATE = 44_100
SAO_SAMPLE_SIZE = 128  # latent frames of the tiny SAO training window: 128 x 256 / 44100 = 0.74 s
SAO_LATENT_CHANNELS = 4  # (64 in the real model); the Oobleck encoder runs at the full rate, so keep it narrow
SA3_LATENT_CHANNELS = 8
COND_DIM = 16

# Published scheduler settings of stabilityai/stable-audio-open-1.0 (scheduler/scheduler_config.json).
SAO_SCHEDULER_CONFIG = dict(
    sigma_min=0.3, sigma_max=500.0, sigma_data=1.0, sigma_schedule="exponential", solver_order=2,
    prediction_type="v_prediction", rho=7.0, solver_type="midpoint", lower_order_final=True, euler_at_final=False,
    final_sigmas_type="zero",
)


def _gemma_tokenizer():
    """A BPE tokenizer trained on PHRASES, wrapped as transformers' GemmaTokenizer (the class SA3 loads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=specials, show_progress=False)
    bpe.train_from_iterator(PHRASES, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return GemmaTokenizer(vocab=state["vocab"], merges=merges, model_max_length=16, add_bos_token=True)


def _randomise_zero_init(module, seed: int) -> None:
    """Give the zero-initialised output projections (AdaLN-zero / residual-zero init, as training starts) random
    weights: untrained, they make every block an identity and the VAE decoder ignore its latents."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 1 and not param.any() and "norm" not in name and not name.endswith("beta"):
                fan_in = param.shape[1] if param.ndim >= 2 else param.shape[0]
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in ** 0.5)


def build_tiny_stable_audio_open(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight ``StableAudioPipeline`` folder laid out like stable-audio-open-1.0."""
    import torch
    from diffusers import (AutoencoderOobleck, CosineDPMSolverMultistepScheduler, StableAudioDiTModel,
                           StableAudioPipeline)
    from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    folder = Path(path)
    tokenizer = _t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=24, d_ff=24, d_kv=8, num_heads=2,
                                           num_layers=1, pad_token_id=0, eos_token_id=1))
    torch.manual_seed(seed + 1)
    # seconds_start / seconds_total are embedded over 0..512 s like the real model's number conditioners.
    projection_model = StableAudioProjectionModel(text_encoder_dim=24, conditioning_dim=8, min_value=0, max_value=512)
    torch.manual_seed(seed + 2)
    transformer = StableAudioDiTModel(
        sample_size=SAO_SAMPLE_SIZE, in_channels=SAO_LATENT_CHANNELS, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, num_key_value_attention_heads=1, out_channels=SAO_LATENT_CHANNELS,
        cross_attention_dim=16, time_proj_dim=16, global_states_input_dim=16, cross_attention_input_dim=8,
    )
    torch.manual_seed(seed + 3)
    # 4 x 8 x 8 = 256 samples per latent frame (the real Oobleck VAE: 2 x 4 x 4 x 8 x 8 = 2048).
    vae = AutoencoderOobleck(
        # The encoder's output holds the mean and the scale: twice the latent channels.
        encoder_hidden_size=2 * SAO_LATENT_CHANNELS, downsampling_ratios=[4, 8, 8], channel_multiples=[1, 2, 2],
        decoder_channels=8, decoder_input_channels=SAO_LATENT_CHANNELS, audio_channels=2, sampling_rate=SAMPLE_RATE,
    )
    pipe = StableAudioPipeline(
        vae=vae, text_encoder=text_encoder, projection_model=projection_model, tokenizer=tokenizer,
        transformer=transformer, scheduler=CosineDPMSolverMultistepScheduler(**SAO_SCHEDULER_CONFIG),
    )
    _save(pipe, folder)
    return folder


def build_tiny_stable_audio_3(path: str | Path, seed: int = 0, distilled: bool = False,
                              differential: bool = False) -> Path:
    """Write a tiny random-weight ``StableAudio3Pipeline`` folder (the base checkpoint's deterministic Euler
    scheduler; ``distilled=True`` writes the distilled one's ping-pong ``stochastic_sampling`` scheduler;
    ``differential=True`` uses differential attention in the DiT and VAE, as the real SA3 medium does)."""
    import torch
    from diffusers import AutoencoderSAME, FlowMatchEulerDiscreteScheduler, StableAudio3DiTModel, StableAudio3Pipeline
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
    from transformers import T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    folder = Path(path)
    tokenizer = _gemma_tokenizer()
    torch.manual_seed(seed)
    module_config = T5GemmaModuleConfig(
        vocab_size=len(tokenizer), hidden_size=COND_DIM, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64, sliding_window=64,
        layer_types=["full_attention"], pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    text_encoder = T5GemmaEncoderModel(T5GemmaConfig(encoder=module_config.to_dict(), decoder=module_config.to_dict(),
                                                     is_encoder_decoder=False))
    torch.manual_seed(seed + 1)
    duration_embedder = StableAudio3DurationEmbedder(output_dim=COND_DIM, fourier_dim=16)
    torch.manual_seed(seed + 2)
    transformer = StableAudio3DiTModel(
        io_channels=SA3_LATENT_CHANNELS, patch_size=1, embed_dim=32, depth=2, num_heads=4, cond_token_dim=COND_DIM,
        global_cond_dim=COND_DIM, local_add_cond_dim=5, timestep_features_dim=16, ff_mult=2, num_memory_tokens=3,
        use_differential_attention=differential,
    )
    torch.manual_seed(seed + 3)
    # 64-sample patches, then a stride-4 resampling block: 256 samples per latent frame.
    vae = AutoencoderSAME(
        audio_channels=2, patch_size=64, encoder_channels=8, encoder_c_mults=(2,), encoder_strides=(4,),
        encoder_transformer_depths=(1,), latent_dim=SA3_LATENT_CHANNELS, use_differential_attention=differential,
        dim_heads=4, ff_mult=2, sampling_rate=SAMPLE_RATE,
    )
    _randomise_zero_init(transformer, seed + 4)
    _randomise_zero_init(vae, seed + 5)
    # As diffusers' conversion script writes it: the DiT reads t in [0, 1] (num_train_timesteps = 1).
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0, stochastic_sampling=distilled)
    pipe = StableAudio3Pipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                duration_embedder=duration_embedder, transformer=transformer, scheduler=scheduler)
    _save(pipe, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_stable_audio_open_dir(tmp_path_factory) -> Path:
    """A tiny Stable Audio Open pipeline folder (diffusers layout, 44.1 kHz stereo)."""
    return build_tiny_stable_audio_open(tmp_path_factory.mktemp("tiny-stable-audio-open"))


@pytest.fixture(scope="session")
def tiny_stable_audio_3_dir(tmp_path_factory) -> Path:
    """A tiny Stable Audio 3 base pipeline folder (diffusers layout, 44.1 kHz stereo)."""
    return build_tiny_stable_audio_3(tmp_path_factory.mktemp("tiny-stable-audio-3"))
