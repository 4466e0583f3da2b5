"""Checks before work (issue 24): a run that cannot do what it asks is refused (exit 2) before any model loads,
with a message that fits the case; a run that will do less than it seems to ask is warned about. No model is
ever loaded here: loading fails the test."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def mix(tmp_path):
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "mix.wav", (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return tmp_path / "mix.wav"


@pytest.fixture
def no_model_loads(monkeypatch):
    from autosep.pipeline.pipeline import Pipeline
    from autosep.separator import ZeroSep

    def refuse(*args, **kwargs):
        pytest.fail("a model started loading")

    monkeypatch.setattr(Pipeline, "load", classmethod(refuse))
    monkeypatch.setattr(ZeroSep, "from_pretrained", classmethod(refuse))


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model"], "--model 'no-such-model': it is neither a known name"),
    (["--model", "./models/no-such-model"], "no such folder"),
    (["-s", "dog barking", "--remove", "cat"], "--remove 'cat': no source of this run is called that; the stems are "
                                               "'dog barking', residual"),
    (["-s", "dog barking", "--keep", "dog"], "--keep 'dog'"),
    (["--overlap", "20s"], "--overlap 20s must be shorter than the 10.24 s window (the separator's own window"),
    (["--overlap", "1"], "for a fade of 1 s write --overlap 1s"),
    (["-s", ""], "--source got an empty prompt"),
    (["-s", "dog", "-s", " "], "--source got an empty prompt"),
    (["-s", "dog", "--drop-unconfirmed"], "--drop-unconfirmed works on the tagger's check"),
    (["-s", "dog", "--rounds", "2"], "--rounds 2 works on the tagger's check"),
    (["--max-sources", "0"], "--max-sources 0 keeps no source"),
])
def test_settings_that_cannot_work_are_refused_before_any_model_loads(mix, tmp_path, capsys, args, message):
    code, output = run(capsys, mix, "-o", tmp_path / "out", *args)
    assert code == 2, output
    assert message in output
    assert output.count("error:") == 1  # said once
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("no_model_loads")
def test_an_audio_file_as_tagger_model_is_named_as_such(mix, tmp_path, capsys):
    code, output = run(capsys, mix, "-o", tmp_path / "out", "--tagger-model", mix)
    assert code == 2 and "is an audio file, not a tagger model" in output
    assert "Delete" not in output  # the user's own file is never offered for deletion


def test_names_that_do_exist_pass(mix, tmp_path, capsys):
    # The stem's file name, its prompt and the residual are all valid names; a dry run loads no separator.
    for name in ("dog barking", "dog_barking", "Residual"):
        code, output = run(capsys, mix, "-o", tmp_path / "out", "-s", "dog barking", "--remove", name, "--dry-run")
        assert code == 0, output


def test_out_of_range_windows_and_ignored_options_are_warned_about():
    from autosep.pipeline.preflight import check_before_loading
    from autosep.pipeline.settings import PipelineOptions

    warnings = check_before_loading(PipelineOptions(sources=["dog"], window=0.05).settings())
    assert any("--window 0.05 s is very short" in w and "windows per minute" in w for w in warnings)
    warnings = check_before_loading(PipelineOptions(sources=["dog"], window=30).settings())
    assert any("longer than the 10.24 s the model was trained on" in w for w in warnings)
    assert check_before_loading(PipelineOptions(sources=["dog"], window=5).settings()) == []
    warnings = check_before_loading(PipelineOptions(sources=["dog"], planner={"threshold": 0.2}).settings())
    assert any("planner options" in w and "no effect with -s" in w for w in warnings)
    warnings = check_before_loading(PipelineOptions(sources=["dog" * 200]).settings())
    assert any("a -s prompt of 600 characters" in w for w in warnings)
    assert all(len(w) < 300 for w in warnings)  # a long prompt is not echoed whole


@pytest.mark.usefixtures("one_torch_thread")
def test_the_model_s_own_window_comes_from_its_configs(tiny_stable_audio_open_dir, tiny_audioldm2_dir):
    """A folder's window is read from its configs without loading it, and is the one the loaded model uses: an
    overlap that fits no window of it is refused up front."""
    from autosep.errors import SettingsError
    from autosep.pipeline.preflight import check_before_loading
    from autosep.pipeline.settings import PipelineOptions
    from autosep.separator import ZeroSep
    from autosep.separator.lookup import training_window

    window = training_window(tiny_stable_audio_open_dir)
    assert window == pytest.approx(ZeroSep.from_pretrained(tiny_stable_audio_open_dir, device="cpu").default_window)
    audioldm2 = ZeroSep.from_pretrained(tiny_audioldm2_dir, device="cpu")
    assert training_window(tiny_audioldm2_dir) == audioldm2.default_window
    with pytest.raises(SettingsError, match="must be shorter than"):
        check_before_loading(PipelineOptions(sources=["dog"], model=str(tiny_stable_audio_open_dir),
                                             overlap=f"{window + 1:g}s").settings())


def test_only_autosep_s_own_download_is_offered_for_deletion(tmp_path):
    from autosep.errors import ModelNotAvailableError
    from autosep.taggers.panns import cnn14_checkpoint_path, load_cnn14

    users = tmp_path / "my-model.pth"
    users.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelNotAvailableError) as caught:
        load_cnn14(users)
    assert "Delete" not in str(caught.value) and "--tagger-model takes a Cnn14 .pth" in str(caught.value)
    ours = cnn14_checkpoint_path()  # the tests' own cache folder (conftest)
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.write_bytes(b"a broken download")
    try:
        with pytest.raises(ModelNotAvailableError, match="Delete it and run `autosep models download panns`"):
            load_cnn14(ours)
    finally:
        ours.unlink()


def test_a_very_long_prompt_is_warned_about_and_shown_cut(mix, tmp_path, capsys):
    prompt = "a dog barking far away " * 220  # about 5000 characters
    code, output = run(capsys, mix, "-o", tmp_path / "out", "-s", prompt, "--dry-run")
    assert code == 0, output
    assert "a -s prompt of" in output and "characters" in output
    assert prompt.strip() not in output and f"({len(prompt.strip())} characters)" in output


def test_the_libraries_truncation_lines_are_left_to_autosep_s_own_warning():
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import logging; from autosep.logs import setup_logging; setup_logging(); "
              "log = logging.getLogger('diffusers.pipelines.audioldm2.pipeline_audioldm2'); "
              "log.warning('The following part of your input was truncated because CLAP can only handle sequences "
              "up to 77 tokens: [...]'); "
              "logging.getLogger('transformers.tokenization_utils_base').warning('Token indices sequence length is "
              "longer than the specified maximum sequence length for this model (1200 > 512)'); "
              "log.warning('any other notice')")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60).stderr
    assert "any other notice" in err and "truncated" not in err and "Token indices" not in err
