"""The typed manifest (issue 18, item 1): JSON round trip, manifests of earlier versions, finding a stem by name,
and the one rule for the file names a manifest gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autosep.pipeline.manifest import (MANIFEST_NAME, CheckRecord, Detection, Manifest, ManifestError, RemixRecord,
                                       StemReport, UnknownStemError, VideoOutRecord, trusted_file)
from autosep.pipeline.remix import open_result

# A manifest as autosep 0.1.0 wrote it (manifest_version 1, the keys of its build_manifest): no fingerprint or
# header length, no separator backbone/sampler, no work, processed_by, check, truncated_input or windows' silence.
OLD_MANIFEST = {
    "manifest_version": 1, "status": "done", "created": "2026-11-27T01:00:00+00:00",
    "input": {"path": "/data/mix.wav", "given": "mix.wav", "duration_s": 2.0, "frames": 88200, "sample_rate": 44100,
              "channels": 2, "subtype": "PCM_24", "container": "WAV", "peak": 0.5, "non_finite_samples": 0},
    "tagger": {"name": "panns", "model_id": "Cnn14_mAP=0.431.pth"},
    "separator": {"model_id": "cvssp/audioldm2", "sample_rate": 16000},
    "versions": {"python": "3.11.7", "autosep": "0.1.0"},
    "source_mode": "tagged",
    "detections": [{"label": "Bark", "mid": "/m/05tny_", "score": 0.81, "prompt": "dog barking",
                    "segments": [[0.0, 2.0]]},
                   {"label": "Speech", "mid": "/m/09x0r", "score": 0.6, "prompt": "man speaking",
                    "segments": [[0.5, 1.5]]}],
    "top_tags": [{"label": "Bark", "mid": "/m/05tny_", "max_score": 0.81}],
    "sources": [{"name": "Bark", "file": "bark.wav", "mid": "/m/05tny_", "c_rev": "dog barking",
                 "c_inv": [{"window": 0, "c_inv": "man speaking"}], "windows_active": 1, "fp32_retry": False,
                 "peak": 0.4, "silent": False, "clipped_samples": 0},
                {"name": "Speech", "file": "speech.wav", "mid": "/m/09x0r", "c_rev": "man speaking",
                 "c_inv": [{"window": 0, "c_inv": "dog barking"}], "windows_active": 1, "fp32_retry": False,
                 "peak": 0.2, "silent": False, "clipped_samples": 0}],
    "residual": {"file": "residual.wav", "peak": 0.1, "clipped_samples": 0},
    "windows": [{"index": 0, "start_s": 0.0, "end_s": 2.0, "sources": ["Bark", "Speech"]}],
    "settings": {"steps": 50, "render": "projected", "window_s": 10.24, "format": "wav"},
    "timings_s": {"total": 12.5},
    "flags": {"no_sources": False, "fp32_retry": [], "silent_stems": [], "clipped_output": [],
              "non_finite_input": False},
    "warnings": [],
}


def _folder(tmp_path: Path, data: dict) -> Path:
    folder = tmp_path / "mix"
    folder.mkdir(exist_ok=True)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    for entry in [*data.get("sources", []), data.get("residual") or {}]:
        if entry.get("file"):
            (folder / Path(entry["file"]).name).write_bytes(b"")
    return folder


def test_a_manifest_of_the_first_version_reads_with_typed_fields(tmp_path):
    manifest = Manifest.read(_folder(tmp_path, OLD_MANIFEST))
    assert manifest is not None and manifest.is_autosep
    assert manifest.input.sample_rate == 44100 and manifest.input.fingerprint is None
    assert manifest.input.header_frames is None and not manifest.flags.truncated_input
    assert manifest.tagger.name == "panns" and manifest.tagger.revision is None
    assert manifest.separator.model_id == "cvssp/audioldm2" and manifest.separator.backbone is None
    assert [s.c_rev for s in manifest.sources] == ["dog barking", "man speaking"]
    assert manifest.sources[0].c_inv == [{"window": 0, "c_inv": "man speaking"}] and manifest.sources[0].check is None
    assert manifest.windows[0].sources == ["Bark", "Speech"] and not manifest.windows[0].silent
    assert manifest.work == {} and manifest.processed_by is None and manifest.check is None
    assert [(s.label, s.prompt, s.segments) for s in manifest.plan] == [("Bark", "dog barking", [(0.0, 2.0)]),
                                                                       ("Speech", "man speaking", [(0.5, 1.5)])]
    assert manifest.sample_rate == 44100
    assert list(manifest.files) == ["Bark", "Speech", "residual"]


def test_an_old_manifest_written_back_keeps_every_key_and_value_it_had(tmp_path):
    written = Manifest.from_dict(OLD_MANIFEST, tmp_path).to_dict()
    for key, value in OLD_MANIFEST.items():
        if isinstance(value, dict):
            assert {k: written[key][k] for k in value} == value, key
        elif key == "sources":
            assert [{k: s[k] for k in old} for s, old in zip(written[key], value)] == value
        else:
            assert written[key] == value, key


def test_a_current_manifest_round_trips_through_to_dict_and_from_dict(tmp_path):
    data = json.loads(json.dumps({
        **OLD_MANIFEST,
        "input": {**OLD_MANIFEST["input"], "header_frames": 96000, "fingerprint": "ab" * 32},
        "tagger": {"name": "panns", "model_id": "m", "revision": "c" * 40},
        "separator": {"model_id": "cvssp/audioldm2", "backbone": "audioldm2", "sample_rate": 16000, "channels": 1,
                      "sampler": "DDPM (edit-friendly)", "revision": None},
        "detections": [{**OLD_MANIFEST["detections"][0], "active_seconds": 2.0, "why": "detected class",
                        "classes": [{"label": "Bark", "mid": "/m/05tny_", "score": 0.81}]}],
        "sources": [{**OLD_MANIFEST["sources"][0], "check": {"score_in_stem": 0.1, "score_in_mixture": 0.8,
                                                              "confirmed": False}, "round": 1,
                     "not_confirmed": True}],
        "windows": [{"index": 0, "start_s": 0.0, "end_s": 2.0, "sources": []}, {"index": 1, "start_s": 1.5,
                                                                                "end_s": 2.0, "sources": [],
                                                                                "silent": True}],
        "work": {"windows": 2, "separated_windows": 0, "unet_evaluations": 0},
        "processed_by": {"engine": "ray", "host": "node1", "node_id": "x", "attempt": 2},
        "flags": {**OLD_MANIFEST["flags"], "truncated_input": True},
        "check": {"rounds": 2, "threshold": 0.5, "confirmed": [], "not_confirmed": ["Bark"],
                  "discovered": [{"label": "Speech", "mid": "/m/09x0r", "score": 0.3, "prompt": "man speaking",
                                  "segments": [[0.0, 1.0]]}], "dropped": ["Speech"]},
        "remix": {"file": "remix.wav", "gains_db": {"Bark": None, "residual": 0.0}, "subtype": "PCM_24",
                  "peak": 0.2, "clipped_samples": 0, "remove": ["Bark"]},
        "video_out": {"file": "remix.mov", "soundtrack": "remix", "audio_codec": "pcm_s16le", "video_streams": 1,
                      "video_packets": 30},
        "written_by_a_later_version": {"kept": True},
    }))
    manifest = Manifest.from_dict(data, tmp_path)
    assert manifest.to_dict() == data
    assert Manifest.from_dict(manifest.to_dict(), tmp_path) == manifest
    assert isinstance(manifest.check, CheckRecord) and manifest.check.discovered[0].label == "Speech"
    assert isinstance(manifest.remix, RemixRecord) and manifest.remix.remove == ["Bark"]
    assert manifest.sources[0].confirmed is False and manifest.extra == {"written_by_a_later_version": {"kept": True}}


def test_write_then_read_gives_the_same_manifest(tmp_path):
    manifest = Manifest.from_dict(OLD_MANIFEST, tmp_path)
    manifest.sources.append(StemReport(name="Dog", file="dog.wav", c_rev="dog", peak=0.1234567))
    manifest.write()
    again = Manifest.read(tmp_path)
    assert again.to_dict() == manifest.to_dict() and again.sources[-1].peak == pytest.approx(0.123457)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe"])
def test_an_unreadable_manifest_marks_nothing_done_and_strict_reading_names_it(tmp_path, content):
    (tmp_path / MANIFEST_NAME).write_bytes(content.encode("latin-1"))
    assert Manifest.read(tmp_path) is None
    with pytest.raises(ManifestError, match=r"manifest\.json: cannot read the manifest .*fix or remove it"):
        Manifest.read(tmp_path, strict=True)
    assert Manifest.read(tmp_path / "absent", strict=True) is None  # none there is no error


def test_malformed_entries_are_skipped_not_fatal(tmp_path):
    data = {**OLD_MANIFEST, "sources": ["junk", {"name": "Bark", "file": "bark.wav"}], "residual": "junk",
            "detections": [None, {"label": "Bark"}], "check": [1], "input": "junk"}
    manifest = Manifest.from_dict(data, tmp_path)
    assert [s.name for s in manifest.sources] == ["Bark"] and manifest.residual is None and manifest.check is None
    assert manifest.detections == [Detection(label="Bark", prompt="Bark")] and manifest.input.path == ""


@pytest.mark.parametrize("given, trusted", [
    ("dog.wav", "dog.wav"), ("../../etc/passwd", "passwd"), ("/abs/path/dog.wav", "dog.wav"),
    ("..\\..\\evil.wav", "evil.wav"), ("C:\\stems\\dog.wav", "dog.wav"), ("", None), (None, None), ("..", None),
])
def test_only_the_bare_file_name_of_a_listed_file_is_trusted(tmp_path, given, trusted):
    assert trusted_file(tmp_path, given) == (None if trusted is None else tmp_path / trusted)


def test_a_manifest_naming_files_outside_its_folder_lists_them_inside_it(tmp_path):
    data = {**OLD_MANIFEST, "sources": [{**OLD_MANIFEST["sources"][0], "file": "../../../bark.wav"}],
            "residual": {"file": "/tmp/residual.wav"}, "remix": {"file": "..\\remix.wav"}}
    manifest = Manifest.from_dict(data, tmp_path)
    assert manifest.files == {"Bark": tmp_path / "bark.wav", "residual": tmp_path / "residual.wav"}
    assert manifest.remix_file == tmp_path / "remix.wav" and manifest.lists("remix.wav")
    manifest.video_out = VideoOutRecord(file="../remix.mov")
    assert manifest.video_file == tmp_path / "remix.mov" and manifest.lists("remix.mov")


@pytest.mark.parametrize("name", [
    "Bark", "bark", "BARK", "  Bark ",  # the source name (the label), any case
    "bark.wav", "BARK.WAV",  # the file name, with or without extension
    "dog barking", "Dog Barking",  # the prompt (c_rev)
    "/m/05tny_", "/M/05TNY_",  # the AudioSet mid
])
def test_find_stem_answers_to_every_name_of_a_stem(tmp_path, name):
    assert Manifest.from_dict(OLD_MANIFEST, tmp_path).find_stem(name) == "Bark"


def test_find_stem_finds_the_residual_and_prefers_source_names_to_other_kinds(tmp_path):
    manifest = Manifest.from_dict(OLD_MANIFEST, tmp_path)
    assert manifest.find_stem("Residual") == manifest.find_stem("residual.wav") == "residual"
    # a label equal to another stem's prompt: the label wins
    manifest.sources[1].name, manifest.sources[1].file = "dog barking", "dog_barking.wav"
    assert manifest.find_stem("dog barking") == "dog barking" and manifest.find_stem("bark") == "Bark"


def test_an_unknown_stem_name_lists_the_valid_names(tmp_path):
    manifest = Manifest.from_dict({**OLD_MANIFEST, "sources": [{**OLD_MANIFEST["sources"][0], "file": "dog.wav"},
                                                               OLD_MANIFEST["sources"][1]]}, tmp_path)
    with pytest.raises(UnknownStemError) as raised:
        manifest.find_stem("violin")
    assert str(raised.value) == (f"{tmp_path}: no stem named 'violin'; valid names: Bark (dog.wav), "
                                 "Speech, residual")
    assert isinstance(raised.value, KeyError)  # a mapping's missing key, for result.stems[name]


def test_remix_finds_stems_the_same_way(tmp_path):
    result = open_result(_folder(tmp_path, OLD_MANIFEST))
    assert [result.find(name).name for name in ("/m/05tny_", "DOG BARKING", "speech", "residual")] == \
        ["Bark", "Bark", "Speech", "residual"]
    with pytest.raises(UnknownStemError, match="valid names: Bark, Speech, residual"):
        result.find("cello")
