"""The per-recording flow with a deterministic separator TEST DOUBLE (it implements the separator contract by
splitting the spectrum into bands), so the checks can be exact: which windows ran which sources, what was
written, what happens on bad input and on Ctrl-C. The same flows on the real tiny models are in test_cli.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from autosep.errors import AutosepError
from autosep.pipeline.inputs import collect_inputs
from autosep.pipeline.batch import run_batch
from autosep.pipeline.pipeline import Pipeline
from autosep.pipeline.settings import PipelineOptions
from autosep.taggers import Source


class BandSeparatorDouble:
    """Test double for ``ZeroSep``: a prompt containing "low" gets the band below 700 Hz, any other the rest."""

    sample_rate = 16000
    model_id = "band-separator-test-double"

    def __init__(self, interrupt_on_call: int | None = None):
        self.calls: list[list[str]] = []
        self.interrupt_on_call = interrupt_on_call

    def separate_detailed(self, wave, sources, inversion="ddpm", steps=50, guidance=1.0, inv_prompt="others",
                          seed=42, progress=None):
        self.calls.append(list(sources))
        if self.interrupt_on_call is not None and len(self.calls) == self.interrupt_on_call:
            raise KeyboardInterrupt
        spectrum = np.fft.rfft(wave)
        freqs = np.fft.rfftfreq(len(wave), 1 / self.sample_rate)
        stems = []
        for source in sources:
            band = (freqs < 700) if "low" in source else (freqs >= 700)
            stems.append(np.fft.irfft(spectrum * band, len(wave)))
        if progress:
            for step in range(steps):
                progress(step + 1, steps)
        others = [", ".join(s for s in sources if s != source) for source in sources]
        return SimpleNamespace(stems=np.asarray(stems, np.float32), inversion_prompts=others,
                               fp32_retry=[False] * len(sources), unet_evaluations=0)


def _write(path, seconds=3.0, rate=44100, channels=2, subtype="PCM_24", content="tones"):
    t = np.arange(int(seconds * rate)) / rate
    if content == "tones":
        mono = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)
    else:
        mono = np.zeros_like(t)
    data = np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return sf.read(path, dtype="float32", always_2d=True)[0]  # as stored (rounded to the file's bit depth)


def _exact_sum(stems: dict) -> np.ndarray:
    return sum(s.astype(np.float64) for s in stems.values())


def _pipeline(separator=None, tagger=None, **options) -> Pipeline:
    return Pipeline(PipelineOptions(**options).settings(), tagger=tagger, separator=separator or BandSeparatorDouble())


def _run(tmp_path, sources=("low hum", "high whistle"), separator=None, **options):
    """The batch over tmp_path/in: it decides what is done already; the pipeline processes the rest."""
    options.setdefault("out", str(tmp_path / "out"))
    pipeline = _pipeline(separator, sources=list(sources), steps=2, window=1.0, **options)
    return pipeline, run_batch([str(tmp_path / "in")], pipeline.settings, pipeline=pipeline).results


def test_projected_stems_follow_the_separator_and_sum_to_the_input(tmp_path):
    data = _write(tmp_path / "in" / "mix.wav")
    _, (result,) = _run(tmp_path)
    assert result.status == "done", result.message
    stems = dict(result.stems)
    assert sorted(p.name for p in result.output.iterdir()) == [
        "high_whistle.wav", "low_hum.wav", "manifest.json", "residual.wav"]
    for stem in stems.values():
        assert stem.shape == data.shape and sf.info(result.files["low hum"]).samplerate == 44100
    np.testing.assert_array_equal(_exact_sum(stems), data)  # 24-bit stems + residual == input, bit for bit
    low = stems["low hum"][:, 0]
    assert np.corrcoef(low[4410:-4410], 0.3 * np.sin(2 * np.pi * 300 * np.arange(len(low)) / 44100)[4410:-4410])[0, 1] > 0.99


def test_manifest_records_prompts_windows_and_settings(tmp_path):
    _write(tmp_path / "in" / "mix.wav", seconds=2.5)
    _, (result,) = _run(tmp_path, seed=7)
    manifest = json.loads((result.output / "manifest.json").read_text())
    assert manifest["input"]["sample_rate"] == 44100 and manifest["input"]["channels"] == 2
    assert manifest["settings"]["seed"] == 7 and manifest["settings"]["render"] == "projected"
    windows = manifest["windows"]
    assert len(windows) == 3  # 2.5 s in 1 s windows with 25% overlap: 0-1, 0.75-1.75, 1.5-2.5
    low = manifest["sources"][0]
    assert low["c_rev"] == "low hum" and [w["c_inv"] for w in low["c_inv"]] == ["high whistle"] * 3
    assert manifest["flags"]["silent_stems"] == [] and manifest["separator"]["model_id"].endswith("test-double")


def test_passes_reach_the_separator_and_the_manifest(tmp_path):
    _write(tmp_path / "in" / "mix.wav", seconds=2.5)
    class BindingDouble(BandSeparatorDouble):
        def bound_to(self, settings):  # as ZeroSep.bound_to: the run's separation settings, bound once
            self.settings = settings
            return self

    separator = BindingDouble()
    _, (result,) = _run(tmp_path, separator=separator, passes=3)
    assert result.status == "done", result.message
    assert separator.settings.passes == 3
    assert json.loads((result.output / "manifest.json").read_text())["settings"]["passes"] == 3
    for bad in (0, 1.5):
        with pytest.raises(AutosepError, match="passes"):
            PipelineOptions(passes=bad).settings()


def test_sources_only_run_in_windows_where_they_are_active(tmp_path):
    _write(tmp_path / "in" / "mix.wav", seconds=6.0)
    separator = BandSeparatorDouble()
    pipeline = _pipeline(separator, sources=["x"], window=1.0, overlap=0.0, margin=0.0, out=str(tmp_path / "out"))
    plan = [Source("low hum", "low hum", [(0.0, 2.0)]), Source("high whistle", "high whistle", [(4.2, 6.0)])]
    files, _ = collect_inputs([str(tmp_path / "in")])
    result = pipeline.process(files[0], plan=plan)
    assert separator.calls == [["low hum"], ["low hum"], ["high whistle"], ["high whistle"]]
    stems = dict(result.stems)
    assert not stems["low hum"][2 * 44100:].any() and not stems["high whistle"][:4 * 44100].any()
    assert result.manifest.windows[2].sources == []  # 2-3 s and 3-4 s: nothing active, all residual


def test_generative_render_is_16k_mono_trimmed(tmp_path):
    data = _write(tmp_path / "in" / "mix.wav", seconds=2.3, rate=22050, channels=2)
    _, (result,) = _run(tmp_path, render="generative")
    assert "residual" not in result.files
    for path in result.files.values():
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, round(len(data) * 16000 / 22050))


def test_silence_gives_no_sources_and_no_stems(tmp_path):
    _write(tmp_path / "in" / "quiet.wav", content="silence")
    _, (result,) = _run(tmp_path)
    assert result.status == "done" and result.files == {}
    assert [p.name for p in result.output.iterdir()] == ["manifest.json"]
    assert result.manifest.flags.no_sources and "silent" in " ".join(result.warnings)


def test_nan_samples_become_silence_and_are_flagged(tmp_path):
    data = _write(tmp_path / "in" / "nan.wav", subtype="FLOAT")
    data[1000:1010] = np.nan
    data[2000, 1] = np.inf
    sf.write(tmp_path / "in" / "nan.wav", data, 44100, subtype="FLOAT")
    _, (result,) = _run(tmp_path)
    assert result.status == "done"
    assert result.manifest.input.non_finite_samples == 21 and result.manifest.flags.non_finite_input
    stems = dict(result.stems)
    assert all(np.isfinite(s).all() for s in stems.values())
    np.testing.assert_allclose(sum(stems.values()), np.nan_to_num(data, nan=0, posinf=0), atol=1e-5)


def test_too_short_fails_with_a_clear_message(tmp_path):
    _write(tmp_path / "in" / "blip.wav", seconds=0.05)
    _, (result,) = _run(tmp_path)
    assert result.status == "failed" and "too short" in result.message and "blip.wav" in result.message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_resume_skips_and_overwrite_redoes(tmp_path):
    _write(tmp_path / "in" / "mix.wav", seconds=1.5)
    separator = BandSeparatorDouble()
    _run(tmp_path, separator=separator)
    calls = len(separator.calls)
    _, (again,) = _run(tmp_path, separator=separator)
    assert again.status == "skipped" and len(separator.calls) == calls
    assert [s.label for s in again.plan] == ["low hum", "high whistle"] and "residual" in again.files
    _, (redo,) = _run(tmp_path, separator=separator, overwrite=True, sources=("low hum",))
    assert redo.status == "done" and len(separator.calls) > calls
    # The stem of the source no longer asked for is removed with the old results.
    assert sorted(p.name for p in redo.output.iterdir()) == ["low_hum.wav", "manifest.json", "residual.wav"]


def test_ctrl_c_leaves_no_final_named_partial_files_and_rerun_resumes(tmp_path):
    _write(tmp_path / "in" / "a.wav", seconds=1.5)
    _write(tmp_path / "in" / "b.wav", seconds=3.0)
    pipeline = _pipeline(BandSeparatorDouble(interrupt_on_call=4), sources=["low hum"], window=1.0, steps=2,
                         out=str(tmp_path / "out"))
    files, _ = collect_inputs([str(tmp_path / "in")])
    assert pipeline.process(files[0]).status == "done"  # a.wav: 2 windows, calls 1-2
    with pytest.raises(KeyboardInterrupt):
        pipeline.process(files[1])  # b.wav: interrupted in its 2nd window
    assert (tmp_path / "out" / "a" / "manifest.json").exists()
    assert list((tmp_path / "out" / "b").iterdir()) == []  # no stems, no temporaries, no manifest
    _, results = _run(tmp_path, sources=("low hum",))
    assert [r.status for r in results] == ["skipped", "done"]


def test_batch_ignores_its_own_output_inside_the_input_folder(tmp_path):
    _write(tmp_path / "in" / "mix.wav", seconds=1.0)
    pipeline = _pipeline(sources=["low hum"], window=1.0, out=str(tmp_path / "in" / "stems"))
    first = run_batch([str(tmp_path / "in")], pipeline.settings, pipeline=pipeline)
    assert first.exit_code == 0 and [r.status for r in first.results] == ["done"]
    second = run_batch([str(tmp_path / "in")], pipeline.settings, pipeline=pipeline)
    assert [(r.input.name, r.status) for r in second.results] == [("mix.wav", "skipped")]
    # Output next to the input (-o the input's own folder) still processes the input.
    beside = _pipeline(sources=["low hum"], window=1.0, out=str(tmp_path / "in"))
    third = run_batch([str(tmp_path / "in" / "mix.wav")], beside.settings, pipeline=beside)
    assert third.exit_code == 0 and (tmp_path / "in" / "mix" / "manifest.json").exists()


def test_silent_windows_skip_the_separator(tmp_path):
    rate = 16000
    data = np.zeros((rate * 4, 1), np.float32)
    data[rate * 3 :, 0] = 0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "late.wav", data, rate, subtype="FLOAT")
    separator = BandSeparatorDouble()
    _, (result,) = _run(tmp_path, sources=("low hum",), separator=separator, overlap=0.0)
    assert len(separator.calls) == 1  # 4 one-second windows, only the last one holds sound
    assert [w.silent for w in result.manifest.windows] == [True, True, True, False]
    np.testing.assert_allclose(sum(result.stems.values()), data, atol=1e-6)


class BandTaggerDouble:
    """Test double for a tagger, built on the real windowed ``Tagger`` base: "Dog" scores energy below 700 Hz,
    "Speech" energy above it, per 10 s window with a 5 s hop."""

    def __new__(cls):
        from autosep.taggers.base import Tagger

        class _Double(Tagger):
            name, model_id, sample_rate, labels = "band-tagger-test-double", "double", 16000, ["Dog", "Speech"]

            def score_windows(self, windows):
                rows = []
                for w in windows:
                    spectrum = np.abs(np.fft.rfft(w)) ** 2
                    freqs = np.fft.rfftfreq(len(w), 1 / 16000)
                    low, high = spectrum[freqs < 700].sum(), spectrum[freqs >= 700].sum()
                    total = low + high + 1e-9
                    rows.append([float(low / total > 0.05), float(high / total > 0.05)])
                return np.asarray(rows, np.float32)

        return _Double()


def test_tagged_sources_are_separated_only_where_the_planner_found_them(tmp_path, monkeypatch):
    import autosep.pipeline.tagging as tagging_module

    monkeypatch.setattr(tagging_module, "TAG_BLOCK_S", 30.0)  # several tagging blocks in a 100 s file
    rate = 16000
    t = np.arange(100 * rate) / rate
    data = np.zeros(len(t), np.float32)
    data[: 20 * rate] += (0.3 * np.sin(2 * np.pi * 300 * t[: 20 * rate])).astype(np.float32)
    data[70 * rate :] += (0.3 * np.sin(2 * np.pi * 2500 * t[70 * rate :])).astype(np.float32)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "scene.wav", data, rate, subtype="FLOAT")
    separator = BandSeparatorDouble()
    options = dict(window=10.24, margin=0.0, out=str(tmp_path / "out"),
                   planner={"threshold": 0.5, "hierarchy": "none", "max_sources": 4})
    import autosep.taggers.planner as planner_module

    seen = {}
    real_plan = planner_module.plan_sources

    def spy(probs, labels, window_times, **kwargs):
        seen["times"] = list(window_times)
        return real_plan(probs, labels, window_times, **kwargs)

    monkeypatch.setattr(planner_module, "plan_sources", spy)
    pipeline = _pipeline(separator, tagger=BandTaggerDouble(), **options)
    (item,), _ = collect_inputs([str(tmp_path / "in")])
    result = pipeline.process(item)
    assert result.status == "done", result.message
    # Tag windows continue one 5 s grid across the 30 s tagging blocks: no gap, no repeat.
    assert seen["times"] == [(5.0 * i, 5.0 * i + 10.0) for i in range(19)]
    labels = {s.label: s for s in result.plan}
    assert set(labels) == {"Dog", "Speech"}
    # the manifest says why each source was planned and which classes it holds
    detections = {d.label: d for d in result.manifest.detections}
    assert detections["Dog"].why == "detected class"
    assert [c["label"] for c in detections["Dog"].classes] == ["Dog"]
    dog, speech = labels["Dog"].segments, labels["Speech"].segments
    assert dog[0][0] == 0.0 and 20.0 <= dog[-1][1] <= 30.0 and 60.0 <= speech[0][0] <= 70.0
    windows = result.manifest.windows
    assert any(w.silent for w in windows)  # 20-70 s is digital silence: no model run there
    for window in (w for w in windows if not w.silent):
        expect_dog = window.start_s < dog[-1][1]
        expect_speech = window.end_s > speech[0][0]
        assert ("Dog" in window.sources, "Speech" in window.sources) == (expect_dog, expect_speech)
    assert result.manifest.tagger.name == "band-tagger-test-double"
    assert result.manifest.detections[0].segments


@pytest.mark.parametrize("fmt,subtype", [("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_output_formats(tmp_path, fmt, subtype):
    data = _write(tmp_path / "in" / "mix.wav", seconds=1.5, subtype="PCM_16")
    _, (result,) = _run(tmp_path, format=fmt)
    assert result.status == "done", result.message
    assert sorted(p.name for p in result.output.iterdir()) == sorted(
        ["manifest.json", f"low_hum.{fmt}", f"high_whistle.{fmt}", f"residual.{fmt}"])
    for path in result.files.values():
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, subtype)
        assert abs(info.frames - len(data)) <= (0 if fmt == "flac" else 2048)  # lossy codecs pad a little


def test_mp3_cannot_hold_96k_and_nothing_is_written(tmp_path):
    _write(tmp_path / "in" / "hires.wav", seconds=0.5, rate=96000)
    _, (result,) = _run(tmp_path, format="mp3")
    assert result.status == "failed" and "96000 Hz" in result.message and "hires.wav" in result.message
    assert not (tmp_path / "out" / "hires").exists()


def test_compressed_input_decoded_by_pyav_keeps_its_rate_and_channels(tmp_path):
    av = pytest.importorskip("av")
    rate = 48000
    t = np.arange(rate * 2) / rate
    data = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 2500 * t)]).astype(np.float32)
    (tmp_path / "in").mkdir()
    with av.open(str(tmp_path / "in" / "clip.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            container.mux(packet)
    _, (result,) = _run(tmp_path)
    assert result.status == "done", result.message
    decoded = result.manifest.input.frames
    assert abs(decoded - data.shape[1]) < 4096 and result.manifest.input.sample_rate == rate
    for path in result.files.values():
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (rate, 2, decoded, "PCM_16")


def test_projected_integer_stems_that_clip_are_counted_and_flagged(tmp_path):
    # A mix that peaks just under full scale, holding a 300 Hz component of amplitude 1.05 that a 900 Hz one
    # partly cancels: the "low" stem goes past full scale and 16-bit output must clip it. The manifest must say
    # so (it used to count clipping only after the stems were already rounded and clipped, so it never did).
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    mix = 1.05 * np.sin(2 * np.pi * 300 * t) + 0.35 * np.sin(2 * np.pi * 900 * t)
    assert np.abs(mix).max() < 1.0
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "loud.wav", mix.astype(np.float32), rate, subtype="PCM_16")
    _, (result,) = _run(tmp_path)
    assert result.status == "done", result.message
    low = result.manifest.sources[0]
    assert low.name == "low hum" and low.clipped_samples > 0
    assert low.file in result.manifest.flags.clipped_output
    assert any("clipped" in w and "low_hum.wav" in w for w in result.warnings)
    data = sf.read(tmp_path / "in" / "loud.wav", dtype="float32", always_2d=True)[0]
    np.testing.assert_array_equal(_exact_sum(result.stems), data)  # still adds up bit for bit


def test_an_unexpected_error_in_one_recording_fails_it_and_the_batch_goes_on(tmp_path):
    # Models and decoders fail in more ways than RuntimeError/ValueError (IndexError, MemoryError on a huge
    # decode...): the recording is reported with its name, the next one is still processed (exit 3).
    class FailsAfterFirst(BandSeparatorDouble):
        def separate_detailed(self, wave, sources, **kwargs):
            if len(self.calls) >= 1:
                self.calls.append(list(sources))
                raise IndexError("index 3 is out of bounds")
            return super().separate_detailed(wave, sources, **kwargs)

    _write(tmp_path / "in" / "a.wav", seconds=1.0)
    _write(tmp_path / "in" / "b.wav", seconds=1.0)
    pipeline = _pipeline(FailsAfterFirst(), sources=["low hum"], window=1.0, out=str(tmp_path / "out"))
    outcome = run_batch([str(tmp_path / "in")], pipeline.settings, pipeline=pipeline)
    assert [r.status for r in outcome.results] == ["done", "failed"] and outcome.exit_code == 3
    assert "b.wav" in outcome.results[1].message and "IndexError" in outcome.results[1].message
    assert not (tmp_path / "out" / "b").exists()  # nothing left behind, not even an empty folder


def test_open_set_tags_from_several_blocks_are_matched_by_phrase(tmp_path, monkeypatch):
    # The audio-LM tagger names its own phrases, so each tagging block has its own columns. Blocks must be
    # joined by phrase: stacking them by position failed the recording (different column counts) or gave one
    # block's phrase another block's scores.
    import autosep.pipeline.tagging as tagging_module
    from autosep.taggers.base import Tagger, TagResult

    class OpenSetTaggerDouble(Tagger):
        name, model_id, sample_rate, window_seconds, hop_seconds = "open-set-double", "double", 16000, 2.0, 2.0

        def score_windows(self, windows):
            raise NotImplementedError

        def tag(self, wave, sample_rate):
            pieces, times = self.windows(wave, sample_rate)
            named = []
            for piece in pieces:
                spectrum = np.abs(np.fft.rfft(piece)) ** 2
                freqs = np.fft.rfftfreq(len(piece), 1 / self.sample_rate)
                low, high = spectrum[freqs < 700].sum(), spectrum[freqs >= 700].sum()
                named.append([p for p, e in (("low drum", low), ("high flute", high)) if e > 1.0])
            phrases = list(dict.fromkeys(p for names in named for p in names))
            probs = np.array([[float(p in names) for p in phrases] for names in named], np.float32)
            return TagResult(probs.reshape(len(pieces), len(phrases)), ["open:" + p for p in phrases], times)

    monkeypatch.setattr(tagging_module, "TAG_BLOCK_S", 6.0)
    rate = 16000
    t = np.arange(20 * rate) / rate
    data = np.zeros(len(t), np.float32)
    data[: 6 * rate] = 0.3 * np.sin(2 * np.pi * 300 * t[: 6 * rate])
    data[12 * rate :] = 0.3 * np.sin(2 * np.pi * 2500 * t[12 * rate :])
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "scene.wav", data, rate, subtype="FLOAT")
    pipeline = _pipeline(tagger=OpenSetTaggerDouble(), window=2.0, overlap=0.0, margin=0.0, out=str(tmp_path / "out"),
                         planner={"threshold": 0.5, "hierarchy": "none"})
    (item,), _ = collect_inputs([str(tmp_path / "in")])
    result = pipeline.process(item)
    assert result.status == "done", result.message
    segments = {s.prompt: s.segments for s in result.plan}
    assert segments == {"low drum": [(0.0, 6.0)], "high flute": [(12.0, 20.0)]}


def test_overwrite_replaces_results_that_belong_to_another_input(tmp_path):
    # The refusal tells the user to pass --overwrite to replace another input's results; with it, they are.
    _write(tmp_path / "in" / "take.wav", seconds=1.0)
    _write(tmp_path / "moved" / "take.wav", seconds=1.5)
    _run(tmp_path)
    out = tmp_path / "out"

    def process(folder, **options):
        pipeline = _pipeline(sources=["low hum"], window=1.0, out=str(out), **options)
        (result,) = run_batch([str(tmp_path / folder)], pipeline.settings, pipeline=pipeline).results
        return result

    refused = process("moved")
    assert refused.status == "failed" and "--overwrite" in refused.message
    replaced = process("moved", overwrite=True)
    assert replaced.status == "done", replaced.message
    assert replaced.manifest.input.path == str((tmp_path / "moved" / "take.wav").resolve())
    assert sorted(p.name for p in (out / "take").iterdir()) == ["low_hum.wav", "manifest.json", "residual.wav"]


def test_stems_written_into_the_input_folder_are_not_read_back_as_inputs(tmp_path):
    # autosep music/ -o music/ puts music/mix/<stems> beside music/mix.wav; a rerun (to resume) must skip mix.wav
    # and not separate its own stems (which then nested deeper on every rerun).
    _write(tmp_path / "in" / "mix.wav", seconds=1.0)
    pipeline = _pipeline(sources=["low hum"], window=1.0, out=str(tmp_path / "in"))
    run_batch([str(tmp_path / "in")], pipeline.settings, pipeline=pipeline)
    _write(tmp_path / "in" / "mix" / "take2.wav", seconds=1.0)  # a real recording that lands in that folder later
    outcome = run_batch([str(tmp_path / "in")], pipeline.settings, pipeline=pipeline)
    assert [(r.input.name, r.status) for r in outcome.results] == [("mix.wav", "skipped"), ("take2.wav", "done")]
    assert sorted(p.name for p in (tmp_path / "in" / "mix").iterdir()) == ["low_hum.wav", "manifest.json",
                                                                           "residual.wav", "take2", "take2.wav"]


# -- stems checked by the tagger (pipeline/check.py) ------------------------------------------------------------

class SilencingSeparatorDouble(BandSeparatorDouble):
    """The band separator, except that a prompt containing "mute" gets a silent stem (a failed separation)."""

    def separate_detailed(self, wave, sources, **kwargs):
        result = super().separate_detailed(wave, sources, **kwargs)
        for k, source in enumerate(sources):
            if "mute" in source:
                result.stems[k] = 0.0
        return result


def _scene(tmp_path, low=0.3, high=0.2, seconds=20.0, rate=16000, subtype="FLOAT"):
    t = np.arange(int(seconds * rate)) / rate
    data = (low * np.sin(2 * np.pi * 300 * t) + high * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)
    (tmp_path / "in").mkdir(exist_ok=True)
    sf.write(tmp_path / "in" / "scene.wav", data, rate, subtype=subtype)
    return sf.read(tmp_path / "in" / "scene.wav", dtype="float32", always_2d=True)[0]  # as stored


def _tagged_run(tmp_path, separator, prompts, **options):
    pipeline = _pipeline(separator, tagger=BandTaggerDouble(), window=10.24, margin=0.0, out=str(tmp_path / "out"),
                         planner={"threshold": 0.5, "hierarchy": "none", "max_sources": 4, "prompts": prompts},
                         **options)
    (item,), _ = collect_inputs([str(tmp_path / "in")])
    result = pipeline.process(item)
    assert result.status == "done", result.message
    return result


def test_each_stem_is_confirmed_by_the_tagger_and_a_silent_one_is_flagged(tmp_path):
    _scene(tmp_path)
    result = _tagged_run(tmp_path, SilencingSeparatorDouble(), {"dog": "low dog", "speech": "mute speech"})
    stems = {s.name: s for s in result.manifest.sources}
    assert stems["Dog"].check == {"score_in_stem": 1.0, "score_in_mixture": 1.0, "confirmed": True}
    assert "not_confirmed" not in stems["Dog"].to_dict()
    assert stems["Speech"].check == {"score_in_stem": 0.0, "score_in_mixture": 1.0, "confirmed": False}
    assert stems["Speech"].to_dict()["not_confirmed"] is True
    check = result.manifest.check
    assert check.confirmed == ["Dog"] and check.not_confirmed == ["Speech"] and check.dropped == []
    assert check.threshold == 0.5 and check.rounds == 1
    assert set(result.files) == {"Dog", "Speech", "residual"}  # flagged, still written without --drop-unconfirmed


def test_drop_unconfirmed_folds_the_stem_into_the_residual_and_the_sum_stays_exact(tmp_path):
    data = _scene(tmp_path, subtype="PCM_16")  # integer stems: the sum is checked bit for bit
    result = _tagged_run(tmp_path, SilencingSeparatorDouble(), {"dog": "low dog", "speech": "mute speech"},
                         drop_unconfirmed=True)
    assert result.manifest.check.dropped == ["Speech"]
    assert [s.name for s in result.manifest.sources] == ["Dog"]
    assert [d.label for d in result.manifest.detections] == ["Dog"]  # the plan a rerun skips with
    assert set(result.files) == {"Dog", "residual"} and not (tmp_path / "out" / "scene" / "speech.wav").exists()
    stems = dict(result.stems)
    np.testing.assert_array_equal(_exact_sum(stems), data.astype(np.float64))  # bit for bit
    assert float(np.abs(stems["residual"]).max()) > 0.15  # the high tone the silent stem missed is there
    assert sorted(p.name for p in (tmp_path / "out" / "scene").iterdir()) == ["dog.wav", "manifest.json",
                                                                               "residual.wav"]


def test_a_quiet_source_masked_in_the_mixture_is_discovered_in_the_residual(tmp_path):
    # the high tone holds 1% of the energy: the tagger misses it in the mixture, hears it once the low tone is out
    _scene(tmp_path, low=0.5, high=0.05)
    reported = _tagged_run(tmp_path, BandSeparatorDouble(), {"dog": "low dog"}, rounds=1)
    assert [s.label for s in reported.plan] == ["Dog"]
    assert [d.label for d in reported.manifest.check.discovered] == ["Speech"]
    assert set(reported.files) == {"Dog", "residual"}  # --rounds 1: reported only

    separator = BandSeparatorDouble()
    second = _tagged_run(tmp_path, separator, {"dog": "low dog"}, rounds=2, overwrite=True)
    assert [s.label for s in second.plan] == ["Dog", "Speech"]
    stems = {s.name: s for s in second.manifest.sources}
    assert stems["Speech"].round == 2 and stems["Dog"].round == 1
    assert stems["Speech"].confirmed and stems["Speech"].check["score_in_mixture"] == 0.0
    assert second.manifest.check.rounds == 2 and second.manifest.check.discovered == []
    assert ["low dog", "speech"] in separator.calls  # the second round separated both together
    files = dict(second.stems)
    assert float(np.abs(files["Speech"]).max()) == pytest.approx(0.05, abs=0.01)
    assert float(np.abs(files["residual"]).max()) < 0.01


def test_rounds_stop_at_max_sources(tmp_path):
    _scene(tmp_path, low=0.5, high=0.05)
    separator = BandSeparatorDouble()
    pipeline = _pipeline(separator, tagger=BandTaggerDouble(), window=10.24, margin=0.0, out=str(tmp_path / "out"),
                         rounds=2, planner={"threshold": 0.5, "hierarchy": "none", "max_sources": 1,
                                            "prompts": {"dog": "low dog"}})
    (item,), _ = collect_inputs([str(tmp_path / "in")])
    result = pipeline.process(item)
    assert [s.label for s in result.plan] == ["Dog"]
    assert result.manifest.check.rounds == 1
    assert [d.label for d in result.manifest.check.discovered] == ["Speech"]
    assert all(call == ["low dog"] for call in separator.calls)
