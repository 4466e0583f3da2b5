"""Remix: ``autosep remix FOLDER --gain NAME=DB`` and the main command's ``--keep``/``--remove``, on stems the
tiny models really separated (so the stems are not trivial and the sums are checked sample for sample)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autosep.cli import main
from autosep.pipeline.remix import db_to_linear, parse_db, parse_gain

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def read(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="float64", always_2d=True)[0]


@pytest.fixture(scope="module")
def separated(tmp_path_factory, tiny_audioldm2_dir):
    """A 24-bit stereo 44.1 kHz recording separated into cello, flute and residual, with --remove cello."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("remix")
    rate, frames = 44100, int(2.5 * 44100)
    t = np.arange(frames) / rate
    rng = np.random.default_rng(7)
    mono = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t) + 0.03 * rng.standard_normal(frames)
    sf.write(root / "duet.wav", np.stack([mono, 0.7 * mono], axis=1), rate, subtype="PCM_24")
    code = main([str(root / "duet.wav"), "-o", str(root / "out"), "-s", "cello", "-s", "flute", "--remove", "cello",
                 "--model", str(tiny_audioldm2_dir), "--steps", "1", "--window", "2.56", "--device", "cpu", "-q"])
    torch.set_num_threads(threads)
    assert code == 0
    return root / "duet.wav", root / "out" / "duet"


def test_remove_on_the_main_command_writes_remix_beside_the_stems(separated):
    mix_path, folder = separated
    mix, cello, flute, residual = (read(p) for p in (mix_path, folder / "cello.wav", folder / "flute.wav",
                                                     folder / "residual.wav"))
    assert np.abs(cello).max() > 1e-3 and np.abs(flute).max() > 1e-3  # real stems, not silence
    remix = read(folder / "remix.wav")
    assert sf.info(str(folder / "remix.wav")).subtype == "PCM_24"
    assert np.array_equal(remix, flute + residual)  # exactly the other stems, on the same 24-bit grid
    assert np.array_equal(remix, mix - cello)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["remix"]["file"] == "remix.wav" and manifest["remix"]["remove"] == ["cello"]
    assert manifest["remix"]["gains_db"] == {"cello": None, "flute": 0.0, "residual": 0.0}  # None: -inf


def test_all_gains_at_0_db_give_the_input_bit_for_bit(separated, tmp_path, capsys):
    mix_path, folder = separated
    code, output = run(capsys, "remix", folder, "-o", tmp_path / "same.wav")
    assert code == 0, output
    info, original = sf.info(str(tmp_path / "same.wav")), sf.info(str(mix_path))
    assert (info.samplerate, info.channels, info.subtype) == (original.samplerate, original.channels, "PCM_24")
    assert np.array_equal(read(tmp_path / "same.wav"), read(mix_path))
    code, output = run(capsys, "remix", folder, "-o", tmp_path / "same.flac", "--gain", "residual=0dB")
    assert code == 0, output
    assert np.array_equal(read(tmp_path / "same.flac"), read(mix_path))  # lossless flac: the same samples


def test_minus_inf_removes_exactly_that_stem_by_any_of_its_names(separated, tmp_path, capsys):
    mix_path, folder = separated
    mix, flute = read(mix_path), read(folder / "flute.wav")
    for name in ("flute", "FLUTE"):
        code, output = run(capsys, "remix", folder, "--gain", f"{name}=-inf", "-o", tmp_path / f"{name}.wav")
        assert code == 0, output
        assert np.array_equal(read(tmp_path / f"{name}.wav"), mix - flute)
    code, output = run(capsys, "remix", folder, "-g", "cello=-inf", "-g", "flute=-inf", "-g", "residual=-inf",
                       "-o", tmp_path / "nothing.wav")
    assert code == 0 and not read(tmp_path / "nothing.wav").any()


def test_a_gain_in_db_scales_that_stem(separated, tmp_path, capsys):
    mix_path, folder = separated
    mix, cello = read(mix_path), read(folder / "cello.wav")
    code, output = run(capsys, "remix", folder, "--gain", "cello=-6dB", "-o", tmp_path / "quieter.wav",
                       "--bit-depth", "32f")
    assert code == 0, output
    expected = mix - cello + db_to_linear(-6.0) * cello
    assert np.allclose(read(tmp_path / "quieter.wav"), expected, atol=1e-6)
    assert "cello -6 dB" in output


def test_the_default_output_is_remix_in_the_folder(separated, tmp_path, capsys):
    _, folder = separated
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    code, output = run(capsys, "remix", copy, "--gain", "residual=-inf")
    assert code == 0, output
    assert np.array_equal(read(copy / "remix.wav"), read(copy / "cello.wav") + read(copy / "flute.wav"))


def test_unknown_name_is_a_usage_error_listing_the_valid_names(separated, tmp_path, capsys):
    _, folder = separated
    code, output = run(capsys, "remix", folder, "--gain", "dog=-inf", "-o", tmp_path / "x.wav")
    assert code == 2
    assert "no stem named 'dog'" in output and "cello, flute, residual" in output
    assert not (tmp_path / "x.wav").exists()
    code, output = run(capsys, "remix", folder, "--gain", "cello=loud")
    assert code == 2 and "expected a gain in dB" in output


def test_clipping_is_reported_never_silent(separated, tmp_path, capsys):
    _, folder = separated
    code, output = run(capsys, "remix", folder, "--gain", "cello=+30dB", "-o", tmp_path / "loud.wav")
    assert code == 0
    assert "beyond full scale" in output and "clipped" in output
    assert np.abs(read(tmp_path / "loud.wav")).max() <= 1.0
    code, output = run(capsys, "remix", folder, "--gain", "cello=+30dB", "-o", tmp_path / "loud32.wav",
                       "--bit-depth", "32f")
    assert code == 0 and "not clipped" in output
    assert np.abs(read(tmp_path / "loud32.wav")).max() > 1.0  # float keeps what 24-bit could not


def test_a_folder_without_manifest_is_refused(tmp_path, capsys):
    code, output = run(capsys, "remix", tmp_path, "--gain", "a=-inf")
    assert code == 1 and "manifest.json" in output


def test_keep_and_remove_exclude_each_other(tmp_path, capsys):
    code, output = run(capsys, tmp_path / "x.wav", "--keep", "a", "--remove", "b")
    assert code == 2 and "not allowed with" in output


def test_rerun_with_keep_only_remixes_and_an_unknown_name_fails_naming_the_stems(separated, tmp_path, capsys,
                                                                                 tiny_audioldm2_dir, monkeypatch):
    from autosep.pipeline.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "load", classmethod(lambda *a, **k: pytest.fail("a model was loaded")))
    mix_path, folder = separated
    out = tmp_path / "out"
    shutil.copytree(folder.parent, out)
    args = [mix_path, "-o", out, "-s", "cello", "-s", "flute", "--model", tiny_audioldm2_dir, "--steps", "1",
            "--window", "2.56", "-q"]  # the request the stems were made for
    code, output = run(capsys, *args, "--keep", "flute")  # done already: no model is loaded, only the remix
    assert code == 0, output
    assert np.array_equal(read(out / "duet" / "remix.wav"), read(folder / "flute.wav"))
    assert json.loads((out / "duet" / "manifest.json").read_text())["remix"]["keep"] == ["flute"]
    # with -s the stems' names are known before any work: an unknown one is a usage error naming them (preflight)
    code, output = run(capsys, *args, "--remove", "violin")
    assert code == 2
    assert "--remove 'violin'" in output and "'cello', 'flute', residual" in output


@pytest.mark.parametrize("text, db", [("-6", -6.0), ("-6dB", -6.0), ("+3 dB", 3.0), ("0", 0.0), ("-inf", -math.inf),
                                      ("-INF dB", -math.inf), (".5db", 0.5)])
def test_gain_syntax(text, db):
    assert parse_db(text) == db
    assert parse_gain(f"dog barking={text}") == ("dog barking", db)


@pytest.mark.parametrize("text", ["loud", "inf", "nan", "6 dBFS", ""])
def test_bad_gains_are_refused(text):
    with pytest.raises(ValueError):
        parse_db(text)
