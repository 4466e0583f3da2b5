"""``autosep tag`` end to end on a tiny PANNs checkpoint, and input expansion."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main as cli_main
from autosep.pipeline.inputs import collect_inputs
from autosep.commands.options import add_tagging_arguments, planning_settings
from autosep.commands.tag import main
from autosep.taggers import PlanningSettings


@pytest.fixture
def recordings(tmp_path) -> Path:
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(folder / "a.wav", (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32), 16000)
    sf.write(folder / "sub" / "b.flac", (0.1 * rng.standard_normal((2 * 22050, 2))).astype(np.float32), 22050)
    (folder / "notes.txt").write_text("not audio")
    (folder / ".hidden.wav").write_bytes(b"")
    return folder


def test_tag_inputs(recordings, tmp_path, monkeypatch):
    """The inputs ``autosep tag`` takes: folders and globs give media files, a named file is kept whatever its
    extension, repeats are dropped, and what yields nothing is named."""
    a, b = recordings / "a.wav", recordings / "sub" / "b.flac"

    def paths(*given):
        found, missing = collect_inputs([str(g) for g in given])
        return [item.path for item in found], [absent.given for absent in missing]

    assert paths(recordings) == ([a, b], [])
    assert paths(recordings / "**" / "*.flac", a, a) == ([b, a], [])
    assert paths(recordings / "notes.txt") == ([recordings / "notes.txt"], [])  # named file: the decoder decides
    assert paths(tmp_path / "missing.wav", tmp_path / "*.nothing") == (
        [], [str(tmp_path / "missing.wav"), str(tmp_path / "*.nothing")])
    monkeypatch.chdir(recordings)
    assert paths("*.wav") == ([Path("a.wav")], [])


def test_tag_prints_a_table_per_file(recordings, tiny_cnn14_checkpoint, capsys, monkeypatch):
    """Each file's table is its plan: one row per planned source with the score, active time, prompt and
    segments that --json reports for the same run, then its top classes."""
    monkeypatch.setenv("COLUMNS", "240")  # one line per row: long labels ("Accelerating, revving, vroom") not wrapped
    args = [str(recordings), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu",
            "--threshold", "0", "--max-sources", "2", "--all", "--top", "3"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0
    tables = {}
    for line in out.splitlines():
        if line.endswith(")") and "(" in line and not line.startswith(("│", " ")):
            current = tables.setdefault(line.split("  (")[0], [])
        elif line.startswith("│") and line.split("│")[1].strip().isdigit():
            current.append([cell.strip() for cell in line.strip("│").split("│")])
    assert sorted(tables) == sorted(entry["file"] for entry in report["files"]) and len(tables) == 2
    for entry in report["files"]:
        rows = tables[entry["file"]]
        assert [row[1] for row in rows] == [s["label"] for s in entry["sources"]] and len(rows) == 2
        for row, source in zip(rows, entry["sources"]):
            assert float(row[2]) == pytest.approx(source["score"], abs=0.005)
            assert float(row[3].removesuffix(" s")) == pytest.approx(source["active_seconds"], abs=0.05)
            assert row[4] == source["prompt"]
    assert out.count("top classes") == 2


def test_tag_json_output(recordings, tiny_cnn14_checkpoint, capsys):
    code = main([str(recordings / "a.wav"), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu",
                 "--json", "--threshold", "0", "--max-sources", "3", "--all", "--top", "5",
                 "--exclude", "Speech"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    (entry,) = report["files"]
    assert report["errors"] == []
    assert entry["file"].endswith("a.wav") and entry["tagger"] == "panns" and entry["threshold"] == 0
    assert entry["duration"] == pytest.approx(3.0) and entry["windows"] == 2  # 2 s windows every 1 s
    assert len(entry["sources"]) == 3
    assert {"label", "mid", "score", "prompt", "active_seconds", "segments"} <= set(entry["sources"][0])
    assert all(s["label"] != "Speech" for s in entry["sources"])
    assert len(entry["top_classes"]) == 5
    scores = [s["score"] for s in entry["sources"]]
    assert scores == sorted(scores, reverse=True)


def test_bad_inputs_are_named_and_the_batch_goes_on(recordings, tiny_cnn14_checkpoint, capsys, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....garbage")
    # The undecodable file comes first: the good one after it is still tagged.
    code = main([str(broken), str(recordings / "a.wav"), str(tmp_path / "missing.mp3"), "--json",
                 "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 3
    report = json.loads(captured.out)
    assert [Path(f["file"]).name for f in report["files"]] == ["a.wav"]
    assert {Path(e["file"]).name for e in report["errors"]} == {"broken.wav", "missing.mp3"}
    assert "broken.wav" in captured.err and "missing.mp3" in captured.err
    assert "Traceback" not in captured.err


def test_nothing_could_run(tmp_path, capsys, tiny_cnn14_checkpoint):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1
    assert "no audio or video files" in capsys.readouterr().err
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"garbage")
    assert main([str(broken), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu"]) == 1
    assert main([str(broken), "--tagger", "ast", "--tagger-model", "nobody/none"]) == 1
    err = capsys.readouterr().err
    assert "nobody/none" in err and "autosep models download ast" in err


def test_no_existing_input_exits_1_without_loading_the_tagger(tmp_path, capsys, monkeypatch):
    from autosep.commands import tag as command

    monkeypatch.setattr(command, "load_tagger_for", lambda *a, **k: pytest.fail("the tagger was loaded"))
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main([str(tmp_path / "missing.wav"), str(empty), str(tmp_path / "*.flac")])
    err = capsys.readouterr().err
    assert code == 1
    assert "missing.wav" in err and "empty" in err and "*.flac" in err


def test_missing_inputs_are_named_before_the_tagger_loads_once(recordings, tiny_cnn14_checkpoint, tmp_path,
                                                               capsys, monkeypatch):
    from autosep.commands import tag as command

    real_load = command.load_tagger_for
    stderr_when_loading = []

    def spy(*args, **kwargs):
        stderr_when_loading.append(capsys.readouterr().err)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(command, "load_tagger_for", spy)
    code = main([str(tmp_path / "missing.wav"), str(recordings / "a.wav"), str(recordings / "sub"), "--json",
                 "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu"])
    report = json.loads(capsys.readouterr().out)
    assert code == 3
    assert len(stderr_when_loading) == 1 and "missing.wav" in stderr_when_loading[0]
    assert [Path(f["file"]).name for f in report["files"]] == ["a.wav", "b.flac"]
    assert [Path(e["file"]).name for e in report["errors"]] == ["missing.wav"]


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main([]) == 2
    assert main(["x.wav", "--tagger", "yamnet"]) == 2
    assert main(["x.wav", "--hierarchy", "deepest"]) == 2
    assert main(["x.wav", "--max-sources", "-1"]) == 2
    assert main(["x.wav", "--vocab", "words.txt"]) == 2  # --vocab without --tagger clap
    assert main(["x.wav", "--prompts", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_cli_dispatches_tag(recordings, tiny_cnn14_checkpoint, capsys):
    assert cli_main(["tag", str(recordings / "a.wav"), "--tagger-model", str(tiny_cnn14_checkpoint),
                     "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["tagger"] == "panns"


def test_planner_options_for_the_main_command(tmp_path):
    parser = argparse.ArgumentParser()
    add_tagging_arguments(parser)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Bark = yapping\n")
    args = parser.parse_args(["--include", "Cello", "--include", "Male speech, man speaking", "--exclude", "Dog",
                              "--hierarchy", "level:2", "--min-active", "2.5", "--prompts", str(prompts)])

    settings = planning_settings(args)
    # the threshold stays unset: the planner derives it from the tagger's result, in one place for every command
    assert settings == PlanningSettings(threshold=None, max_sources=4, min_active=2.5, hierarchy="level:2",
                                        include=("Cello", "Male speech, man speaking"), exclude=("Dog",),
                                        prompts={"bark": "yapping"})
    assert planning_settings(parser.parse_args(["--threshold", "0.1"])).threshold == 0.1


def test_a_recording_shorter_than_the_tagger_window_is_tagged(tmp_path, tiny_cnn14_checkpoint, capsys):
    short = tmp_path / "short.wav"
    sf.write(short, 0.1 * np.random.default_rng(0).standard_normal(2205).astype(np.float32), 44100)  # 50 ms
    code = main([str(short), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu", "--json",
                 "--threshold", "0", "--hierarchy", "none"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (entry,) = json.loads(captured.out)["files"]
    assert entry["windows"] == 1 and entry["duration"] == pytest.approx(0.05)
    assert entry["sources"] and all(0 <= a < b <= 0.05 for s in entry["sources"] for a, b in s["segments"])


def test_names_with_brackets_are_printed_verbatim(tmp_path, tiny_cnn14_checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short relative names: a long temporary path would wrap in the table title
    odd = Path("[bold]take [2].wav")
    odd.write_bytes(b"garbage")
    good = Path("[red]mix.wav")
    sf.write(good, np.zeros(16000, dtype=np.float32), 16000)
    assert main([str(odd), str(good), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu"]) == 3
    captured = capsys.readouterr()
    assert "[bold]take [2].wav" in captured.err
    assert "[red]mix.wav" in captured.out


def test_tag_and_dry_run_plan_a_file_through_the_same_streamed_blocks(tmp_path, tiny_cnn14_checkpoint, capsys,
                                                                      monkeypatch):
    import autosep.pipeline.tagging as tagging
    from autosep.pipeline.pipeline import Pipeline
    from autosep.pipeline.settings import PipelineOptions
    from autosep.taggers import load_tagger

    monkeypatch.setattr(tagging, "TAG_BLOCK_S", 10.0)  # a 32 s file in several blocks
    rate = 16000
    t = np.arange(32 * rate) / rate
    wave = (0.2 * np.sin(2 * np.pi * 440 * t) * (t < 12) + 0.05 * np.random.default_rng(1).standard_normal(len(t)))
    path = tmp_path / "long.wav"
    sf.write(path, wave.astype(np.float32), rate)
    blocks = []
    real_tag = tagging.tag_recording

    def spy(reader, tagger):
        tagged = real_tag(reader, tagger)
        blocks.append(tagged.result.window_times if tagged.result is not None else None)
        return tagged

    monkeypatch.setattr(tagging, "tag_recording", spy)
    argv = ["--threshold", "0.3", "--max-sources", "3", "--hierarchy", "leaf"]
    assert main([str(path), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu", "--json",
                 *argv]) == 0
    tagged = json.loads(capsys.readouterr().out)["files"][0]
    # one grid of 2 s windows every 1 s over the whole file, whatever the block size
    assert blocks[0] == [(1.0 * i, 1.0 * i + 2.0) for i in range(31)]

    parser = argparse.ArgumentParser()
    add_tagging_arguments(parser)
    options = PipelineOptions(dry_run=True, out=str(tmp_path / "out"), planner=planning_settings(parser.parse_args(argv)))
    pipeline = Pipeline(options.settings(), tagger=load_tagger("panns", tiny_cnn14_checkpoint, "cpu"), separator=None)
    (item,), _ = collect_inputs([str(path)])
    result = pipeline.process(item)
    assert result.status == "planned", result.message
    assert len(blocks) == 2 and blocks[1] == blocks[0]  # the dry run took the same path
    assert [s.to_dict() for s in result.plan] == tagged["sources"]


def test_tag_all_says_why_each_source_is_planned(recordings, tiny_cnn14_checkpoint, capsys):
    args = [str(recordings / "a.wav"), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu",
            "--threshold", "0.2", "--max-sources", "3"]
    assert main([*args, "--json"]) == 0
    sources = json.loads(capsys.readouterr().out)["files"][0]["sources"]
    assert sources and all(s["why"] and s["classes"] for s in sources)
    assert all(s["classes"][0]["score"] == s["score"] for s in sources)  # the strongest class it holds
    assert main([*args, "--all"]) == 0
    out = capsys.readouterr().out
    for i, source in enumerate(sources, start=1):
        assert f"{i}. {source['label']}: {source['why']}" in out
    assert main(args) == 0
    assert sources[0]["why"] not in capsys.readouterr().out  # only with --all


def test_tag_streams_long_files_in_blocks_like_the_main_run(tmp_path, tiny_cnn14_checkpoint, capsys, monkeypatch):
    # Issue 14, item 7: autosep tag read the whole file into memory (877 MB for 10 minutes); it now tags in the
    # main run's blocks (60 s plus the tagger's window overlap), with the same window grid.
    from autosep.taggers.base import Tagger

    seen: list[float] = []
    real_tag = Tagger.tag

    def spy(self, wave, sample_rate):
        seen.append(len(wave) / sample_rate)
        return real_tag(self, wave, sample_rate)

    monkeypatch.setattr(Tagger, "tag", spy)
    rate = 8000
    long = tmp_path / "long.wav"
    sf.write(long, 0.1 * np.random.default_rng(0).standard_normal(75 * rate).astype(np.float32), rate)
    code = main([str(long), "--tagger-model", str(tiny_cnn14_checkpoint), "--device", "cpu", "--json",
                 "--threshold", "0"])
    assert code == 0
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    assert len(seen) == 2 and max(seen) <= 60 + 10  # two blocks, never the whole 75 s at once
    assert entry["duration"] == pytest.approx(75.0) and entry["windows"] == 74  # 2 s windows every 1 s
