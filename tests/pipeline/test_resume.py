"""Resume: a recording counts as done only when its manifest answers the same request (issue 14, item 1).

The separator is the band-splitting test double of test_pipeline_flow.py, so these run without models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from test_pipeline_flow import BandSeparatorDouble, _write

from autosep.pipeline.batch import run_batch
from autosep.pipeline.pipeline import Pipeline
from autosep.pipeline.settings import PipelineOptions


def _batch(tmp_path, inputs, separator=None, **options):
    options = {"sources": ["low hum"], "window": 1.0, "steps": 2, "out": str(tmp_path / "out"), **options}
    pipeline = Pipeline(PipelineOptions(**options).settings(), separator=separator or BandSeparatorDouble())
    return run_batch([str(p) for p in inputs], pipeline.settings, pipeline=pipeline)


@pytest.mark.parametrize("change, named", [
    (dict(sources=["high whistle"]), "sources"),
    (dict(render="generative"), "render"),
    (dict(steps=3), "steps"),
    (dict(seed=7), "seed"),
    (dict(guidance=2.0), "guidance"),
    (dict(inv_prompt="null"), "inv-prompt"),
    (dict(inversion="ddim"), "inversion"),
    (dict(window=1.5), "window"),
    (dict(overlap=0.5), "overlap"),
    (dict(format="flac"), "format"),
    (dict(bit_depth="16"), "bit depth"),
    (dict(model="another-model"), "model"),
])
def test_a_manifest_from_other_settings_is_not_done(tmp_path, change, named):
    _write(tmp_path / "in" / "mix.wav", seconds=1.5)  # PCM_24
    separator = BandSeparatorDouble()
    first = _batch(tmp_path, [tmp_path / "in"], separator)
    assert first.exit_code == 0 and [r.status for r in first.results] == ["done"]
    calls = len(separator.calls)

    again = _batch(tmp_path, [tmp_path / "in"], separator, **change)
    (result,) = again.results
    assert result.status == "failed" and len(separator.calls) == calls  # neither redone nor reported done
    assert result.message == (f"{tmp_path / 'in' / 'mix.wav'}: done with other settings ({named}); "
                              "pass --overwrite to redo it")
    redo = _batch(tmp_path, [tmp_path / "in"], separator, overwrite=True, **change)
    assert [r.status for r in redo.results] == ["done"] and len(separator.calls) > calls


def test_the_same_request_resumes_and_an_input_changed_since_is_separated_again(tmp_path):
    _write(tmp_path / "in" / "a.wav", seconds=1.0)
    _write(tmp_path / "in" / "b.wav", seconds=1.0)
    assert _batch(tmp_path, [tmp_path / "in"]).exit_code == 0
    same = _batch(tmp_path, [tmp_path / "in"])
    assert [r.status for r in same.results] == ["skipped", "skipped"] and same.exit_code == 0
    # The input itself changed after it was separated: its old stems are not its results any more (issue 24).
    _write(tmp_path / "in" / "b.wav", seconds=1.2)
    changed = _batch(tmp_path, [tmp_path / "in"])
    assert [r.status for r in changed.results] == ["skipped", "done"] and changed.exit_code == 0
    assert changed.results[1].manifest.input.frames == int(1.2 * 44100)


def test_an_unchanged_copy_with_a_new_modification_time_is_still_done(tmp_path):
    data = _write(tmp_path / "in" / "mix.wav", seconds=1.0)
    assert _batch(tmp_path, [tmp_path / "in"]).exit_code == 0
    sf.write(tmp_path / "in" / "mix.wav", data, 44100, subtype="PCM_24")  # same samples, written again
    assert [r.status for r in _batch(tmp_path, [tmp_path / "in"]).results] == ["skipped"]


def test_tagging_settings_are_part_of_the_request(tmp_path):
    from test_pipeline_flow import BandTaggerDouble

    rate = 16000
    t = np.arange(12 * rate) / rate
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "scene.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate)
    options = dict(sources=None, window=10.24, out=str(tmp_path / "out"), planner={"threshold": 0.5})

    def batch(**planner):
        settings = PipelineOptions(**{**options, "planner": {**options["planner"], **planner}}).settings()
        pipeline = Pipeline(settings, tagger=BandTaggerDouble(), separator=BandSeparatorDouble())
        return run_batch([str(tmp_path / "in")], settings, pipeline=pipeline).results[0]

    assert batch().status == "done"
    assert batch().status == "skipped"
    stale = batch(max_sources=1)
    assert stale.status == "failed" and "done with other settings (planner)" in stale.message


def test_a_manifest_written_before_the_request_was_recorded_still_resumes(tmp_path):
    # autosep 0.1.0 manifests (manifest_version 1) have no fingerprint, no recorded sources, no window_given.
    _write(tmp_path / "in" / "mix.wav", seconds=1.0)
    assert _batch(tmp_path, [tmp_path / "in"]).exit_code == 0
    path = tmp_path / "out" / "mix" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["input"]["fingerprint"]
    for key in ("sources", "window_given", "tagger_model", "bit_depth"):
        del manifest["settings"][key]
    path.write_text(json.dumps(manifest))
    assert [r.status for r in _batch(tmp_path, [tmp_path / "in"]).results] == ["skipped"]
    stale = _batch(tmp_path, [tmp_path / "in"], sources=["high whistle"]).results[0]
    assert "done with other settings (sources)" in stale.message
