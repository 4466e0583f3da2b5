"""The separator's pure parts: mel front end, waveform scaling, frame grid, model names, inversion prompts."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch

from autosep.registry import KnownModel
from autosep.separator import KNOWN_MODELS, MODEL_ALIASES, inversion_prompts, resolve_model_name
from autosep.separator import mel


def test_log_mel_gives_one_frame_per_hop_and_the_floor_on_silence():
    features = mel.log_mel(torch.zeros(16_000))
    assert features.shape == (16_000 // 160, 64)
    assert torch.all(features == torch.log(torch.tensor(1e-5)))


def test_log_mel_matches_librosa_magnitude_slaney_mel_of_the_reflect_padded_signal():
    rng = np.random.default_rng(0)
    wave = (0.3 * rng.standard_normal(4_800)).astype(np.float32)
    ours = mel.log_mel(torch.from_numpy(wave)).numpy()

    padded = np.pad(wave, (432, 432), mode="reflect")  # (n_fft - hop) / 2 each side, as AudioLDM does
    reference = librosa.feature.melspectrogram(
        y=padded, sr=16_000, n_fft=1024, hop_length=160, win_length=1024, window="hann", center=False,
        power=1.0, n_mels=64, fmin=0.0, fmax=8_000.0, htk=False, norm="slaney",
    )
    reference = np.log(np.maximum(reference, 1e-5)).T
    assert ours.shape == reference.shape == (30, 64)
    np.testing.assert_allclose(ours, reference, atol=2e-4)


def test_log_mel_keeps_leading_batch_axes_and_rejects_off_grid_lengths():
    assert mel.log_mel(torch.zeros(2, 3, 1_600)).shape == (2, 3, 10, 64)
    with pytest.raises(ValueError, match="multiple of 160"):
        mel.log_mel(torch.zeros(1_000))


def test_normalise_centres_scales_to_half_peak_and_reports_the_inverse_factor():
    wave = torch.tensor([0.1, 0.9, -0.3, 0.5])
    scaled, unscale = mel.normalise(wave)
    assert abs(float(scaled.mean())) < 1e-7
    assert math.isclose(float(scaled.abs().max()), 0.5, rel_tol=1e-6)
    torch.testing.assert_close(scaled * unscale, wave - wave.mean())
    silent, factor = mel.normalise(torch.zeros(8))
    assert factor == 1.0 and torch.all(silent == 0)


def test_padding_reaches_the_next_grid_multiple_with_silence():
    wave = torch.ones(1_000)
    padded = mel.pad_to_multiple(wave, 640)
    assert padded.shape == (1_280,)
    assert torch.all(padded[:1_000] == 1) and torch.all(padded[1_000:] == 0)
    assert mel.pad_to_multiple(torch.ones(1_280), 640).shape == (1_280,)
    assert mel.frame_multiple(4, 8) == 5_120  # real AudioLDM2: hop 160, VAE 4x, UNet 8x


def test_aliases_resolve_to_the_published_checkpoints():
    assert resolve_model_name("audioldm2") == "cvssp/audioldm2"
    assert resolve_model_name("AudioLDM2-Large") == "cvssp/audioldm2-large"
    assert resolve_model_name("audioldm2-music") == "cvssp/audioldm2-music"
    assert resolve_model_name("audioldm-s") == "cvssp/audioldm-s-full-v2"
    assert resolve_model_name("audioldm-l") == "cvssp/audioldm-l-full"
    assert resolve_model_name(None) == "cvssp/audioldm2"
    assert resolve_model_name("someone/their-audioldm2") == "someone/their-audioldm2"
    assert resolve_model_name("/models/audioldm2") == "/models/audioldm2"


def test_known_models_cover_every_alias_as_separators():
    assert all(isinstance(m, KnownModel) and m.role == "separator" for m in KNOWN_MODELS)
    assert {m.alias: m.source for m in KNOWN_MODELS} == MODEL_ALIASES


def test_inversion_prompts_others_and_null():
    assert inversion_prompts(["cello", "flute", "violin"], "others") == ["flute, violin", "cello, violin", "cello, flute"]
    assert inversion_prompts(["cello"], "others") == [""]
    assert inversion_prompts(["cello", "flute"], "null") == ["", ""]
    with pytest.raises(ValueError, match="others, null"):
        inversion_prompts(["cello"], "everything")
    with pytest.raises(ValueError, match="at least one"):
        inversion_prompts([], "null")
