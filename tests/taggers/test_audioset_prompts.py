"""AudioSet metadata loading (shipped copies, a folder override, bad files) and the prompt mapping."""

from __future__ import annotations

import pytest

from autosep.taggers import audioset
from autosep.taggers.audioset import AudioSetMetadataError, load_ontology
from autosep.taggers.prompts import (PromptFileError, clean_phrase, load_prompt_overrides, match_audioset_class,
                                     prompt_for)


def test_ontology_structure(audioset_dir):
    ontology = load_ontology()
    assert len(ontology) == 632
    assert len(ontology.class_mids) == 527
    dog = ontology.lookup("/m/0bt9lr")
    assert dog is ontology.lookup("dog") is ontology.lookup("  DOG ")
    assert dog.name == "Dog" and "/m/05tny_" in dog.child_ids
    assert ontology.by_name("Bark").parents == ("/m/0bt9lr",)
    assert ontology.by_name("Animal").depth == 1 and ontology.by_name("Dog").depth == 3
    assert ontology.by_name("Human voice").abstract and ontology.by_name("Natural sounds").blacklisted
    assert ontology.by_name("Animal").id in ontology.ancestors(dog.id)
    assert sum(1 for n in ontology.nodes.values() if len(n.parents) > 1) > 0
    assert ontology.lookup("no such class") is None


def test_audioset_dir_without_the_files_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSEP_AUDIOSET_DIR", str(tmp_path))
    with pytest.raises(AudioSetMetadataError, match="AUTOSEP_AUDIOSET_DIR.*ontology.json"):
        load_ontology()


def test_the_metadata_ships_with_the_package_and_needs_no_download(tmp_path, monkeypatch):
    # Issue 14, item 3: a fresh clone (no AUTOSEP_AUDIOSET_DIR, empty cache, offline) has the ontology.
    monkeypatch.delenv("AUTOSEP_AUDIOSET_DIR", raising=False)
    monkeypatch.setenv("AUTOSEP_CACHE", str(tmp_path / "cache"))
    ontology = load_ontology()
    assert len(ontology) == 632 and len(ontology.class_mids) == 527
    for name in ("ontology.json", "class_labels_indices.csv"):
        assert audioset.metadata_file(name).parent == audioset.PACKAGE_DATA
    assert not (tmp_path / "cache").exists()  # nothing fetched, nothing written
    notice = (audioset.PACKAGE_DATA / "NOTICE").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in notice and "CC BY 4.0" in notice and "Google" in notice
    assert "https://github.com/audioset/ontology" in notice and "class_labels_indices.csv" in notice


def test_a_metadata_folder_override_is_used_and_checked(tmp_path, monkeypatch, audioset_dir):
    monkeypatch.setenv("AUTOSEP_AUDIOSET_DIR", str(tmp_path))
    (tmp_path / "ontology.json").write_bytes((audioset_dir / "ontology.json").read_bytes())
    (tmp_path / "class_labels_indices.csv").write_text("<html>quota exceeded</html>")
    with pytest.raises(AudioSetMetadataError, match="class_labels_indices.csv"):
        load_ontology()
    assert (tmp_path / "class_labels_indices.csv").exists()  # the user's own file is never deleted


def test_prompt_mapping_rule():
    assert prompt_for("Male speech, man speaking") == "man speaking"
    assert prompt_for("Bark") == "dog barking"
    assert prompt_for("Keyboard (musical)") == "keyboard"
    assert prompt_for("Crying, sobbing") == "person crying"  # table entry
    assert prompt_for("Wail, moan") == "wail"  # first part when no -ing part follows
    assert prompt_for("Zither") == "zither"
    assert prompt_for("Bark", overrides={"bark": "yapping"}) == "yapping"


def test_prompt_override_file(tmp_path):
    good = tmp_path / "prompts.txt"
    good.write_text("# my prompts\nBark = a small dog yapping\n/m/01xqw = solo cello  # mid key\n\n")
    overrides = load_prompt_overrides(good)
    assert prompt_for("Bark", "/m/05tny_", overrides) == "a small dog yapping"
    assert prompt_for("Cello", "/m/01xqw", overrides) == "solo cello"
    bad = tmp_path / "bad.txt"
    bad.write_text("Bark is a dog\n")
    with pytest.raises(PromptFileError, match="bad.txt, line 1"):
        load_prompt_overrides(bad)
    with pytest.raises(PromptFileError, match="missing.txt"):
        load_prompt_overrides(tmp_path / "missing.txt")


def test_free_text_maps_to_nearest_audioset_class(audioset_dir):
    ontology = load_ontology()
    name = lambda text: getattr(match_audioset_class(text, ontology), "name", None)  # noqa: E731
    assert name("man speaking") == "Male speech, man speaking"
    assert name("dog barking") == "Bark"
    assert name("Acoustic guitar strumming") == "Acoustic guitar"
    assert name("distant church bells") == "Church bell"
    assert name("the cello") == "Cello"
    assert name("a marimba solo") == "Marimba, xylophone"
    assert name("qwerty zzz") is None
    assert name("") is None


def test_clean_phrase():
    assert clean_phrase('  1. "Dog Barking."  ') == "dog barking"
    assert clean_phrase("- a    violin") == "a violin"
    assert clean_phrase("one two three four five six seven eight nine ten") == "one two three four five six seven eight"
