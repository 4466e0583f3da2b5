"""The separator's pure parts: mel front end, waveform scaling, frame grid, model names, inversion prompts."""

from __future__ import annotations

import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from autosep.model_files import KnownModel
from autosep.separator import KNOWN_MODELS, MODEL_ALIASES, inversion_prompts, resolve_model_name
from autosep.separator import mel
from real_audio import INSTALL_HINT, missing_tools, render_midi, speak


def _read_16k(path: Path) -> np.ndarray:
    import soundfile

    wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != 16_000:
        wave = librosa.resample(wave, orig_sr=rate, target_sr=16_000, res_type="soxr_hq")
    return np.ascontiguousarray(wave, dtype=np.float32)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """Real audio rendered here: a violin line by FluidSynth (General MIDI soundfont) and speech by eSpeak NG."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to render real audio: {INSTALL_HINT} (as .ci/run does)")
    folder = tmp_path_factory.mktemp("rendered")
    notes, start = [], 0.0
    for i, pitch in enumerate([55, 59, 62, 67, 66, 64, 62, 71, 69, 67] * 3):
        length = 0.25 if i % 3 else 0.5
        notes.append((start, length, pitch, 100))
        start += length
    render_midi([(40, 0, notes)], folder / "violin.wav", rate=16000, gain=0.2)  # program 40: violin
    speak("The quick brown fox jumps over the lazy dog, while a violin plays a slow melody.", folder / "speech.wav")
    return _read_16k(folder / "violin.wav"), _read_16k(folder / "speech.wav")


def test_log_mel_gives_one_frame_per_hop_and_the_floor_on_silence():
    features = mel.log_mel(torch.zeros(16_000))
    assert features.shape == (16_000 // 160, 64)
    assert torch.all(features == torch.log(torch.tensor(1e-5)))


def _librosa_log_mel(wave: np.ndarray) -> np.ndarray:
    """The reference's features by an independent library: centred reflect-padded STFT, first N / 160 frames."""
    spectrum = librosa.feature.melspectrogram(
        y=wave, sr=16_000, n_fft=1024, hop_length=160, win_length=1024, center=True, pad_mode="reflect",
        power=1.0, n_mels=64, fmin=0, fmax=8000,
    )  # Slaney mel (librosa's default), [64, N / 160 + 1]
    return np.log(np.maximum(spectrum, 1e-5))[:, : len(wave) // 160].T


def test_log_mel_matches_librosa_on_noise():
    wave = (0.3 * np.random.default_rng(0).standard_normal(4_800)).astype(np.float32)
    ours = mel.log_mel(torch.from_numpy(wave)).numpy()
    assert ours.shape == (30, 64)
    np.testing.assert_allclose(ours, _librosa_log_mel(wave), rtol=0, atol=1e-4)


def test_frame_k_is_centred_on_sample_160k():
    # A click at sample 160 k is symmetric around frame k's centre: frames k - j and k + j see it alike.
    wave = torch.zeros(16_000)
    wave[160 * 40] = 1.0
    features = mel.log_mel(wave)
    torch.testing.assert_close(features[40 - 3], features[40 + 3])
    assert torch.all(features[40] > features[40 - 3])
    assert not torch.allclose(features[40 - 3], features[40 + 4])


def test_log_mel_matches_librosa_on_rendered_music_speech_and_a_10_s_mixture(recordings):
    instrument, speech = recordings
    mixture = np.zeros(160_000, dtype=np.float32)
    mixture[: len(instrument)] += instrument[:160_000]
    mixture[8_000: 8_000 + len(speech)] += speech[: 152_000]
    for name, wave in [("instrument", instrument), ("speech", speech), ("10 s mixture", mixture)]:
        wave = wave[: len(wave) // 160 * 160]
        scaled, _ = mel.normalise(torch.from_numpy(wave))  # what the separator feeds the front end
        ours = mel.log_mel(scaled).numpy()
        reference = _librosa_log_mel(scaled.numpy())
        assert ours.shape == reference.shape == (len(wave) // 160, 64), name
        assert ours.max() > -2.0, f"{name}: the rendered audio is nearly silent, the comparison would mean little"
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4, err_msg=name)


def test_log_mel_keeps_leading_batch_axes_and_rejects_off_grid_lengths():
    assert mel.log_mel(torch.zeros(2, 3, 1_600)).shape == (2, 3, 10, 64)
    with pytest.raises(ValueError, match="multiple of 160"):
        mel.log_mel(torch.zeros(1_000))
    with pytest.raises(ValueError, match="more than 512 samples"):
        mel.log_mel(torch.zeros(480))


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
