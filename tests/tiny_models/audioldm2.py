"""Tiny random-weight AudioLDM2 and AudioLDM pipelines, saved with the real checkpoints' layout.

The folders these builders write look like ``cvssp/audioldm2`` and ``cvssp/audioldm-s-full-v2`` on the hub:
``model_index.json``, one subfolder per component, a DDIM scheduler config with the published betas, the same
component classes (CLAP + RoBERTa tokenizer, T5 encoder + T5 tokenizer, GPT-2, projection model, AudioLDM2 UNet,
KL VAE, SpeechT5 HiFi-GAN vocoder). In particular ``model_index.json`` lists the language model as transformers'
``GPT2Model``, exactly like the published AudioLDM2 checkpoints, so the tests prove that autosep loads them on the
current transformers (where ``GPT2Model`` lacks the generation helpers diffusers calls).

Only the sizes differ: every network is a few thousand parameters, the tokenizers are trained offline on a few
phrases with the ``tokenizers`` library. The weights are random, but the VAE's latent scale and the vocoder's
output level are calibrated on a reference sound (as training sets them), so a separation gives stems at the
input's level rather than near-silence. Nothing is downloaded. ``build_tiny_audioldm2(path)`` and
``build_tiny_audioldm(path)`` are plain functions so benchmarks and other test modules can reuse them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Phrases the tiny tokenizers are trained on: the prompts tests use plus a few AudioSet-like labels.
PHRASES = [
    "cello", "flute", "violin", "piano", "drums", "speech", "dog barking", "acoustic guitar",
    "a man speaking", "rain on a window", "church bell", "bird song", "engine idling", "applause",
    "cello, flute", "violin, piano", "flute, violin", "the sound of an orchestra",
]

# Published AudioLDM / AudioLDM2 scheduler settings (scheduler/scheduler_config.json of cvssp/audioldm2).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.0015,
    beta_end=0.0195,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)

# model_index.json entries of the published AudioLDM2 checkpoints that differ from what save_pretrained writes
# with today's libraries: the language model is a GPT2Model there, and the tokenizers are the "Fast" classes.
REAL_AUDIOLDM2_INDEX = {
    "language_model": ["transformers", "GPT2Model"],
    "tokenizer": ["transformers", "RobertaTokenizerFast"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"],
}
REAL_AUDIOLDM_INDEX = {"tokenizer": ["transformers", "RobertaTokenizerFast"]}

MEL_BINS = 64  # the AudioLDM family's mel front end; the vocoder and VAE are built for it
LATENT_CHANNELS = 8


def _roberta_tokenizer():
    """A byte-level BPE tokenizer trained on PHRASES, wrapped as CLAP's RobertaTokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(PHRASES, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return RobertaTokenizer(vocab=state["vocab"], merges=merges, model_max_length=16)


def _t5_tokenizer():
    """A unigram tokenizer trained on PHRASES, wrapped as T5's tokenizer (pad 0, eos 1, unk 2 like T5)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    unigram.train_from_iterator(PHRASES, trainer=trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=16)


def _vae(seed: int):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    # Three encoder blocks: the mel is downsampled 4x in time and frequency, like the real AudioLDM VAE.
    # scaling_factor is the published one here; _calibrate sets the tiny VAE's own.
    return AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=LATENT_CHANNELS,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[8, 8, 8], layers_per_block=1, norm_num_groups=4, scaling_factor=0.4342,
        mid_block_add_attention=False,
    )


def _vocoder(seed: int):
    import torch
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    # Upsampling by 10 x 16 = 160 samples per mel frame (the hop), as the real vocoder's 5*4*2*2*2.
    config = SpeechT5HifiGanConfig(
        model_in_dim=MEL_BINS, sampling_rate=16000, upsample_initial_channel=8, upsample_rates=[10, 16],
        upsample_kernel_sizes=[20, 32], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]],
        normalize_before=False,
    )
    vocoder = SpeechT5HifiGan(config)
    _variance_preserving_init(vocoder, config.leaky_relu_slope)
    return vocoder


def _variance_preserving_init(vocoder, leaky_relu_slope: float) -> None:
    """He initialisation of every convolution of the vocoder (weight std = gain / sqrt(fan-in), zero bias).

    transformers initialises SpeechT5HifiGan's convolutions with one fixed std (initializer_range, 0.01) whatever
    their fan-in; a trained checkpoint overwrites that. Left as is, each layer of the tiny vocoder shrinks the
    signal 20-50x and the waveform comes out at ~1e-6 RMS: near-silent stems. A larger fixed std only trades that
    for per-layer gains set by each layer's width (0.2 gives 20x at the input layer, 0.4-0.7x after). Scaling
    each layer by its fan-in keeps the signal's size through the network; :func:`_calibrate` then sets the level.
    """
    import math

    from torch import nn

    gain = math.sqrt(2.0 / (1.0 + leaky_relu_slope**2))  # every convolution reads a leaky-ReLU output...
    for name, module in vocoder.named_modules():
        if isinstance(module, nn.ConvTranspose1d):
            # ...and an output sample of a transposed convolution sees kernel / stride taps per input channel.
            fan_in = module.in_channels * module.kernel_size[0] / module.stride[0]
        elif isinstance(module, nn.Conv1d):
            fan_in = module.in_channels * module.kernel_size[0]
        else:
            continue
        layer_gain = 1.0 if name == "conv_pre" else gain  # conv_pre reads the log-mel itself
        nn.init.normal_(module.weight, mean=0.0, std=layer_gain / math.sqrt(fan_in))
        nn.init.zeros_(module.bias)


# The calibration sound: a harmonic tone with a little noise, at the models' training scale (peak 0.5).
def _reference_wave():
    import numpy as np
    import torch

    from autosep.separator import mel

    seconds = 2.56
    t = np.arange(int(seconds * mel.SAMPLE_RATE)) / mel.SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))
    noise = np.random.default_rng(0).standard_normal(t.size)
    scaled, _ = mel.normalise(torch.tensor(tone * (0.6 + 0.4 * np.sin(2 * np.pi * t)) + 0.1 * noise,
                                           dtype=torch.float32))
    return scaled


def _vae_and_vocoder(seed: int):
    """The VAE and vocoder of a tiny pipeline, calibrated together (see :func:`_calibrate`)."""
    vae, vocoder = _vae(seed + 5), _vocoder(seed + 6)
    _calibrate(vae, vocoder)
    return vae, vocoder


def _calibrate(vae, vocoder) -> None:
    """Set the two scales a trained AudioLDM gets from its data, on a reference sound through the real front end.

    * The VAE's ``scaling_factor`` is 1 / std of its latents (how the published 0.4342 was chosen), so the
      diffusion starts from unit-variance latents as in the real model.
    * The vocoder's output layer is scaled so that mel -> latent -> mel -> waveform returns the reference at its
      own loudness (RMS): stems come out at the level of the input, not at 1e-5 and not clipped by the tanh.
    """
    import torch

    from autosep.separator import mel

    wave = _reference_wave()
    with torch.no_grad():
        latent = vae.encode(mel.log_mel(wave)[None, None]).latent_dist.mode()
        vae.register_to_config(scaling_factor=float(1.0 / latent.std()))
        decoded = vae.decode(latent).sample.squeeze(1)
        seen = {}
        handle = vocoder.conv_post.register_forward_hook(lambda module, args, out: seen.update(out=out))
        vocoder(decoded)
        handle.remove()
        # Before the tanh the vocoder is linear in conv_post's weight (zero bias), so one rescale sets the level.
        vocoder.conv_post.weight.mul_(float(wave.pow(2).mean().sqrt() / seen["out"].std()))


def _clap_text_branch_configs(vocab_size: int):
    from transformers import ClapAudioConfig, ClapTextConfig

    text = ClapTextConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
        max_position_embeddings=40, bos_token_id=0, pad_token_id=1, eos_token_id=2, projection_dim=16,
    )
    audio = ClapAudioConfig(
        spec_size=16, window_size=2, num_mel_bins=16, hidden_size=16, patch_embeds_hidden_size=8, depths=[1, 1],
        num_attention_heads=[1, 1], patch_size=2, patch_stride=[2, 2], projection_dim=16, num_hidden_layers=2,
    )
    return text, audio


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def _save(pipe, folder: Path) -> None:
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # no "Writing model shards" bars in test output
    try:
        pipe.save_pretrained(folder, safe_serialization=True)
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _rewrite_index(folder: Path, entries: dict) -> None:
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index.update(entries)
    index_path.write_text(json.dumps(index, indent=2))


def build_tiny_audioldm2(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight AudioLDM2 pipeline folder laid out like ``cvssp/audioldm2``; return the folder."""
    import torch
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, GPT2Config, GPT2Model, T5Config, T5EncoderModel

    folder = Path(path)
    tokenizer = _roberta_tokenizer()
    tokenizer_2 = _t5_tokenizer()

    text_config, audio_config = _clap_text_branch_configs(len(tokenizer))
    torch.manual_seed(seed)
    text_encoder = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(),
                                        projection_dim=16))
    torch.manual_seed(seed + 1)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=24, d_ff=24, d_kv=8, num_heads=2,
                                             num_layers=1, pad_token_id=0, eos_token_id=1))
    torch.manual_seed(seed + 2)
    gpt2_config = GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=64, n_positions=64, bos_token_id=0, eos_token_id=0)
    language_model = GPT2Model(gpt2_config)  # the class the published checkpoints store
    language_model.config.max_new_tokens = 8  # as in cvssp/audioldm2's language_model/config.json
    torch.manual_seed(seed + 3)
    projection_model = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=24, langauge_model_dim=16)
    torch.manual_seed(seed + 4)
    # Same block structure as the real UNet at a toy size: a self-attention, then cross-attention to the GPT-2
    # generated embeddings (16 wide here, 768 in the real model), then to T5 (24 here, 1024 real).
    unet = AudioLDM2UNet2DConditionModel(
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 24], [None, 16, 24]), attention_head_dim=(1, 2), norm_num_groups=8,
    )
    vae, vocoder = _vae_and_vocoder(seed)
    pipe = AudioLDM2Pipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        projection_model=projection_model, language_model=language_model, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, feature_extractor=ClapFeatureExtractor(), unet=unet, scheduler=_scheduler(),
        vocoder=vocoder,
    )
    _save(pipe, folder)
    _rewrite_index(folder, REAL_AUDIOLDM2_INDEX)
    return folder


def build_tiny_audioldm(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight AudioLDM (v1) pipeline folder laid out like ``cvssp/audioldm-s-full-v2``."""
    import torch
    from diffusers import AudioLDMPipeline, UNet2DConditionModel
    from transformers import ClapTextModelWithProjection

    folder = Path(path)
    tokenizer = _roberta_tokenizer()
    text_config, _ = _clap_text_branch_configs(len(tokenizer))
    torch.manual_seed(seed)
    text_encoder = ClapTextModelWithProjection(text_config)
    torch.manual_seed(seed + 4)
    # AudioLDM conditions on the CLAP text embedding through the class embedding (concatenated to the time
    # embedding); its attention blocks are self-attention only.
    unet = UNet2DConditionModel(
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(16, 32), attention_head_dim=(1, 2), norm_num_groups=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=16, class_embeddings_concat=True,
    )
    vae, vocoder = _vae_and_vocoder(seed)
    pipe = AudioLDMPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=_scheduler(),
        vocoder=vocoder,
    )
    _save(pipe, folder)
    _rewrite_index(folder, REAL_AUDIOLDM_INDEX)
    return folder


def install_in_hf_cache(folder: Path, repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """Copy a pipeline folder into the Hugging Face cache as ``repo_id``'s snapshot, as a download leaves it.

    Lets tests load by hub id or alias in offline mode through the same cache lookup a real download feeds.
    """
    import shutil

    from huggingface_hub import constants

    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    repo_folder = cache / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    snapshot = repo_folder / "snapshots" / revision
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo_folder / "refs").mkdir(parents=True, exist_ok=True)
    (repo_folder / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture(scope="session")
def tiny_audioldm2_dir(tmp_path_factory) -> Path:
    """A tiny AudioLDM2 pipeline folder (model_index.json lists GPT2Model, like cvssp/audioldm2)."""
    return build_tiny_audioldm2(tmp_path_factory.mktemp("tiny-audioldm2"))


@pytest.fixture(scope="session")
def tiny_audioldm_dir(tmp_path_factory) -> Path:
    """A tiny AudioLDM (v1) pipeline folder, like cvssp/audioldm-s-full-v2."""
    return build_tiny_audioldm(tmp_path_factory.mktemp("tiny-audioldm"))


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch CPU thread (tiny models on a shared 2-core machine are ~30x faster so)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
