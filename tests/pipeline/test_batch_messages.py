"""Batch messages without models (issue 14, item 5), on the separator test double of test_pipeline_flow.py: the
output folder given as input is named as such; a full disk is named, stops the batch and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_wave(path: Path, seconds: float = 1.5, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")


# -- the output folder given as input -----------------------------------------------------------------------------

def test_an_output_folder_given_as_input_is_named_as_such(tmp_path):
    from test_pipeline_flow import BandSeparatorDouble

    from autosep.pipeline.batch import run_batch
    from autosep.pipeline.pipeline import Pipeline
    from autosep.pipeline.settings import PipelineOptions

    write_wave(tmp_path / "in" / "mix.wav")
    settings = PipelineOptions(sources=["low hum"], window=1.0, out=str(tmp_path / "separated")).settings()
    pipeline = Pipeline(settings, separator=BandSeparatorDouble())
    assert run_batch([str(tmp_path / "in")], settings, pipeline=pipeline).exit_code == 0
    outcome = run_batch([str(tmp_path / "separated")], settings, pipeline=pipeline)
    assert outcome.exit_code == 1
    assert "separated: holds only autosep's own output" in outcome.error and "recordings instead" in outcome.error


def test_a_glob_over_everything_skips_the_stems_of_any_earlier_output_folder(tmp_path, monkeypatch):
    """``"**/*.wav"`` reaches another run's output folder too: its stems are not recordings, a stem named on the
    command line still is."""
    from test_pipeline_flow import BandSeparatorDouble

    from autosep.pipeline.batch import run_batch
    from autosep.pipeline.pipeline import Pipeline
    from autosep.pipeline.settings import PipelineOptions

    write_wave(tmp_path / "in" / "mix.wav")
    earlier = PipelineOptions(sources=["low hum"], window=1.0, out=str(tmp_path / "first")).settings()
    assert run_batch([str(tmp_path / "in")], earlier, pipeline=Pipeline(earlier, separator=BandSeparatorDouble())
                     ).exit_code == 0
    monkeypatch.chdir(tmp_path)
    settings = PipelineOptions(sources=["low hum"], window=1.0, out="second").settings()
    pipeline = Pipeline(settings, separator=BandSeparatorDouble())
    outcome = run_batch(["**/*.wav"], settings, pipeline=pipeline)
    assert outcome.exit_code == 0, outcome.error
    assert [r.input for r in outcome.results] == [Path("in/mix.wav")]
    named = run_batch(["first/mix/low_hum.wav"], settings, pipeline=pipeline)
    assert [r.status for r in named.results] == ["done"]


# -- disk full -----------------------------------------------------------------------------------------------------

def test_a_full_disk_is_named_stops_the_batch_and_leaves_no_temporaries(tmp_path, monkeypatch):
    from test_pipeline_flow import BandSeparatorDouble

    from autosep.pipeline import write
    from autosep.pipeline.batch import run_batch
    from autosep.pipeline.pipeline import Pipeline
    from autosep.pipeline.settings import PipelineOptions

    for name in ("a", "b", "c"):
        write_wave(tmp_path / "in" / f"{name}.wav")
    settings = PipelineOptions(sources=["low hum"], window=1.0, out=str(tmp_path / "out")).settings()
    pipeline = Pipeline(settings, separator=BandSeparatorDouble())
    writes = {"n": 0}
    real_write = sf.SoundFile.write

    def filling_up(self, data):
        writes["n"] += 1
        if writes["n"] > 6:  # a.wav is written whole; b.wav's stems hit the full disk
            raise sf.LibsndfileError(2, "Error writing: ")  # what libsndfile says: "System error."
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", filling_up)
    monkeypatch.setattr(write.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 0})())
    outcome = run_batch([str(tmp_path / "in")], settings, pipeline=pipeline)
    assert outcome.exit_code == 1
    assert outcome.error.startswith("no space left on device while writing ")
    assert str(tmp_path / "out" / "b") in outcome.error and "rerun" in outcome.error
    assert [r.status for r in outcome.results] == ["done"]  # a.wav kept; b.wav failed; c.wav never started
    assert not (tmp_path / "out" / "c").exists()
    assert sorted(p.name for p in (tmp_path / "out" / "b").iterdir()) == []  # no temporaries, no stems
