"""Loading the full-band backbones the way users do: aliases, gated hub repositories, unconverted checkpoints,
the torchsde requirement and the ``models list`` rows. The hub's errors are raised offline, as the hub sends them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main
from autosep.errors import ModelNotAvailableError
from autosep.separator import resolve_model_name


def _hub_response(status: int, url: str):
    # huggingface_hub's own HTTP types (it builds its errors from them).
    from httpx2 import Request, Response

    return Response(status, request=Request("GET", url), headers={"x-error-code": "GatedRepo"})


def gated_error(repo: str):
    from huggingface_hub.errors import GatedRepoError

    url = f"https://huggingface.co/api/models/{repo}"
    return GatedRepoError(f"401 Client Error. Cannot access gated repo for url {url}. Access to model {repo} is "
                          "restricted. You must have access to it and be authenticated to access it.",
                          response=_hub_response(401, url))


def test_aliases_name_the_hub_checkpoints():
    assert resolve_model_name("stable-audio-open") == "stabilityai/stable-audio-open-1.0"
    assert resolve_model_name("Stable-Audio-3") == "stabilityai/stable-audio-3-medium-base"  # the base checkpoint
    assert resolve_model_name("stable-audio-3-distilled") == "stabilityai/stable-audio-3-medium"


def test_a_gated_model_says_what_to_do_and_exits_1(tmp_path, capsys, monkeypatch):
    import diffusers

    def gated_download(repo_id, **kwargs):
        # diffusers catches the hub's error from model_info, retries from the cache and raises from there.
        try:
            raise gated_error(repo_id)
        except Exception as exc:
            raise OSError(f"Cannot load {repo_id}: not cached") from exc

    monkeypatch.setattr(diffusers.DiffusionPipeline, "download", staticmethod(gated_download))
    wav = tmp_path / "mix.wav"
    sf.write(wav, np.zeros((4410, 2), dtype=np.float32) + 0.1, 44_100)
    code = main([str(wav), "--model", "stable-audio-open", "-s", "dog barking", "-o", str(tmp_path / "out")])
    output = "".join(capsys.readouterr())
    assert code == 1
    assert "stabilityai/stable-audio-open-1.0" in output and "gated" in output
    assert "accept its licence" in output and "hf auth login" in output and "HF_TOKEN" in output
    assert "Traceback" not in output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_a_gated_repository_the_model_needs_is_the_one_named():
    from autosep.separator.loading import hub_error_message

    message = hub_error_message("stabilityai/stable-audio-3-medium-base", gated_error("google/t5gemma-b-b-ul2"))
    assert "'google/t5gemma-b-b-ul2' (needed by 'stabilityai/stable-audio-3-medium-base') is gated" in message
    assert "https://huggingface.co/google/t5gemma-b-b-ul2," in message and "hf auth login" in message
    assert hub_error_message("cvssp/audioldm2", OSError("connection reset")) is None


def test_a_repository_without_a_pipeline_points_to_the_conversion(tmp_path, monkeypatch):
    import diffusers
    from huggingface_hub.errors import RemoteEntryNotFoundError

    from autosep.separator.loading import locate_pipeline

    def no_index(repo_id, **kwargs):
        url = f"https://huggingface.co/{repo_id}/resolve/main/model_index.json"
        raise RemoteEntryNotFoundError(f"404 Client Error. Entry Not Found for url: {url}.",
                                       response=_hub_response(404, url))

    monkeypatch.setattr(diffusers.DiffusionPipeline, "download", staticmethod(no_index))
    with pytest.raises(ModelNotAvailableError, match="convert_stable_audio_3_to_diffusers.py"):
        locate_pipeline("someone/stable-audio-3-finetune")
    # A local folder holding the original checkpoint gets the same advice.
    original = tmp_path / "sa3-original"
    original.mkdir()
    (original / "model_config.json").write_text(json.dumps({"model_type": "diffusion_cond"}))
    with pytest.raises(ModelNotAvailableError, match="original stable-audio-tools checkpoint"):
        locate_pipeline(str(original))


def test_stable_audio_open_without_torchsde_says_to_install_it(tiny_stable_audio_open_dir, monkeypatch):
    import importlib.util

    from autosep.separator.loading import load_pipeline

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchsde" else real_find_spec(name, *a))
    with pytest.raises(ModelNotAvailableError, match=r"torchsde.*pip install"):
        load_pipeline(tiny_stable_audio_open_dir)


def test_models_list_shows_the_stable_audio_backbones_with_size_and_licence(capsys):
    assert main(["models", "list"]) == 0
    output = capsys.readouterr().out
    for alias, repo in (("stable-audio-open", "stabilityai/stable-audio-open-1.0"),
                        ("stable-audio-3 ", "stabilityai/stable-audio-3-medium-base")):
        row = next(line for line in output.splitlines() if alias in line)
        assert repo in row and "GB" in row and "Stability AI Community License" in row
