"""Tiny random-weight vision models, saved the way the real ones are published (``save_pretrained`` folders of
model + processor), for loading through autosep's ``from_pretrained`` path.

- ``tiny_clip_dir``: a CLIP (the family of openai/clip-vit-base-patch32) with a character-level CLIP tokenizer.
- ``tiny_vlm_dir``: an Idefics3 (the architecture of HuggingFaceTB/SmolVLM-256M-Instruct) with its special
  tokens (``<fake_token_around_image>``, ``<image>``, ``<global-img>``, ``<end_of_utterance>``) and a chat template
  in SmolVLM's "User:...<end_of_utterance>\\nAssistant:" form. Its text model's final norm is zeroed, so every
  logit is 0 and greedy decoding always picks token 0, which is the word " barking": the model's answer is known
  (" barking barking ..."), whatever the frames, so a test can follow it into the prompt.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest

VLM_WORD = "barking"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    chars = list(string.ascii_lowercase + string.digits)
    vocab = chars + [c + "</w>" for c in chars] + ["<unk>", "<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, merges=[], unk_token="<unk>")
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip") / "model"
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (GPT2TokenizerFast, Idefics3Config, Idefics3ForConditionalGeneration,
                              Idefics3ImageProcessor, Idefics3Processor)

    vocab = {"\u0120" + VLM_WORD: 0, **{c: i + 1 for i, c in enumerate(sorted(ByteLevel.alphabet()))}}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = GPT2TokenizerFast(vocab=vocab, merges=[], eos_token="<end_of_utterance>", pad_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]})
    template = ("<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
                "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
                "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n"
                "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
    config = Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=32,
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2,
    )
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    with torch.no_grad():
        model.model.text_model.norm.weight.zero_()  # every logit 0: greedy decoding answers token 0
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = tmp_path_factory.mktemp("vlm") / "model"
    model.save_pretrained(folder)
    image_processor = Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": 32},
                                             max_image_size={"longest_edge": 32})
    Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                      chat_template=template).save_pretrained(folder)
    return folder
