"""End-to-end: ``autosep`` on the real tiny random-weight models (tiny Cnn14 tagger, tiny AudioLDM2), offline,
through the same loading code a user's download takes. The command runs in-process (``autosep.cli.main``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models on shared cores: far faster


@pytest.fixture(scope="module")
def model_args(tiny_audioldm2_dir, tiny_cnn14_checkpoint) -> list[str]:
    # Short windows and one step keep the tiny model fast; everything else is the default path.
    return ["--model", str(tiny_audioldm2_dir), "--tagger-model", str(tiny_cnn14_checkpoint),
            "--steps", "1", "--window", "2.56", "--device", "cpu"]


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def write_wave(path: Path, seconds=1.5, rate=16000, channels=1, subtype="PCM_16", kind="noise", seed=0):
    rng = np.random.default_rng(seed)
    frames = int(seconds * rate)
    t = np.arange(frames) / rate
    if kind == "noise":
        mono = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(frames)
    else:
        mono = np.zeros(frames)
    data = np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return sf.read(path, dtype="float32", always_2d=True)[0]


def stems_of(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: sf.read(p, dtype="float32", always_2d=True)[0] for p in sorted(folder.glob("*.wav"))}


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# A source stem must carry at least this share of the mixture's RMS (-34 dB). The tiny model is calibrated to give
# stems at the input's level (about -20 dB of it here after projection); a model that outputs near-silence
# (the residual then takes everything and the sum checks pass trivially) falls far below.
AUDIBLE_SHARE = 0.02


def assert_audible_source_stems(stems: dict[str, np.ndarray], mix: np.ndarray) -> None:
    sources = {name: stem for name, stem in stems.items() if name != "residual"}
    assert sources
    for name, stem in sources.items():
        assert rms(stem) > AUDIBLE_SHARE * rms(mix), f"{name} is near-silent: RMS {rms(stem):.2e} vs {rms(mix):.2e}"


# -- the main path ---------------------------------------------------------------------------------------------

def test_autosep_mix_wav_tags_separates_and_writes(tmp_path, capsys, model_args):
    mix = write_wave(tmp_path / "mix.wav", seconds=4.0, rate=44100, channels=2, subtype="PCM_24")
    code, output = run(capsys, tmp_path / "mix.wav", "-o", tmp_path / "out", "--threshold", "0",
                       "--max-sources", "2", *model_args)
    assert code == 0, output
    assert "[1/1]" in output and "window 2/2" in output  # not a terminal: plain progress lines
    folder = tmp_path / "out" / "mix"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source_mode"] == "tagged" and manifest["tagger"]["name"] == "panns"
    assert manifest["separator"]["model_id"] and manifest["versions"]["torch"]
    assert 1 <= len(manifest["detections"]) <= 2
    top = manifest["top_tags"]  # readable class names with their AudioSet ids, best first
    assert len(top) == 10 and all(t["mid"].startswith("/") and not t["label"].startswith("/") for t in top)
    assert [t["max_score"] for t in top] == sorted((t["max_score"] for t in top), reverse=True)
    names = {p.name for p in folder.iterdir()}
    assert names == {s["file"] for s in manifest["sources"]} | {"residual.wav", "manifest.json"}
    stems = stems_of(folder)
    for stem in stems.values():  # the input's rate, channels, length and bit depth
        assert stem.shape == mix.shape
    assert {sf.info(folder / f).subtype for f in names - {"manifest.json"}} == {"PCM_24"}
    assert {sf.info(folder / f).samplerate for f in names - {"manifest.json"}} == {44100}
    np.testing.assert_array_equal(sum(s.astype(np.float64) for s in stems.values()), mix)  # bit for bit
    assert_audible_source_stems(stems, mix)  # ...and not because the residual took everything
    source = manifest["sources"][0]
    assert source["c_rev"] and len(source["c_inv"]) == len(manifest["windows"]) == 2  # 4 s in 2.56 s windows
    assert manifest["settings"]["steps"] == 1 and manifest["settings"]["render"] == "projected"
    assert manifest["work"]["unet_evaluations"] > 0 and manifest["work"]["windows"] == 2
    assert set(manifest["flags"]) >= {"fp32_retry", "silent_stems", "clipped_output"}


def test_folder_of_rates_and_channels_mirrors_the_tree_with_safe_stem_names(tmp_path, capsys, model_args,
                                                                           monkeypatch):
    from autosep.separator import ZeroSep

    loads = []
    real_load = ZeroSep.from_pretrained.__func__
    monkeypatch.setattr(ZeroSep, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(a) or real_load(cls, *a, **k)))
    inputs = {
        "phone/call 8k.wav": write_wave(tmp_path / "in" / "phone" / "call 8k.wav", 1.0, 8000, 1, "PCM_16"),
        "band/stéréo — live.wav": write_wave(tmp_path / "in" / "band" / "stéréo — live.wav", 1.0, 44100, 2,
                                             "PCM_24"),
        "surround 96k.wav": write_wave(tmp_path / "in" / "surround 96k.wav", 1.0, 96000, 6, "FLOAT"),
    }
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "-s", "dog barking",
                       "-s", "../../etc/passwd", "-s", "?!", *model_args)
    assert code == 0, output
    for relative, data in inputs.items():
        folder = tmp_path / "out" / Path(relative).with_suffix("")
        assert sorted(p.name for p in folder.iterdir()) == [
            "dog_barking.wav", "etc_passwd.wav", "manifest.json", "residual.wav", "source.wav"]
        stems = stems_of(folder)
        source_info = sf.info(tmp_path / "in" / relative)
        for path in folder.glob("*.wav"):
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (
                source_info.samplerate, source_info.channels, source_info.frames, source_info.subtype)
        total = sum(s.astype(np.float64) for s in stems.values())
        if source_info.subtype == "FLOAT":
            np.testing.assert_allclose(total, data, atol=1e-6)
        else:  # integer PCM in, integer PCM out: the stems and the residual add up bit for bit
            np.testing.assert_array_equal(total, data)
        assert_audible_source_stems(stems, data)
    assert not list(tmp_path.glob("etc*")) and not (tmp_path / "out" / "etc").exists()
    assert len(loads) == 1  # the model is loaded once for the whole batch


def test_the_prompt_decides_the_stem(tmp_path, capsys, model_args):
    # One source each time, so the inversion prompt is empty in both runs and only the target prompt differs.
    mix = write_wave(tmp_path / "mix.wav", seconds=1.5, subtype="FLOAT")
    stems = {}
    for prompt in ("dog barking", "church bell"):
        out = tmp_path / prompt.replace(" ", "-")
        code, output = run(capsys, tmp_path / "mix.wav", "-o", out, "-s", prompt, *model_args, "--steps", "4")
        assert code == 0, output
        written = stems_of(out / "mix")
        np.testing.assert_allclose(sum(s.astype(np.float64) for s in written.values()), mix, atol=1e-6)
        assert_audible_source_stems(written, mix)
        stems[prompt] = written[prompt.replace(" ", "_")]
    # Four steps, so the target prompt steers the denoising (measured: the stems differ by ~40% of their RMS).
    difference = rms(stems["dog barking"] - stems["church bell"]) / rms(stems["dog barking"])
    assert difference > 0.1, f"the two prompts gave nearly the same stem ({difference:.3f} of its RMS apart)"


def test_passes_and_highlighting_run_end_to_end_and_are_recorded(tmp_path, capsys, model_args):
    write_wave(tmp_path / "mix.wav", seconds=1.5)
    work, stems = {}, {}
    for passes, guidance in ((1, 1.0), (2, 1.0), (1, 0.5)):
        out = tmp_path / f"out-{passes}-{guidance}"
        code, output = run(capsys, tmp_path / "mix.wav", "-o", out, "-s", "dog barking", "-s", "church bell",
                           *model_args, "--steps", "3", "--render", "generative", "--passes", passes,
                           "--guidance", guidance)
        assert code == 0, output
        manifest = json.loads((out / "mix" / "manifest.json").read_text())
        assert manifest["settings"]["passes"] == passes and manifest["settings"]["guidance"] == guidance
        work[passes, guidance] = manifest["work"]["unet_evaluations"]
        stems[passes, guidance] = stems_of(out / "mix")["dog_barking"]
    # With "others" inversion every pass costs what the first does; 0 < w < 1 evaluates both branches.
    assert work[2, 1.0] == 2 * work[1, 1.0] and work[1, 0.5] == 2 * work[1, 1.0]
    for other in ((2, 1.0), (1, 0.5)):
        assert rms(stems[other] - stems[1, 1.0]) > 0.01 * rms(stems[1, 1.0]), other
    assert "highlighting" in run(capsys, "--help")[1] and "--passes" in run(capsys, "--help")[1]


def test_bad_inputs_are_reported_and_the_batch_goes_on(tmp_path, capsys, model_args):
    folder = tmp_path / "in"
    write_wave(folder / "good.flac")
    write_wave(folder / "good.wav")  # same output folder as good.flac (found first): refused, not overwritten
    write_wave(folder / "silence.wav", kind="silence")
    write_wave(folder / "blip.wav", seconds=0.05)
    nan = write_wave(folder / "nan.wav", subtype="FLOAT")
    nan[100:110] = np.nan
    nan[200] = np.inf
    sf.write(folder / "nan.wav", nan, 16000, subtype="FLOAT")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("not audio at all\n" * 50)
    header = (folder / "good.wav").read_bytes()[:30]
    (folder / "truncated.wav").write_bytes(header)
    (folder / "movie.mp4").write_bytes(np.random.default_rng(0).bytes(4000))  # unsupported/garbled container

    code, output = run(capsys, folder, tmp_path / "missing.wav", "-o", tmp_path / "out", "-s", "dog barking",
                       *model_args)
    assert code == 3, output  # some failed, the rest done
    out = tmp_path / "out"
    flat = " ".join(output.split())
    for name in ("missing.wav", "empty.wav", "text.wav", "truncated.wav", "movie.mp4", "blip.wav"):
        assert name in flat, name
        assert not (out / Path(name).stem).exists()
    assert "too short" in flat and "empty" in flat and "same output folder" in flat
    assert "Traceback" not in output

    good = json.loads((out / "good" / "manifest.json").read_text())
    assert good["input"]["path"].endswith("good.flac")  # good.wav did not overwrite it
    assert "good.wav: refused" in flat
    silence = json.loads((out / "silence" / "manifest.json").read_text())
    assert silence["flags"]["no_sources"] and silence["sources"] == []
    assert [p.name for p in (out / "silence").iterdir()] == ["manifest.json"] and "silent" in flat
    nan_manifest = json.loads((out / "nan" / "manifest.json").read_text())
    assert nan_manifest["input"]["non_finite_samples"] == 11 and nan_manifest["flags"]["non_finite_input"]
    assert all(np.isfinite(s).all() for s in stems_of(out / "nan").values())
    assert not list(out.rglob(".*partial*"))


def test_silence_and_a_very_short_recording_through_the_tagger(tmp_path, capsys, model_args):
    write_wave(tmp_path / "in" / "quiet.wav", kind="silence")
    short = write_wave(tmp_path / "in" / "short.wav", seconds=0.12, rate=44100, channels=2)  # < one tag window
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--threshold", "0", *model_args)
    assert code == 0 and "silent" in output, output
    manifest = json.loads((tmp_path / "out" / "quiet" / "manifest.json").read_text())
    assert manifest["flags"]["no_sources"] and manifest["detections"] == []
    short_manifest = json.loads((tmp_path / "out" / "short" / "manifest.json").read_text())
    assert short_manifest["detections"] and all(
        0 <= a <= b <= 0.12 + 1e-6 for d in short_manifest["detections"] for a, b in d["segments"])
    np.testing.assert_array_equal(sum(s.astype(np.float64) for s in stems_of(tmp_path / "out" / "short").values()),
                                  short)


def test_resume_skips_finished_work_without_loading_models(tmp_path, capsys, model_args, monkeypatch):
    from autosep.pipeline import batch

    write_wave(tmp_path / "in" / "a.wav")
    write_wave(tmp_path / "in" / "sub" / "b.wav", seed=1)
    args = [tmp_path / "in", "-o", tmp_path / "out", "-s", "dog barking", "--format", "flac", "--bit-depth", "24"]
    code, output = run(capsys, *args, *model_args)
    assert code == 0, output
    assert sf.info(tmp_path / "out" / "sub" / "b" / "dog_barking.flac").subtype == "PCM_24"
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    # Everything is done (the same request): a rerun loads no model at all.
    with monkeypatch.context() as patched:
        patched.setattr(batch.Pipeline, "load", lambda *a, **k: pytest.fail("a model was loaded"))
        code, output = run(capsys, *args, *model_args)
    assert code == 0, output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    broken = [a if a != model_args[1] else str(tmp_path / "no-such-model") for a in model_args]
    # --overwrite needs the model again, and a folder that is not there is refused before anything loads.
    code, output = run(capsys, *args, *broken, "--overwrite")
    assert code == 2 and "no-such-model" in output and "no such folder" in output


def test_ctrl_c_mid_batch_keeps_finished_work_and_rerun_resumes(tmp_path, capsys, model_args, monkeypatch):
    from autosep.separator import ZeroSep

    for name in ("a", "b", "c"):
        write_wave(tmp_path / "in" / f"{name}.wav", seconds=4.0, seed=ord(name))
    real = ZeroSep.separate_detailed
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # a.wav takes 2 windows; b.wav is interrupted in its first window
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ZeroSep, "separate_detailed", interrupted)
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "-s", "dog barking", *model_args)
    assert code == 130 and "interrupted" in output
    assert (tmp_path / "out" / "a" / "manifest.json").exists()
    assert not [p for p in (tmp_path / "out" / "b").iterdir()]  # no final-named partial stem, no temporaries
    assert not (tmp_path / "out" / "c").exists()

    monkeypatch.setattr(ZeroSep, "separate_detailed", real)
    before = (tmp_path / "out" / "a" / "manifest.json").stat().st_mtime_ns
    code, output = run(capsys, tmp_path / "in", "-o", tmp_path / "out", "-s", "dog barking", *model_args)
    assert code == 0, output
    assert (tmp_path / "out" / "a" / "manifest.json").stat().st_mtime_ns == before
    assert all((tmp_path / "out" / n / "manifest.json").exists() for n in "bc")


def test_dry_run_shows_the_plan_and_writes_nothing(tmp_path, capsys, model_args):
    write_wave(tmp_path / "mix.wav", seconds=2.0)
    no_separator = [a if a != model_args[1] else str(tmp_path / "no-such-model") for a in model_args]
    code, output = run(capsys, tmp_path / "mix.wav", "-o", tmp_path / "out", "--dry-run", "--threshold", "0",
                       "--max-sources", "1", *no_separator)
    assert code == 0, output  # the separator is never loaded for a dry run
    assert "mix.wav" in output and "prompt" in output and not (tmp_path / "out").exists()


# -- exit codes without models -----------------------------------------------------------------------------------

def test_usage_errors_exit_2(tmp_path, capsys):
    write_wave(tmp_path / "mix.wav")
    assert run(capsys)[0] == 2
    assert run(capsys, tmp_path / "mix.wav", "--overlap", "1.5")[0] == 2
    assert run(capsys, tmp_path / "mix.wav", "--render", "nope")[0] == 2
    code, output = run(capsys, tmp_path / "mix.wav", "--format", "flac", "--bit-depth", "32f")
    assert code == 2 and "flac cannot hold" in output
    for bad in ("-1", "nan"):  # refused up front, not by the separator in every recording after the models load
        code, output = run(capsys, tmp_path / "mix.wav", "-s", "dog", f"--guidance={bad}")
        assert code == 2 and "--guidance" in output
    code, output = run(capsys, tmp_path / "mix.wav", "--vocab", str(tmp_path / "words.txt"))  # panns: no vocabulary
    assert code == 2 and "--vocab" in output
    code, output = run(capsys, tmp_path / "mix.wav", "-s", "dog", "--dtype", "fp8")
    assert code == 2 and "--dtype" in output
    for bad in ("0", "1.5"):
        code, output = run(capsys, tmp_path / "mix.wav", "-s", "dog", "--passes", bad)
        assert code == 2 and "--passes" in output


def test_a_usage_error_hints_at_an_input_read_as_an_option_or_as_an_options_value(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_wave(tmp_path / "-mix.wav")
    code, output = run(capsys, "-mix.wav")
    assert code == 2 and "hint: -mix.wav starts with '-'" in output and "./-mix.wav" in output
    write_wave(tmp_path / "clip.wav")
    for option, metavar in (("--video-out", "STEM"), ("--ray", "ADDRESS")):
        code, output = run(capsys, option, "clip.wav")
        assert code == 2 and f"hint: clip.wav was taken as the value of {option}" in output
        assert f"(clip.wav {option})" in output and f"{option}={metavar}" in output
    code, output = run(capsys, "--", "--video-out")  # after --, nothing is an option: no hint
    assert code != 0 and "hint" not in output


def test_nothing_found_or_unwritable_output_exit_1(tmp_path, capsys):
    code, output = run(capsys, tmp_path / "absent.wav")
    assert code == 1 and "absent.wav" in output
    write_wave(tmp_path / "mix.wav")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, output = run(capsys, tmp_path / "mix.wav", "-o", blocker / "out", "-s", "dog barking")
    assert code == 1 and "cannot write to the output folder" in output


def test_inputs_are_checked_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from autosep.pipeline import batch

    real_load = batch.Pipeline.load
    monkeypatch.setattr(batch.Pipeline, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    (tmp_path / "empty").mkdir()
    code, output = run(capsys, tmp_path / "missing.wav", tmp_path / "empty", tmp_path / "*.flac",
                       "-o", tmp_path / "out")
    assert code == 1
    assert "missing.wav" in output and "empty" in output and "*.flac" in output

    stderr_when_loading = []

    def spy(options, progress=None):
        stderr_when_loading.append(capsys.readouterr().err)
        return real_load(options, progress)

    monkeypatch.setattr(batch.Pipeline, "load", spy)
    write_wave(tmp_path / "mix.wav")
    code, output = run(capsys, tmp_path / "missing.wav", tmp_path / "mix.wav", "-o", tmp_path / "out",
                       "-s", "dog barking", "--dry-run")  # given sources + dry run: loading loads no model
    assert code == 3, output
    assert len(stderr_when_loading) == 1 and "missing.wav" in stderr_when_loading[0]  # named up front
    assert "missing.wav" in output  # and again in the summary


# -- Python API and the models command ---------------------------------------------------------------------------

def test_python_api_returns_stems_plan_and_manifest(tmp_path, tiny_audioldm2_dir):
    import autosep

    data = write_wave(tmp_path / "mix.wav", seconds=1.5, rate=22050, channels=2)
    options = dict(sources=["dog barking", "a man speaking"], model=str(tiny_audioldm2_dir), steps=1, window=2.56,
                   device="cpu", out=str(tmp_path / "out"))
    (result,) = autosep.AutoSep(**options).run(tmp_path / "mix.wav")
    assert result.status == "done" and result.sample_rate == 22050
    assert [s.label for s in result.plan] == ["dog barking", "a man speaking"]
    assert set(result.stems) == {"dog barking", "a man speaking", "residual"}
    np.testing.assert_allclose(sum(result.stems.values()), data, atol=1e-4)
    assert_audible_source_stems(result.stems, data)
    assert result.manifest.sources[1].c_inv[0]["c_inv"]

    generative = autosep.separate_file(tmp_path / "mix.wav", **{**options, "render": "generative",
                                                                 "out": str(tmp_path / "gen")})
    assert generative.sample_rate == 16000 and set(generative.stems) == {"dog barking", "a man speaking"}
    assert all(s.shape == (round(len(data) * 16000 / 22050), 1) for s in generative.stems.values())
    with pytest.raises(autosep.errors.AutosepError, match="no such file"):
        autosep.separate_file(tmp_path / "nope.wav", **options)


def test_tag_subcommand_is_dispatched(tmp_path, capsys, tiny_cnn14_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_wave(tmp_path / "mix.wav", seconds=1.0)
    code, output = run(capsys, "tag", "mix.wav", "--tagger-model", tiny_cnn14_checkpoint, "--json")
    assert code == 0, output
    assert "mix.wav" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav"]  # tagging writes no stems


def test_models_list_and_download(capsys):
    code, output = run(capsys, "models", "list")
    assert code == 0 and "audioldm2" in output and "CC BY-NC-SA 4.0" in output and "panns" in output
    code, output = run(capsys, "models", "download", "no-such-model")
    assert code == 2 and "unknown model" in output
    code, output = run(capsys, "models", "download", "audioldm2")  # tests run offline
    assert code == 1 and "offline" in output


def test_models_list_says_whether_the_panns_checkpoint_is_cached(capsys, tmp_path, monkeypatch):
    from autosep.taggers import panns

    monkeypatch.setenv("AUTOSEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(panns, "legacy_checkpoint_path", lambda: tmp_path / "absent.pth")
    monkeypatch.setenv("COLUMNS", "250")

    def panns_row(output: str) -> str:
        return next(line for line in output.splitlines() if "panns" in line and "tagger" in line)

    code, output = run(capsys, "models", "list")
    assert code == 0 and " no " in panns_row(output)
    checkpoint = panns.cnn14_checkpoint_path()
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"x" * 64)
    monkeypatch.setattr(panns, "CNN14_SIZE", 64)  # a complete (right-size) copy
    code, output = run(capsys, "models", "list")
    assert code == 0 and " yes " in panns_row(output)


def test_models_list_says_whether_a_separator_is_in_the_hugging_face_cache(capsys, tiny_audioldm2_dir, monkeypatch):
    from tiny_models.audioldm2 import install_in_hf_cache

    monkeypatch.setenv("COLUMNS", "250")

    def row(output: str) -> str:
        return next(line for line in output.splitlines() if "audioldm-l " in line)

    code, output = run(capsys, "models", "list")
    assert code == 0 and " no " in row(output)
    install_in_hf_cache(tiny_audioldm2_dir, "cvssp/audioldm-l-full")
    code, output = run(capsys, "models", "list")
    assert code == 0 and " yes " in row(output)
    code, output = run(capsys, "models", "download", "audioldm-l")  # already there: no network needed
    assert code == 0, output


# -- stems checked by the tagger, on the tiny models ------------------------------------------------------------

@pytest.fixture(scope="module")
def responsive_cnn14(tiny_cnn14_checkpoint, tmp_path_factory) -> Path:
    """The tiny Cnn14 with its output layer scaled up, so its scores follow the input (the random one is nearly
    constant): saved and loaded back like any checkpoint."""
    import torch

    checkpoint = torch.load(tiny_cnn14_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["model"]["fc_audioset.weight"] = checkpoint["model"]["fc_audioset.weight"] * 2000.0
    path = tmp_path_factory.mktemp("responsive-panns") / tiny_cnn14_checkpoint.name
    torch.save(checkpoint, path)
    return path


def _class_the_tagger_hears_in(mix: Path, checkpoint: Path) -> tuple[str, float]:
    """A class the tagger scores clearly higher on ``mix`` than on silence, and a threshold between the two."""
    from autosep.pipeline.recording import open_audio
    from autosep.pipeline.tagging import tag_recording
    from autosep.taggers import load_tagger

    tagger = load_tagger("panns", checkpoint, "cpu")
    with open_audio(mix) as reader:
        heard = tag_recording(reader, tagger).result
    silence = tagger.tag(np.zeros(16000 * 3, np.float32), 16000)
    gap = heard.probs.max(axis=0) - silence.probs.max(axis=0)
    j = int(np.argmax(gap))
    assert gap[j] > 0.02, "the tagger hears nothing in the mix"
    return heard.labels[j], float(silence.probs.max(axis=0)[j] + gap[j] / 2)


def test_a_silent_stem_is_not_confirmed_and_folded_into_the_residual(tmp_path, capsys, model_args, monkeypatch,
                                                                     responsive_cnn14):
    import json

    from autosep.separator import ZeroSep

    mix = write_wave(tmp_path / "mix.wav", seconds=3.0)
    label, threshold = _class_the_tagger_hears_in(tmp_path / "mix.wav", responsive_cnn14)
    real = ZeroSep.separate_detailed

    def silent(self, wave, sources, **kwargs):  # the separation fails: the source's stem comes out silent
        result = real(self, wave, sources, **kwargs)
        result.stems = result.stems * 0
        return result

    monkeypatch.setattr(ZeroSep, "separate_detailed", silent)
    args = [tmp_path / "mix.wav", "-o", tmp_path / "out", "--include", label, "--max-sources", "0",
            "--threshold", f"{threshold:.6f}", *model_args, "--tagger-model", responsive_cnn14]
    code, output = run(capsys, *args)
    assert code == 0, output
    manifest = json.loads((tmp_path / "out" / "mix" / "manifest.json").read_text())
    (stem,) = manifest["sources"]
    assert stem["not_confirmed"] is True and stem["check"]["confirmed"] is False
    assert stem["check"]["score_in_stem"] < threshold <= stem["check"]["score_in_mixture"]
    assert manifest["check"]["not_confirmed"] == [stem["name"]]
    assert f"{stem['name']} (not confirmed)" in output  # the final summary shows the verdict

    code, output = run(capsys, *args, "--overwrite", "--drop-unconfirmed")
    assert code == 0, output
    manifest = json.loads((tmp_path / "out" / "mix" / "manifest.json").read_text())
    assert manifest["sources"] == [] and manifest["check"]["dropped"] == [stem["name"]]
    assert f"folded into the residual: {stem['name']}" in output
    stems = stems_of(tmp_path / "out" / "mix")
    assert list(stems) == ["residual"]
    np.testing.assert_array_equal(stems["residual"], mix)  # the whole input, bit for bit


def test_a_source_heard_only_in_the_residual_is_separated_in_a_second_round(tmp_path, tiny_audioldm2_dir,
                                                                            responsive_cnn14):
    from dataclasses import replace

    from autosep.pipeline.inputs import collect_inputs
    from autosep.pipeline.recording import open_audio
    from autosep.pipeline.pipeline import Pipeline
    from autosep.pipeline.settings import PipelineOptions
    from autosep.pipeline.tagging import tag_recording
    from autosep.taggers.audioset import load_ontology

    write_wave(tmp_path / "in" / "mix.wav", seconds=3.0)
    first_class, threshold = _class_the_tagger_hears_in(tmp_path / "in" / "mix.wav", responsive_cnn14)
    base = PipelineOptions(model=str(tiny_audioldm2_dir), tagger_model=str(responsive_cnn14), steps=1,
                           window=2.56, device="cpu", out=str(tmp_path / "out"),
                           planner={"threshold": threshold, "include": [first_class], "max_sources": 0})
    pipeline = Pipeline.load(base.settings())
    (item,), _ = collect_inputs([str(tmp_path / "in" / "mix.wav")])
    first = pipeline.process(item)
    assert first.status == "done", first.message
    # plant: the class the tagger hears most clearly in the residual that it does not hear in the mixture
    with open_audio(tmp_path / "in" / "mix.wav") as reader:
        in_mix = tag_recording(reader, pipeline.tagger).result
    with open_audio(first.files["residual"]) as reader:
        in_residual = tag_recording(reader, pipeline.tagger).result
    ontology = load_ontology()
    mix_scores, residual_scores = in_mix.probs.max(axis=0), in_residual.probs.max(axis=0)
    related = {first_class} | ontology.ancestors(first_class) | ontology.descendants(first_class)
    leaves = [j for j, mid in enumerate(in_mix.labels)
              if mid not in related and not ontology.nodes[mid].child_ids and ontology.nodes[mid].depth >= 3]
    planted = max(leaves, key=lambda j: residual_scores[j] - mix_scores[j])
    gap = float(residual_scores[planted] - mix_scores[planted])
    assert gap > 0.002, "nothing is clearer in the residual than in the mixture"
    second_threshold = float(mix_scores[planted]) + gap / 2
    # every other class that would pass the new threshold is excluded, so the planted one is the discovery
    others = [mid for j, mid in enumerate(in_mix.labels) if j != planted and mid != first_class
              and max(mix_scores[j], residual_scores[j]) >= second_threshold]
    again = replace(base, rounds=2, overwrite=True, planner={
        "threshold": second_threshold, "include": [first_class], "exclude": others, "max_sources": 2})
    pipeline = Pipeline(again.settings(), pipeline.tagger, pipeline.separator)  # the same loaded models
    second = pipeline.process(item)
    assert second.status == "done", second.message
    planted_name = ontology.nodes[in_mix.labels[planted]].name
    assert [s.label for s in second.plan] == [ontology.nodes[first_class].name, planted_name]
    stems = {s.name: s for s in second.manifest.sources}
    assert stems[planted_name].round == 2 and second.manifest.check.rounds == 2
    assert set(second.files) == {ontology.nodes[first_class].name, planted_name, "residual"}
    assert_audible_source_stems(dict(second.stems), sf.read(tmp_path / "in" / "mix.wav", always_2d=True)[0])
