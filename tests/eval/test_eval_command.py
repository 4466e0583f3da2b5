"""``autosep eval`` end to end, in-process: hand-made stems folders scored against references (numbers checked
against direct computations), pairing modes, eval.json, and ``--run`` separating a tiny dataset with the tiny
AudioLDM2 and scoring it with the tiny CLAP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main
from autosep.eval.metrics import resample, si_sdr

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 16000


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _band_limited(noise: np.ndarray) -> np.ndarray:
    """Below 6 kHz: a 16 -> 48 -> 16 kHz round trip (soxr's roll-off is near 8 kHz) keeps all of it."""
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(len(noise), 1 / RATE) > 6000] = 0
    return np.fft.irfft(spectrum, len(noise))


def _sources(seed: int, seconds: float = 1.5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return {"cello": 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 2 * t)),
            "dog": 0.2 * _band_limited(rng.standard_normal(len(t))) * (0.2 + np.sin(2 * np.pi * 3 * t) ** 2)}


def _write(path: Path, data: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), rate, subtype="FLOAT")


def make_dataset(root: Path, recordings=("r1", "r2")) -> dict[str, dict[str, np.ndarray]]:
    truth = {}
    for k, name in enumerate(recordings):
        sources = _sources(k)
        for source, wave in sources.items():
            _write(root / name / f"{source}.wav", wave)
        _write(root / name / "mixture.wav", sum(sources.values()))
        truth[name] = sources
    return truth


@pytest.fixture
def dataset(tmp_path):
    truth = make_dataset(tmp_path / "refs")
    rng = np.random.default_rng(9)
    estimates = {}
    for name, sources in truth.items():
        for source, wave in sources.items():
            estimate = wave + 0.02 * _band_limited(rng.standard_normal(len(wave)))
            # The estimates are stored at 48 kHz: the metrics must bring them to each model's rate themselves.
            _write(tmp_path / "est" / name / f"{source}.wav", resample(estimate, RATE, 48000), 48000)
            estimates[(name, source)] = estimate
    return tmp_path, truth, estimates


def test_stems_folders_are_scored_by_name_and_the_report_is_written(dataset, capsys, tiny_clap_dir):
    root, truth, estimates = dataset
    code, out, err = run(capsys, "eval", root / "est", root / "refs", "--clap-model", tiny_clap_dir,
                         "--device", "cpu", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report == json.loads((root / "est" / "eval.json").read_text())
    assert report["models"]["clap"]["model_id"] == str(Path(tiny_clap_dir).resolve())
    assert report["rates"] == {"sdr": [16000], "clap": 48000, "panns": None}  # SDR at the references' own rate
    assert "512-tap" in report["variants"]["sdr"] and report["skipped"] is None
    assert {"torch", "transformers", "fast_bss_eval", "numpy"} <= set(report["versions"])
    assert report["settings"]["match"] == "auto" and report["settings"]["clap_model"] == str(tiny_clap_dir)
    records = {r["name"]: r for r in report["recordings"]}
    assert set(records) == {"r1", "r2"}
    for name, record in records.items():
        assert record["match"] == "name" and len(record["pairs"]) == 2
        for pair in record["pairs"]:
            assert pair["estimate"] == pair["reference"]
            expected = si_sdr(estimates[(name, pair["reference"])], truth[name][pair["reference"]])
            assert pair["si_sdr"] == pytest.approx(expected, abs=0.05)  # 48 kHz file -> 16 kHz, explicitly
            mixture = sum(truth[name].values())
            assert pair["si_sdri"] == pytest.approx(expected - si_sdr(mixture, truth[name][pair["reference"]]), abs=0.05)
            assert pair["clap_a"] > 0.99 and pair["lpaps"] >= 0 and -1 <= pair["clap_t"] <= 1
        assert record["discovery"]["f1"] == 1.0 and record["discovery"]["count_correct"]
    # CLAP-T against a direct computation: the stored 48 kHz estimate and the label's text, through the same model.
    from autosep.eval.clap import ClapScorer

    scorer = ClapScorer(tiny_clap_dir, device="cpu")
    pair = records["r1"]["pairs"][0]
    assert pair["text"] == pair["reference"]  # the file name is the label
    stored, rate = sf.read(root / "est" / "r1" / f"{pair['estimate']}.wav")
    direct = float(scorer.embed_audio([scorer.prepare(stored, rate)])[0] @ scorer.embed_text([pair["text"]])[0])
    assert pair["clap_t"] == pytest.approx(direct, abs=1e-3)
    overall = report["overall"]
    assert overall["pairs"] == 4 and overall["si_sdr_n"] == 4
    assert list(overall["fad"]) == ["clap"]  # the default, as the paper's scripts
    assert overall["fad"]["clap"]["estimates"] == overall["fad"]["clap"]["references"] == 4
    assert overall["fad"]["clap"]["reliable"] is False
    assert any("FAD computed on 4 estimates" in w for w in report["warnings"])


def test_tables_best_matching_and_missing_recordings(dataset, capsys, tmp_path):
    root, truth, _ = dataset
    # Names that say nothing: only the audio can pair them.
    for name in truth:
        (root / "est" / name / "cello.wav").rename(root / "est" / name / "stem_a.wav")
        (root / "est" / name / "dog.wav").rename(root / "est" / name / "stem_b.wav")
    make_dataset(root / "refs", recordings=("r3",))  # a reference recording with no estimates
    code, out, err = run(capsys, "eval", root / "est", root / "refs", "--match", "best", "--match-metric", "si-sdr",
                         "--no-clap", "--output", tmp_path / "report.json")
    assert code == 3, err  # r3 could not be scored
    assert "r3: no estimates found" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["missing_estimates"] == ["r3"]
    pairs = {(p["estimate"], p["reference"]) for r in report["recordings"] for p in r["pairs"]}
    assert pairs == {("stem_a", "cello"), ("stem_b", "dog")}
    assert report["overall"]["clap_a"] is None and report["models"]["clap"] is None
    assert report["overall"]["fad"] == {}
    assert "SI-SDR" in out and "CLAP-A" not in out and "discovery" in out and "r1" in out
    # By name nothing pairs, and discovery sees two unknown phrases for a cello and a dog.
    code, out, err = run(capsys, "eval", root / "est", root / "refs", "--match", "name", "--no-clap", "--json")
    report = json.loads(out)
    record = report["recordings"][0]
    assert record["pairs"] == [] and record["unmatched_references"] == ["cello", "dog"]
    assert record["discovery"]["tp"] == 0 and record["discovery"]["count_correct"]


def test_usage_errors_name_the_problem(tmp_path, capsys):
    code, _, err = run(capsys, "eval", tmp_path / "nope", tmp_path / "also-nope", "--no-clap")
    assert code == 2 and "not a folder" in err
    (tmp_path / "refs").mkdir()
    code, _, err = run(capsys, "eval", tmp_path, tmp_path / "refs", "--no-clap")
    assert code == 2 and "no reference stems found" in err
    code, _, err = run(capsys, "eval", tmp_path, tmp_path, "--match", "best", "--no-clap")
    assert code == 2 and "--match-metric si-sdr" in err
    code, _, err = run(capsys, "eval", "--run", tmp_path / "refs", "--steps", "0")
    assert code == 2
    make_dataset(tmp_path / "data", recordings=("r1",))
    code, _, err = run(capsys, "eval", "--run", tmp_path / "data", "--dry-run", "--no-clap")
    assert code == 2 and "nothing to score" in err
    code, _, err = run(capsys, "eval", "--run", tmp_path / "data", "--oracle-sources", "-s", "cello", "--no-clap")
    assert code == 2 and "drop -s/--source" in err
    code, _, err = run(capsys, "eval", tmp_path / "missing-estimates", tmp_path / "data", "--no-clap")
    assert code == 2 and "missing-estimates: not a folder" in err
    code, _, err = run(capsys, "eval", "--run", tmp_path / "data", "-o", tmp_path / "o", "--oracle-sources",
                       "--model", tmp_path / "no-such-model", "--no-clap")
    assert code == 2 and "no such folder" in err and "no-such-model" in err  # refused before any model loads


def test_without_clap_the_waveform_metrics_are_scored_and_the_skipped_ones_named(dataset, capsys, tmp_path):
    root, truth, estimates = dataset
    code, out, err = run(capsys, "eval", root / "est", root / "refs", "--json")  # CLAP not in the (empty) cache
    assert code == 0, err
    report = json.loads(out)
    assert report["models"]["clap"] is None and report["overall"]["clap_a"] is None
    assert report["overall"]["si_sdr_n"] == report["overall"]["sdr_n"] == 4
    pair = report["recordings"][0]["pairs"][0]
    expected = si_sdr(estimates[(report["recordings"][0]["name"], pair["reference"])],
                      truth[report["recordings"][0]["name"]][pair["reference"]])
    assert pair["si_sdr"] == pytest.approx(expected, abs=0.05)
    assert report["recordings"][0]["discovery"]["f1"] == 1.0
    assert report["skipped"]["metrics"] == ["CLAP-A", "CLAP-T", "FAD (CLAP)", "LPAPS"]
    notes = [line for line in err.splitlines() if "skipped" in line]
    assert len(notes) == 1 and "LPAPS" in notes[0] and "autosep models download clap" in notes[0]
    assert "--no-clap" in notes[0] and "--require-clap" in notes[0]
    # --no-clap: the same numbers without the note.
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap", "--output", tmp_path / "n.json")
    assert code == 0 and "skipped" not in err


def test_a_required_or_named_clap_model_that_is_missing_says_how_to_get_it(dataset, capsys, tmp_path):
    root, _, _ = dataset
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--require-clap")
    assert code == 1 and "laion/clap-htsat-unfused" in err and "autosep models download clap" in err
    assert "offline" in err and "--clap-model" in err
    (tmp_path / "not-a-model").mkdir()
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--clap-model", tmp_path / "not-a-model")
    assert code == 1 and "is not a model folder" in err
    assert not (root / "est" / "eval.json").exists()  # nothing written when nothing was scored
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap", "--require-clap")
    assert code == 2 and "not allowed with" in err


def test_a_missing_eval_extra_is_named(dataset, capsys, monkeypatch):
    import sys

    root, _, _ = dataset
    monkeypatch.setitem(sys.modules, "fast_bss_eval", None)  # as if the extra were not installed
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap")
    assert code == 1 and "pip install 'autosep[eval]'" in err


def test_run_separates_a_dataset_and_scores_it(tmp_path, capsys, tiny_audioldm2_dir, tiny_clap_dir):
    truth = make_dataset(tmp_path / "data")
    (tmp_path / "data" / "r1" / "labels.json").write_text(json.dumps({"dog.wav": "/m/05tny_"}))  # Bark, by mid
    out = tmp_path / "runs"
    args = ["eval", "--run", tmp_path / "data", "-o", out, "--model", tiny_audioldm2_dir, "--steps", "1",
            "--window", "2.56", "--device", "cpu", "--render", "generative", "--clap-model", tiny_clap_dir, "-q"]
    code, stdout, err = run(capsys, *args, "--oracle-sources")
    assert code == 0, err
    prompts = {}
    for name in truth:  # autosep's own output for <recording>/mixture.wav, one output root per recording
        manifest = json.loads((out / name / "mixture" / "manifest.json").read_text())
        assert manifest["settings"]["render"] == "generative"
        prompts[name] = sorted(source["c_rev"] for source in manifest["sources"])
    assert prompts == {"r1": ["Bark", "cello"], "r2": ["cello", "dog"]}  # each recording's own true labels, as names
    report = json.loads((out / "eval.json").read_text())
    assert report["separation"]["oracle_sources"] is True and report["separation"]["steps"] == 1
    records = {r["name"]: r for r in report["recordings"]}
    assert set(records) == {"r1", "r2"}
    r1 = records["r1"]
    assert r1["match"] == "labels"  # autosep output: paired through the ontology
    assert {(p["estimate"], p["reference"], p["label"]) for p in r1["pairs"]} == {
        ("cello", "cello", "Cello"), ("Bark", "dog", "Bark")}
    assert r1["discovery"]["f1"] == 1.0 and r1["discovery"]["count_correct"]
    for pair in r1["pairs"]:
        assert pair["si_sdr"] is not None and pair["clap_a"] is not None and pair["lpaps"] is not None
    assert report["overall"]["pairs"] == 4 and report["overall"]["fad"]["clap"]["estimates"] == 4
    assert "overall" in stdout
    # A rerun resumes: everything is separated already (the same request), so no model is loaded and scoring runs.
    from autosep.pipeline.pipeline import Pipeline

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(Pipeline, "load", classmethod(lambda *a, **k: pytest.fail("a model was loaded")))
        code, _, err = run(capsys, *args, "--oracle-sources")
    assert code == 0, err


def test_labels_files_are_checked_against_the_folders(dataset, capsys, tmp_path):
    root, _, _ = dataset
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"r1": {"cello.wav": "Violin, fiddle"}, "r2": {"dog": "Bark"}}))
    code, out, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap", "--labels", labels, "--json")
    assert code == 0, err
    report = json.loads(out)
    labels_seen = {(r["name"], p["reference"]): p["label"] for r in report["recordings"] for p in r["pairs"]}
    assert labels_seen[("r1", "cello")] == "Violin, fiddle" and labels_seen[("r2", "dog")] == "Bark"
    assert labels_seen[("r1", "dog")] == "Dog"  # no entry: the file name
    labels.write_text(json.dumps({"r9": {"cello.wav": "Cello"}}))
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap", "--labels", labels)
    assert code == 2 and "'r9'" in err
    (root / "refs" / "r1" / "labels.json").write_text(json.dumps({"celo.wav": "Cello"}))
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap")
    assert code == 2 and "'celo.wav' names no audio file" in err


def test_an_unreadable_stem_is_named_and_the_rest_is_scored(dataset, capsys):
    root, _, _ = dataset
    (root / "est" / "r1" / "cello.wav").write_bytes(b"not audio at all")
    code, out, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap", "--json")
    assert code == 3
    assert "cello.wav" in err and "not a readable audio" in err
    report = json.loads(out)
    assert report["unreadable_files"] == [str(root / "est" / "r1" / "cello.wav")]
    r1 = next(r for r in report["recordings"] if r["name"] == "r1")
    assert [p["reference"] for p in r1["pairs"]] == ["dog"] and r1["unmatched_references"] == ["cello"]
    assert report["overall"]["pairs"] == 3


def test_fad_on_panns_embeddings_beside_clap(dataset, capsys, tiny_cnn14_checkpoint, tiny_clap_dir):
    root, _, _ = dataset
    code, out, err = run(capsys, "eval", root / "est", root / "refs", "--fad-embedding", "panns",
                         "--fad-embedding", "clap", "--panns-model", tiny_cnn14_checkpoint,
                         "--clap-model", tiny_clap_dir, "--device", "cpu")
    assert code == 0, err
    report = json.loads((root / "est" / "eval.json").read_text())
    fad = report["overall"]["fad"]
    assert list(fad) == ["panns", "clap"] and fad["panns"]["estimates"] == 4 and fad["panns"]["value"] >= 0
    assert report["models"]["panns"]["model_id"] == str(tiny_cnn14_checkpoint) and report["rates"]["panns"] == 32000
    assert "FAD (PANNs" in out and "FAD (CLAP" in out
    code, _, err = run(capsys, "eval", root / "est", root / "refs", "--no-clap", "--fad-embedding", "clap")
    assert code == 2 and "--fad-embedding panns" in err


def test_panns_embeddings_resample_and_window(tiny_cnn14_checkpoint):
    from autosep.eval.panns import PannsEmbedder

    embedder = PannsEmbedder(tiny_cnn14_checkpoint, device="cpu")
    sources = _sources(0, seconds=3.0)
    wave = sources["cello"] + sources["dog"]
    at_48k = resample(wave, RATE, 48000)
    a, b, short = embedder.embed_audio([embedder.prepare(wave, RATE), embedder.prepare(at_48k, 48000),
                                        embedder.prepare(wave[:RATE // 4], RATE)])
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)  # the same sound at 16 and 48 kHz
    assert np.all(np.isfinite(short))  # a quarter second is tiled to Cnn14's minimum, not rejected


def test_python_api(dataset):
    from autosep.eval import EvalSettings, evaluate, pair_recordings, read_estimates, read_references

    root, _, _ = dataset
    pairs, missing, extra = pair_recordings(read_estimates(root / "est"), read_references(root / "refs"))
    assert [r.name for _, r in pairs] == ["r1", "r2"] and missing == [] and extra == []
    report = evaluate(pairs, EvalSettings(clap=False, match="best", match_metric="si-sdr"))
    assert report["overall"]["pairs"] == 4 and report["overall"]["si_sdr"] > 15
    assert report["settings"]["match"] == "best" and report["settings"]["fad_embeddings"] == []


@pytest.mark.filterwarnings("ignore::FutureWarning")  # mir_eval 0.8 marks bss_eval_sources as deprecated
def test_sdr_on_8_khz_files_equals_mir_eval_by_default(tmp_path, capsys):
    """The default rate is the references' own: on 8 kHz files SDR is mir_eval's bss_eval_sources value (an
    independent implementation, frequency-domain projection) and SI-SDR the textbook formula, not a 16 kHz copy's."""
    import mir_eval  # the test extra
    rate, rng = 8000, np.random.default_rng(3)
    t = np.arange(int(1.2 * rate)) / rate
    truth = {"tone": 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 1.5 * t)),
             "noise": 0.1 * rng.standard_normal(len(t))}
    for source, wave in truth.items():
        _write(tmp_path / "refs" / "r" / f"{source}.wav", wave, rate)
        smeared = np.convolve(wave, [0.7, 0.2, 0.1])[: len(wave)] + 0.03 * rng.standard_normal(len(wave))
        _write(tmp_path / "est" / "r" / f"{source}.wav", smeared, rate)
    code, out, err = run(capsys, "eval", tmp_path / "est", tmp_path / "refs", "--no-clap", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["rates"]["sdr"] == [rate] and "bss_eval_sources" in report["variants"]["sdr"]
    for pair in report["recordings"][0]["pairs"]:
        reference = sf.read(tmp_path / "refs" / "r" / f"{pair['reference']}.wav")[0]
        estimate = sf.read(tmp_path / "est" / "r" / f"{pair['estimate']}.wav")[0]
        expected_sdr = mir_eval.separation.bss_eval_sources(reference[None], estimate[None])[0][0]
        assert pair["sdr_rate"] == rate
        assert abs(pair["sdr"] - expected_sdr) < 1e-3
        scaled = (estimate @ reference) / (reference @ reference) * reference
        expected_si_sdr = 10 * np.log10(np.sum(scaled ** 2) / np.sum((scaled - estimate) ** 2))
        assert abs(pair["si_sdr"] - expected_si_sdr) < 1e-3
    # --sdr-rate 16000 (the old default) computes on a resampled copy: a different number, and recorded as such.
    code, out, _ = run(capsys, "eval", tmp_path / "est", tmp_path / "refs", "--no-clap", "--json", "--sdr-rate", "16000")
    resampled = json.loads(out)
    assert resampled["rates"]["sdr"] == 16000 and resampled["recordings"][0]["pairs"][0]["sdr_rate"] == 16000
