"""Time-span prompts (``-s "dog barking@12-18"``): parsing, the windows that separate a spanned source, its stem
silent outside the spans, and stems + residual still equal to the input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from autosep.errors import SettingsError
from autosep.pipeline.batch import run_batch
from autosep.pipeline.pipeline import Pipeline
from autosep.pipeline.settings import PipelineOptions
from autosep.pipeline.spans import SpanPrompt, given_span_prompts, span_gate
from test_pipeline_flow import BandSeparatorDouble, _write


@pytest.mark.parametrize("text, prompt, spans", [
    ("dog barking@12-18", "dog barking", ((12.0, 18.0),)),
    ("dog barking @ 0:12-0:18.5", "dog barking", ((12.0, 18.5),)),
    ("bell@1:02:03-1:02:04,5-", "bell", ((3723.0, 3724.0), (5.0, None))),
    ("mail to me@home", "mail to me@home", ()),  # not a span list: part of the prompt
    ("dog barking", "dog barking", ()),
])
def test_span_prompts_parse(text, prompt, spans):
    parsed = SpanPrompt.parse(text)
    assert (parsed.prompt, parsed.spans) == (prompt, spans)
    assert SpanPrompt.parse(parsed.text) == parsed


def test_a_span_that_ends_before_it_starts_is_a_usage_error():
    with pytest.raises(SettingsError, match="ends before it starts"):
        PipelineOptions(sources=["dog@18-12"]).settings()


def test_repeated_prompts_merge_their_spans_and_the_api_takes_pairs():
    given = given_span_prompts(["dog@1-2", ("dog", [(4, 5)]), "cat", "cat@1-2"])
    assert given == (SpanPrompt("dog", ((1.0, 2.0), (4.0, 5.0))), SpanPrompt("cat"))  # a bare "cat" is all of it
    settings = PipelineOptions(sources=["dog@1-2", "dog@4-5", "cat"]).settings()
    assert settings.sources == ("dog", "cat") and settings.spans == {"dog": ((1.0, 2.0), (4.0, 5.0))}
    assert settings.request()["spans"] == {"dog": "dog@1-2,4-5"}


def test_the_gate_is_zero_outside_and_one_inside_away_from_the_edges():
    rate = 1000
    gate = np.concatenate([span_gate([(1.0, 2.0)], start, 500, rate) for start in range(0, 3000, 500)])
    assert not gate[:1000].any() and not gate[2000:].any()
    assert np.all(gate[1010:1990] == 1.0) and 0 < gate[1000] < gate[1005] < 1


def _run(tmp_path, sources, **options):
    separator = BandSeparatorDouble()
    settings = PipelineOptions(sources=sources, steps=2, window=1.0, overlap=0.0, margin=0.0,
                               out=str(tmp_path / "out"), **options).settings()
    pipeline = Pipeline(settings, separator=separator)
    return separator, run_batch([str(tmp_path / "in")], settings, pipeline=pipeline).results[0]


def test_a_spanned_source_is_separated_only_in_its_span_and_silent_outside(tmp_path):
    data = _write(tmp_path / "in" / "mix.wav", seconds=6.0)
    separator, result = _run(tmp_path, ["low hum@2.5-4", "high whistle"])
    assert result.status == "done", result.message
    # 1 s windows: "low hum" only in 2-3 and 3-4; "high whistle" everywhere
    assert [call.count("low hum") for call in separator.calls] == [0, 0, 1, 1, 0, 0]
    stems = dict(result.stems)
    low = stems["low hum"]
    rate = 44100
    assert not low[:int(2.5 * rate)].any() and not low[4 * rate:].any()
    inside = low[int(2.6 * rate):int(3.9 * rate), 0]
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(len(data)) / rate)[int(2.6 * rate):int(3.9 * rate)]
    assert np.corrcoef(inside, tone)[0, 1] > 0.99
    total = sum(s.astype(np.float64) for s in stems.values())
    np.testing.assert_array_equal(total, data)  # 24-bit stems + residual == input, bit for bit
    # what the gate took out of the separated window 2-3 s stays in the residual
    residual = stems["residual"][2 * rate:int(2.4 * rate), 0]
    assert np.corrcoef(residual, 0.3 * np.sin(2 * np.pi * 300 * np.arange(2 * rate, int(2.4 * rate)) / rate))[0, 1] > 0.9
    manifest = json.loads((result.output / "manifest.json").read_text())
    assert manifest["settings"]["spans"] == {"low hum": "low hum@2.5-4"}


def test_spans_beyond_the_end_separate_nothing_and_a_changed_span_is_not_done(tmp_path):
    _write(tmp_path / "in" / "mix.wav", seconds=2.0)
    separator, result = _run(tmp_path, ["low hum@10-12", "high whistle"])
    assert all("low hum" not in call for call in separator.calls)
    assert not dict(result.stems)["low hum"].any()
    _, other = _run(tmp_path, ["low hum@0-1", "high whistle"])
    assert other.status == "failed" and "other settings (spans)" in other.message  # the spans are in the request
    _, again = _run(tmp_path, ["low hum@0-1", "high whistle"], overwrite=True)
    assert again.status == "done" and dict(again.stems)["low hum"][:44100 // 2].any()
    _, same = _run(tmp_path, ["low hum@0-1", "high whistle"])
    assert same.status == "skipped"
