"""The backbone registry (issue 18, item 2): a family is one class; defining it registers it, and from then on the
model list, the aliases, the loader's choice and the separator run it without any other change (CONTRIBUTING.md,
"Adding a backbone", follows this test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import autosep
from autosep.separator import loading
from autosep.separator.backbones import Backbone, Inverted, ModelCard, base

RATE = 8_000


class ToyPipe(torch.nn.Module):
    """A 'model' that scales the mixture by a gain per prompt (read from the folder's toy.json)."""

    def __init__(self, gains: dict[str, float]):
        super().__init__()
        self.gains, self.vae, self.unet = gains, torch.nn.Identity(), torch.nn.Linear(1, 1)


@pytest.fixture
def toy_family(monkeypatch):
    """The toy family, registered into a copy of the registry that the test's end restores."""
    monkeypatch.setattr(base, "_FAMILIES", dict(base._FAMILIES))

    class ToyBackbone(Backbone):
        name, pipeline_classes, layout = "toy", ("ToyPipe",), "a toy folder (toy.json)"
        samplers = {"ddpm": "toy gain", "ddim": "toy gain"}
        models = (ModelCard("toy", "example/toy", "1 kB", "gains from a table", "CC0"),)
        sample_rate, channels, default_window, max_steps, text_modules = RATE, 1, 0.5, 1000, []

        @classmethod
        def claims_folder(cls, folder):
            return (folder / "toy.json").is_file()

        @classmethod
        def load(cls, folder):
            return ToyPipe(json.loads((folder / "toy.json").read_text()))

        def encode(self, prompt, device):
            return {"gain": torch.tensor([[self.pipe.gains.get(prompt, 0.0)]])}

        def stack(self, conditionings, dtype, seconds=0.0):
            return {"gain": torch.cat([c["gain"] for c in conditionings])}

        def predict(self, latents, t, batch, dtype):
            return latents * batch["gain"][:, :, None]

        def padded_length(self, samples):
            return samples

        def encode_audio(self, wave, seed):
            return wave[None]

        def decode_audio(self, latents):
            return latents

        def model_calls(self, inversion, steps):
            return 0, 1

        def invert(self, x0, prompts, run):
            return Inverted(x0)

        def denoise(self, start, prompts, run):
            return run.noise(start.x_top, torch.zeros(()), prompts)

    return ToyBackbone


def test_a_registered_family_is_listed_named_and_runs_through_the_pipeline(toy_family, tmp_path):
    assert loading.model_aliases()["toy"] == "example/toy"
    assert any(m.alias == "toy" and m.licence == "CC0" for m in autosep.separator.KNOWN_MODELS)
    folder = tmp_path / "toy-model"
    folder.mkdir()
    (folder / "toy.json").write_text(json.dumps({"hum": 0.25, "whole mix": 1.0}))
    t = np.arange(RATE) / RATE
    mix = (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(tmp_path / "mix.wav", mix, RATE, subtype="FLOAT")

    result = autosep.separate_file(tmp_path / "mix.wav", sources=["hum", "whole mix"], model=str(folder),
                                   render="generative", out=str(tmp_path / "out"), device="cpu", steps=3)

    separator = result.manifest.separator
    assert (separator.backbone, separator.sampler, separator.sample_rate) == ("toy", "toy gain", RATE)
    hum, whole = result.stems["hum"][:, 0], result.stems["whole mix"][:, 0]
    np.testing.assert_allclose(whole, mix, atol=1e-4)  # the pipeline's windows, fades and writes add nothing
    np.testing.assert_allclose(hum, 0.25 * mix, atol=1e-4)


def test_a_family_cannot_take_another_familys_model_name(monkeypatch):
    monkeypatch.setattr(base, "_FAMILIES", dict(base._FAMILIES))
    with pytest.raises(ValueError, match="audioldm2"):
        class Impostor(base.families()[0]):
            name = "impostor"
            models = (ModelCard("audioldm2", "someone/else", "1 GB", "", ""),)


def test_every_shipped_family_is_found_for_its_own_pipelines_and_repos():
    names = [family.name for family in base.families()]
    assert sorted(names) == ["audioldm", "audioldm2", "stable-audio-3", "stable-audio-open", "tango"]
    for card in base.model_cards():
        family = base.family_for_repo(card.repo)
        assert family is not None and card in family.models
    assert [card.alias for card in base.model_cards() if card.default] == ["audioldm2"]
