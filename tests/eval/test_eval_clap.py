"""CLAP-A, CLAP-T, CLAP embeddings (FAD) and LPAPS on a tiny random-weight CLAP, saved and loaded back through
the same hub-cache lookup a user's download of ``laion/clap-htsat-unfused`` takes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from autosep.eval.clap import CLAP_MODEL_ID, ClapScorer, cosine_rows
from autosep.eval.metrics import frechet_distance, resample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scorer(tiny_clap_dir) -> ClapScorer:
    from huggingface_hub import constants
    from tiny_models.audioldm2 import install_in_hf_cache

    install_in_hf_cache(tiny_clap_dir, CLAP_MODEL_ID)
    try:
        yield ClapScorer(device="cpu")  # the default id, offline, from the cache: a user's path
    finally:  # other tests see an empty cache for CLAP
        shutil.rmtree(Path(constants.HF_HUB_CACHE) / ("models--" + CLAP_MODEL_ID.replace("/", "--")))


def _sound(seconds: float, rate: int, seed: int, pitch: float = 440.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t)
    return (0.3 * envelope * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_the_default_model_loads_from_the_cache_at_its_own_rate(scorer):
    assert scorer.model_id == CLAP_MODEL_ID
    assert scorer.sample_rate == 48000 and scorer.window == 480000


def test_identical_audio_has_clap_a_one_and_lpaps_zero(scorer):
    a = scorer.prepare(_sound(2.0, 48000, 0), 48000)
    b = scorer.prepare(_sound(2.0, 48000, 1, pitch=1800.0), 48000)
    embeddings = scorer.embed_audio([a, a.copy(), b])
    assert embeddings.shape[0] == 3
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    same, different = cosine_rows(embeddings[:2], embeddings[[1, 2]])
    assert same == pytest.approx(1.0, abs=1e-6)
    assert different < same
    lpaps_same, lpaps_different = scorer.lpaps_many([(a, a.copy()), (a, b)])
    assert lpaps_same == pytest.approx(0.0, abs=1e-6) and lpaps_different > 1e-3


def test_a_16_khz_and_a_48_khz_copy_embed_alike_only_when_resampled(scorer):
    # Band-limited below 8 kHz, so the 16 kHz copy holds the whole sound.
    full = resample(resample(_sound(3.0, 48000, 2), 48000, 16000), 16000, 48000)
    low = resample(full, 48000, 16000)  # the same sound, stored at 16 kHz
    other = scorer.prepare(_sound(3.0, 48000, 3, pitch=2500.0), 48000)
    e_full, e_low, e_other, e_misread = scorer.embed_audio([
        scorer.prepare(full, 48000), scorer.prepare(low, 16000), other,
        low.astype(np.float32),  # 16 kHz samples read as if they were 48 kHz: what an implicit rate does
    ])
    resampled = float(e_full @ e_low)
    assert resampled > 0.9999
    assert 1 - resampled < 0.01 * (1 - float(e_full @ e_misread))
    assert 1 - resampled < 0.01 * (1 - float(e_full @ e_other))


def test_long_clips_are_windowed_deterministically_and_fad_of_a_set_against_itself_is_zero(scorer):
    long = scorer.prepare(_sound(12.5, 48000, 4), 48000)  # two windows: never random-cropped
    first, again = scorer.embed_audio([long]), scorer.embed_audio([long])
    np.testing.assert_allclose(first, again, atol=1e-6)
    waves = [scorer.prepare(_sound(1.0, 48000, seed, pitch=200.0 + 150 * seed), 48000) for seed in range(6)]
    embeddings = scorer.embed_audio(waves)
    assert frechet_distance(embeddings, embeddings).value == pytest.approx(0.0, abs=1e-9)
