"""Tiny random-weight taggers, saved the way the real ones are published, for loading through autosep's code.

- ``tiny_cnn14_checkpoint``: a narrow Cnn14 (``panns_inference``'s network) saved as ``{'model': state_dict}``.
- ``tiny_ast_dir``, ``tiny_clap_dir``, ``tiny_audio_lm_dir``: transformers models + processors
  (``save_pretrained`` folders) with AudioSet labels where the real model has them.
- ``http_folder``: a loopback HTTP server, to test verified downloads without the network.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

TINY_CNN14_WIDTHS = (2, 2, 4, 4, 4, 8)


def _byte_level_bpe(folder: Path, words: list[str]) -> tuple[Path, Path]:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(words, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    return folder / "vocab.json", folder / "merges.txt"


@pytest.fixture(scope="session")
def tiny_cnn14_checkpoint(tmp_path_factory, audioset_dir) -> Path:
    import torch

    from autosep.taggers.panns import CNN14_FILENAME, build_cnn14

    torch.manual_seed(0)
    model = build_cnn14(527, TINY_CNN14_WIDTHS)
    path = tmp_path_factory.mktemp("panns") / CNN14_FILENAME
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return path


@pytest.fixture(scope="session")
def tiny_ast_dir(tmp_path_factory, audioset_dir) -> Path:
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    from autosep.taggers.audioset import load_ontology

    names = load_ontology().class_names
    torch.manual_seed(0)
    config = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       frequency_stride=16, time_stride=16, num_labels=len(names),
                       id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    folder = tmp_path_factory.mktemp("ast")
    ASTForAudioClassification(config).save_pretrained(folder)
    ASTFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("clap")
    vocab, merges = _byte_level_bpe(folder / "bpe", ["dog barking", "man speaking", "background noise", "cello"])
    tokenizer = RobertaTokenizerFast(vocab_file=str(vocab), merges_file=str(merges), model_max_length=32)
    config = ClapConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=40, projection_dim=8),
        # spec_size 256 with 64 mel bins is what a 10 s window needs (1001 frames fit a 1024-wide "image")
        audio_config=dict(window_size=4, num_mel_bins=64, spec_size=256, patch_size=16, patch_stride=(16, 16),
                          patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[1, 1], hidden_size=16,
                          projection_dim=8, enable_fusion=False),
        projection_dim=8,
    )
    torch.manual_seed(0)
    ClapModel(config).save_pretrained(folder / "model")
    ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"),
                  tokenizer=tokenizer).save_pretrained(folder / "model")
    return folder / "model"


@pytest.fixture(scope="session")
def tiny_audio_lm_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import (Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor,
                              Qwen2TokenizerFast, WhisperFeatureExtractor)

    folder = tmp_path_factory.mktemp("audio_lm")
    vocab, merges = _byte_level_bpe(folder / "bpe", ['["dog barking", "man speaking"]'])
    tokenizer = Qwen2TokenizerFast(vocab=str(vocab), merges=str(merges), unk_token=None, bos_token=None,
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]})
    config = Qwen2AudioConfig(
        audio_config=dict(d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                          num_mel_bins=128),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=32,
                         max_position_embeddings=2048),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder / "model")
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                        tokenizer=tokenizer).save_pretrained(folder / "model")
    return folder / "model"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A loopback HTTP server over a temporary folder; yields (folder, base_url)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
