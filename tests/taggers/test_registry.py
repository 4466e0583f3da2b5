"""The tagger registry (issue 18, item 3): taggers are found by name or alias, an unknown name is a usage error,
and a tagger written in a few lines runs through the real pipeline (the "Adding a tagger" recipe in
CONTRIBUTING.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import autosep
from autosep.cli import main
from autosep.errors import SettingsError
from autosep.taggers import KNOWN_MODELS, TaggingSettings, WindowGrid, registry
from autosep.taggers.base import Tagger
from autosep.taggers.settings import TAGGER_NAMES


@pytest.fixture
def whistle_tagger():
    """The recipe's tagger: "Whistle" wherever a window is loud, scored on 0.5 s windows every 0.25 s."""

    class WhistleTagger(Tagger):
        name = "whistle-meter"
        aliases = ("whistle",)
        sample_rate = 16000
        window_seconds = 0.5
        hop_seconds = 0.25
        labels = ["Whistle"]  # AudioSet display names or mids; "open:<phrase>" for words of its own

        def __init__(self, model=None, device="auto"):
            self.model_id = "rms-meter"

        def score_windows(self, windows):
            loudness = np.array([np.sqrt(np.mean(w ** 2)) for w in windows])
            return (loudness > 0.05).astype(np.float32)[:, None] * 0.9

    yield WhistleTagger
    registry.unregister("whistle-meter")


def test_builtin_taggers_come_from_their_classes():
    assert TAGGER_NAMES == ("panns", "ast", "clap", "audio-lm")
    assert [m.alias for m in KNOWN_MODELS] == list(TAGGER_NAMES) and {m.role for m in KNOWN_MODELS} == {"tagger"}
    grids = registry.window_grids()
    assert grids["panns"] == WindowGrid(2.0, 1.0) and grids["audio-lm"] == WindowGrid(30.0, 30.0)
    assert TaggingSettings("CNN14").tagger == "panns" and TaggingSettings("audio_lm").tagger == "audio-lm"


def test_an_unknown_tagger_is_a_usage_error_naming_the_valid_ones():
    with pytest.raises(SettingsError, match="unknown tagger 'qwen'.*panns, ast, clap, audio-lm"):
        TaggingSettings("qwen")
    assert main(["mix.wav", "--tagger", "qwen"]) == 2  # before any file is read or model loaded
    with pytest.raises(SettingsError, match="--vocab.*--tagger clap"):
        TaggingSettings("panns", vocab=["dog"])


def test_a_name_taken_by_another_tagger_is_refused(whistle_tagger):
    with pytest.raises(ValueError, match="'whistle' .* is taken by"):
        type("Other", (Tagger,), {"name": "other", "aliases": ("whistle",), "score_windows": lambda s, w: w})
    assert "other" not in registry.tagger_names()


def test_one_grid_for_the_tagger_and_the_block_tagger(whistle_tagger):
    tagger = whistle_tagger()
    assert tagger.grid == registry.window_grids()["whistle-meter"] == WindowGrid(0.5, 0.25)
    _, times = tagger.windows(np.zeros(16000, dtype=np.float32), 16000)
    assert times[:3] == [(0.0, 0.5), (0.25, 0.75), (0.5, 1.0)]
    assert "whistle-meter (whistle): 0.5 s windows every 0.25 s" in registry.help_text()


def test_a_registered_tagger_runs_through_the_pipeline(whistle_tagger, tmp_path, tiny_audioldm2_dir):
    rate = 16000
    t = np.arange(3 * rate) / rate
    mix = np.where(t < 1.5, 0.3 * np.sin(2 * np.pi * 2000 * t), 0.0).astype(np.float32)
    sf.write(tmp_path / "mix.wav", mix, rate)
    separator = autosep.AutoSep(tagger="whistle", model=str(tiny_audioldm2_dir), steps=1, window=2.56,
                                device="cpu", out=tmp_path / "out")
    (result,) = separator.run(tmp_path / "mix.wav")
    assert result.status == "done", result.message
    manifest = json.loads((result.output / "manifest.json").read_text())
    assert manifest["tagger"]["name"] == "whistle-meter" and manifest["tagger"]["model_id"] == "rms-meter"
    (found,) = manifest["detections"]
    assert found["label"] == "Whistle" and found["prompt"] == "whistle"
    (start, end), = found["segments"]
    assert start == 0.0 and 1.5 <= end <= 2.0  # loud until 1.5 s: windows reaching past it are quiet
    (stem,) = manifest["sources"]
    assert stem["file"] == "whistle.wav" and stem["check"]["score_in_mixture"] == pytest.approx(0.9)
    assert sorted(p.name for p in result.output.iterdir()) == ["manifest.json", "residual.wav", "whistle.wav"]
