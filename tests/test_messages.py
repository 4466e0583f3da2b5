"""Messages a user gets when something goes wrong around a run (issue 14, item 5): each says what is wrong and
what to do, and nothing is left half-written. Runs without models where it can (separator test double)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def write_wave(path: Path, seconds: float = 1.5, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")


# -- models download offline ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["audioldm2", "ast", "panns"])
def test_models_download_offline_says_offline_and_what_to_do(capsys, name):
    code, output = run(capsys, "models", "download", name)  # the tests run with HF_HUB_OFFLINE=1
    assert code == 1
    message = output.split("error:", 1)[1]
    assert "offline mode is on" in message and "unset it" in message
    assert "models download" not in message  # not the advice to run the very command that failed
    assert "stacktrace" not in message and "Traceback" not in output


# -- usage errors: thresholds and hops -----------------------------------------------------------------------------

def test_threshold_outside_0_1_is_a_usage_error(tmp_path, capsys):
    write_wave(tmp_path / "mix.wav")
    for bad in ("2", "-0.1", "nan"):
        code, output = run(capsys, tmp_path / "mix.wav", "--threshold", bad)
        assert code == 2 and "--threshold" in output, output
        code, output = run(capsys, "tag", tmp_path / "mix.wav", "--threshold", bad)
        assert code == 2 and "--threshold" in output, output


def test_an_overlap_leaving_a_hop_under_half_a_second_is_a_usage_error(tmp_path, capsys):
    write_wave(tmp_path / "mix.wav")
    code, output = run(capsys, tmp_path / "mix.wav", "-s", "dog", "--window", "1", "--overlap", "0.99")
    assert code == 2 and "--overlap" in output and "0.01 s between windows" in output and "0.50" in output
    code, output = run(capsys, tmp_path / "mix.wav", "-s", "dog", "--window", "1", "--overlap", "0.5",
                       "--dry-run", "-o", tmp_path / "out")
    assert code == 0, output  # a 0.5 s hop is fine


# -- SIGTERM --------------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("one_torch_thread")
def test_sigterm_stops_like_ctrl_c_and_exits_143(tmp_path, capsys, monkeypatch, tiny_audioldm2_dir):
    from autosep.separator import ZeroSep

    for name in ("a", "b", "c"):
        write_wave(tmp_path / "in" / f"{name}.wav", seconds=4.0)
    real = ZeroSep.separate_detailed
    calls = {"n": 0}

    def terminated(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # a.wav takes 2 windows; b.wav is terminated in its first window
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ZeroSep, "separate_detailed", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "-s", "dog barking", "--model",
                       tiny_audioldm2_dir, "--steps", "1", "--window", "2.56", "--device", "cpu")
    assert code == 143 and "terminated" in output
    assert (tmp_path / "out" / "a" / "manifest.json").exists()
    assert not list((tmp_path / "out" / "b").iterdir())  # its temporaries are gone
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the command's only


# -- library warnings follow -q / -v -------------------------------------------------------------------------------

_NOISY_RUN = textwrap.dedent("""
    import logging, sys, warnings
    from transformers.utils import logging as transformers_logging
    from autosep.pipeline import pipeline as pipeline_module
    real_load = pipeline_module.Pipeline.load.__func__

    def noisy_load(cls, settings, progress=None):
        pipeline = real_load(cls, settings, progress)  # a run's models load here
        warnings.warn("a library's FutureWarning", FutureWarning)
        transformers_logging.get_logger("transformers.models.fake").warning("a library's notice")
        logging.getLogger("accelerate.utils").warning("accelerate says something")
        return pipeline

    pipeline_module.Pipeline.load = classmethod(noisy_load)
    from autosep.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("flag, shown", [("-q", False), ("-v", True), (None, True)])
def test_library_warnings_follow_quiet_and_verbose(tmp_path, flag, shown):
    write_wave(tmp_path / "mix.wav")
    args = [str(tmp_path / "mix.wav"), "-s", "dog", "--dry-run", "-o", str(tmp_path / "out")] + ([flag] if flag else [])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _NOISY_RUN, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for text in ("a library's FutureWarning", "a library's notice", "accelerate says something"):
        assert (text in proc.stderr) == shown, (flag, text, proc.stderr)
