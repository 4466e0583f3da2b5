"""AST, CLAP and the audio-language model: tiny random-weight models loaded through autosep's loaders."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from autosep.errors import ModelNotAvailableError
from autosep.taggers import OPEN_SET_PREFIX, load_tagger, plan_sources
from autosep.taggers.audio_lm import parse_sources
from autosep.taggers.clap import NEUTRAL_PROMPT, VocabularyError


def noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("name", ["ast", "clap", "audio-lm"])
def test_model_neither_cached_nor_downloadable_is_named(name):
    with pytest.raises(ModelNotAvailableError) as error:
        load_tagger(name, model="nobody/no-such-model", device="cpu")
    message = str(error.value)
    assert "nobody/no-such-model" in message and f"autosep models download {name}" in message


def test_unknown_tagger_and_misplaced_vocab_are_value_errors():
    with pytest.raises(ValueError, match="panns, ast, clap, audio-lm"):
        load_tagger("yamnet")
    with pytest.raises(ValueError, match="clap"):
        load_tagger("ast", vocab=["dog"])


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")  # transformers' numpy mel bank
def test_ast_scores_are_sigmoid_of_logits_per_window(tiny_ast_dir):
    tagger = load_tagger("ast", model=tiny_ast_dir, device="cpu")
    assert tagger.sample_rate == 16000 and tagger.window_seconds == pytest.approx(10.24)
    assert tagger.labels[0] == "Speech" and len(tagger.labels) == 527
    wave = noise(15, 22050)
    result = tagger.tag(wave, 22050)
    assert result.probs.shape == (2, 527)
    assert result.window_times[0] == pytest.approx((0.0, 10.24))
    assert result.window_times[1][1] == pytest.approx(15.0)
    # the first window scored by hand through the model: sigmoid, not softmax
    from autosep.waveforms import resample

    first = resample(wave, 22050, 16000)[: int(10.24 * 16000)]
    features = tagger.extractor([first], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = tagger.model(input_values=features["input_values"]).logits
    np.testing.assert_allclose(result.probs[0], torch.sigmoid(logits)[0].numpy(), rtol=1e-4, atol=1e-5)
    # labels are display names, which the planner accepts as they are
    plan_sources(result.probs, result.labels, result.window_times, threshold=0.0, max_sources=2)


def test_clap_presence_is_calibrated_against_the_neutral_prompt(tiny_clap_dir):
    tagger = load_tagger("clap", model=tiny_clap_dir, device="cpu", vocab=["dog barking", "Cello", "a kazoo"])
    assert tagger.labels == [OPEN_SET_PREFIX + "dog barking", "/m/01xqw", OPEN_SET_PREFIX + "a kazoo"]
    assert tagger.sample_rate == 48000 and tagger.window_seconds == 10.0
    result = tagger.tag(noise(12, 16000), 16000)
    assert result.probs.shape == (2, 3)
    # recompute the rule for the first window: sigmoid(scale * (cos(audio, text) - cos(audio, neutral)))
    from autosep.waveforms import resample

    first = resample(noise(12, 16000), 16000, 48000)[:480000]
    features = tagger.processor.feature_extractor([first], sampling_rate=48000, return_tensors="pt",
                                                  truncation="rand_trunc", padding="repeatpad")
    with torch.no_grad():
        audio = tagger.model.get_audio_features(input_features=features["input_features"])
        audio = torch.nn.functional.normalize(getattr(audio, "pooler_output", audio), dim=-1)[0]
        texts = tagger.processor.tokenizer(["dog barking", "cello", "a kazoo", NEUTRAL_PROMPT], padding=True,
                                           return_tensors="pt")
        text = tagger.model.get_text_features(**texts)
        text = torch.nn.functional.normalize(getattr(text, "pooler_output", text), dim=-1)
        cos = text @ audio
        expected = torch.sigmoid(tagger.model.logit_scale_a.exp() * (cos[:3] - cos[3])).numpy()
    np.testing.assert_allclose(result.probs[0], expected, rtol=1e-4, atol=1e-5)


def test_clap_default_vocabulary_is_audioset(tiny_clap_dir):
    tagger = load_tagger("clap", model=tiny_clap_dir, device="cpu")
    assert len(tagger.labels) == 527 and tagger.labels[0] == "/m/09x0r"


def test_clap_vocabulary_file(tiny_clap_dir, tmp_path):
    empty = tmp_path / "vocab.txt"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(VocabularyError, match="empty"):
        load_tagger("clap", model=tiny_clap_dir, device="cpu", vocab=empty)
    good = tmp_path / "good.txt"
    good.write_text("Dog\n- church bells\n")
    tagger = load_tagger("clap", model=tiny_clap_dir, device="cpu", vocab=good)
    assert tagger.labels == ["/m/0bt9lr", OPEN_SET_PREFIX + "church bells"]


@pytest.mark.parametrize("text, expected", [
    ('["man speaking", "acoustic guitar", "dog barking"]', ["man speaking", "acoustic guitar", "dog barking"]),
    ('Sure! Here you go:\n```json\n["Rain.", "  Thunder "]\n```', ["rain", "thunder"]),
    ('[{"source": "Cello"}, {"name": "a violin"}, 3, null]', ["cello", "a violin"]),
    ('- birds chirping\n- 2. wind\n* car horn', ["birds chirping", "2. wind", "car horn"]),
    ("1. Piano\n2) Drums", ["piano", "drums"]),
    ('["none"]', []),
    ("[]", []),
    ('["dog barking", "dog barking", "a very long description of a sound that goes on and on and on"]',
     ["dog barking", "a very long description of a"]),  # at most six words
])
def test_audio_lm_answers_become_clean_phrases(text, expected):
    phrases, warning = parse_sources(text)
    assert phrases == expected and warning is None


@pytest.mark.parametrize("text", [
    "", "I cannot hear anything.", "[unclosed", "{\"a\": 1}", "\x00\x01\ufffd garbage ]]][[[", "[[[[[", None, 42,
    "]" * 500 + "[" * 500,
])
def test_audio_lm_garbage_gives_an_empty_list_and_a_warning(text):
    phrases, warning = parse_sources(text)
    assert phrases == [] and warning


def test_audio_lm_tiny_model_end_to_end(tiny_audio_lm_dir, caplog):
    tagger = load_tagger("audio-lm", model=tiny_audio_lm_dir, device="cpu")
    tagger.max_new_tokens = 8
    assert tagger.sample_rate == 16000 and tagger.window_seconds == 30.0
    answer = tagger.ask(noise(2, 16000))
    assert isinstance(answer, str)
    with caplog.at_level(logging.WARNING):
        result = tagger.tag(noise(5, 16000), 16000)  # random weights: whatever it says, no exception
    assert result.window_times == [(0.0, 5.0)]
    assert result.probs.shape == (1, len(result.labels))
    assert all(label.startswith(OPEN_SET_PREFIX) for label in result.labels)


def test_audio_lm_phrases_become_open_set_columns_per_window(tiny_audio_lm_dir, monkeypatch):
    tagger = load_tagger("audio-lm", model=tiny_audio_lm_dir, device="cpu")
    answers = iter(['["man speaking", "acoustic guitar"]', "no idea", '["Man speaking", "rain on a roof"]'])
    monkeypatch.setattr(tagger, "ask", lambda audio: next(answers))
    result = tagger.tag(noise(70, 16000), 16000)
    assert result.window_times == [(0.0, 30.0), (30.0, 60.0), (40.0, 70.0)]
    assert result.labels == [OPEN_SET_PREFIX + p for p in ("man speaking", "acoustic guitar", "rain on a roof")]
    np.testing.assert_array_equal(result.probs, [[1, 1, 0], [0, 0, 0], [1, 0, 1]])
    assert len(result.notes) == 1 and "no idea" in result.notes[0]
    plan = plan_sources(result.probs, result.labels, result.window_times, threshold=tagger.default_threshold)
    assert {s.prompt for s in plan} == {"man speaking", "acoustic guitar", "rain on a roof"}
    speech = next(s for s in plan if s.prompt == "man speaking")
    assert speech.segments == [(0.0, 30.0), (40.0, 70.0)]


def test_audio_lm_hears_a_short_recording_as_one_window_padded_with_silence(tiny_audio_lm_dir, monkeypatch):
    tagger = load_tagger("audio-lm", model=tiny_audio_lm_dir, device="cpu")
    heard = []
    monkeypatch.setattr(tagger, "ask", lambda audio: heard.append(np.array(audio)) or '["dog barking"]')
    short = noise(0.2, 44100)
    result = tagger.tag(short, 44100)
    (audio,) = heard
    assert len(audio) == 30 * 16000
    assert np.any(audio[:3200]) and not np.any(audio[3200:])
    assert result.window_times == [(0.0, 0.2)]
    assert result.labels == [OPEN_SET_PREFIX + "dog barking"]


def test_audio_lm_parsing_work_is_bounded():
    import time

    start = time.perf_counter()
    phrases, warning = parse_sources("[" + "x] [" * 3000 + "]")
    assert phrases == [] and warning
    assert time.perf_counter() - start < 2.0


def test_audio_lm_list_followed_by_bracketed_text():
    assert parse_sources('Sources: ["dog barking"] (and [maybe] a cat)') == (["dog barking"], None)
