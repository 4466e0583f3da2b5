"""Tiny random-weight AudioLDM2 and AudioLDM pipelines, saved with the real checkpoints' layout.

The folders these builders write look like ``cvssp/audioldm2`` and ``cvssp/audioldm-s-full-v2`` on the hub:
``model_index.json``, one subfolder per component, a DDIM scheduler config with the published betas, the same
component classes (CLAP + RoBERTa tokenizer, T5 encoder + T5 tokenizer, GPT-2, projection model, AudioLDM2 UNet,
KL VAE, SpeechT5 HiFi-GAN vocoder). In particular ``model_index.json`` lists the language model as transformers'
``GPT2Model``, exactly like the published AudioLDM2 checkpoints, so the tests prove that autosep loads them on the
current transformers (where ``GPT2Model`` lacks the generation helpers diffusers calls).

Only the sizes differ: every network is a few thousand parameters, the tokenizers are trained offline on a few
phrases with the ``tokenizers`` library. Nothing is downloaded. ``build_tiny_audioldm2(path)`` and
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
        normalize_before=False, initializer_range=0.2,  # larger than the default so stems are O(0.1), not O(1e-6)
    )
    return SpeechT5HifiGan(config)


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
    pipe = AudioLDM2Pipeline(
        vae=_vae(seed + 5), text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        projection_model=projection_model, language_model=language_model, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, feature_extractor=ClapFeatureExtractor(), unet=unet, scheduler=_scheduler(),
        vocoder=_vocoder(seed + 6),
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
    pipe = AudioLDMPipeline(
        vae=_vae(seed + 5), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=_scheduler(),
        vocoder=_vocoder(seed + 6),
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
