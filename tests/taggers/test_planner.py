"""plan_sources on hand-written score tables: one test per planner rule."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from autosep.taggers import PlannedSource, plan_sources
from autosep.taggers.audioset import load_ontology

ONE_WINDOW = [(0.0, 10.0)]


@pytest.fixture(autouse=True)
def _metadata(audioset_dir):
    return audioset_dir


def plan(scores: dict[str, float], **options) -> list[PlannedSource]:
    labels = list(scores)
    return plan_sources(np.array([[scores[k] for k in labels]]), labels, ONE_WINDOW, **options)


def labels_of(sources):
    return [s.label for s in sources]


def test_threshold_and_file_level_score_is_max_over_windows():
    probs = np.array([[0.1, 0.2], [0.6, 0.24], [0.3, 0.1]])
    windows = [(0, 10), (5, 15), (10, 20)]
    result = plan_sources(probs, ["Dog", "Cat"], windows, threshold=0.25)
    assert labels_of(result) == ["Dog"]
    assert result[0].score == pytest.approx(0.6)
    assert result[0].segments == [(5.0, 20.0)]  # windows 2 and 3, merged
    assert plan_sources(probs, ["Dog", "Cat"], windows, threshold=0.7) == []


def test_min_active_requires_enough_active_time():
    probs = np.array([[0.9, 0.9], [0.1, 0.9], [0.1, 0.9]])
    windows = [(0, 10), (10, 20), (20, 30)]
    result = plan_sources(probs, ["Dog", "Cat"], windows, min_active=15)
    assert labels_of(result) == ["Cat"]
    assert result[0].active_seconds == pytest.approx(30)
    assert labels_of(plan_sources(probs, ["Dog", "Cat"], windows, min_active=10)) == ["Cat", "Dog"]


def test_mids_and_display_names_are_both_accepted():
    by_mid = plan({"/m/0bt9lr": 0.8})
    by_name = plan({"dog": 0.8})
    assert by_mid[0].mid == by_name[0].mid == "/m/0bt9lr"
    assert by_mid[0].label == "Dog"


def test_non_sources_are_dropped():
    result = plan({
        "Inside, small room": 0.9, "Reverberation": 0.9, "Echo": 0.9, "Static": 0.9, "Mains hum": 0.9, "Television": 0.9,
        "Pop music": 0.9, "Happy music": 0.9, "Background music": 0.9, "Silence": 0.9, "Sound effect": 0.9,
        "Vehicle": 0.5,
    }, max_sources=20)
    assert labels_of(result) == ["Vehicle"]


def test_abstract_and_blacklisted_nodes_are_dropped():
    ontology = load_ontology()
    abstract = [n.name for n in ontology.nodes.values() if n.abstract][:5]
    blacklisted = [n.name for n in ontology.nodes.values() if n.blacklisted][:5]
    assert abstract and blacklisted
    assert plan(dict.fromkeys(abstract + blacklisted, 0.9), hierarchy="none") == []


def test_leaf_keeps_most_specific_class():
    assert labels_of(plan({"Music": 0.9, "Musical instrument": 0.6, "Plucked string instrument": 0.5,
                           "Guitar": 0.4})) == ["Guitar"]
    dog = plan({"Animal": 0.9, "Domestic animals, pets": 0.7, "Dog": 0.8, "Bark": 0.6})
    assert [(s.label, s.prompt) for s in dog] == [("Bark", "dog barking")]


def test_leaf_handles_classes_with_several_parents():
    ontology = load_ontology()
    choir = ontology.by_name("Choir")
    assert len(choir.parents) == 2  # Singing and Musical instrument
    # both parents are ancestors of Choir and must go; Choir itself merges into Singing (a voice source)
    result = plan({"Musical instrument": 0.8, "Choir": 0.7, "Violin, fiddle": 0.6}, max_sources=10)
    assert sorted(labels_of(result)) == ["Singing", "Violin, fiddle"]


def test_hierarchy_none_keeps_all_and_level_collapses():
    scores = {"Music": 0.9, "Musical instrument": 0.6, "Guitar": 0.5, "Dog": 0.7, "Bark": 0.6}
    assert sorted(labels_of(plan(scores, hierarchy="none", max_sources=10))) == sorted(scores)
    level2 = plan(scores, hierarchy="level:2", max_sources=10)
    # Guitar -> Musical instrument (depth 2) and Music is its ancestor; Dog/Bark -> Domestic animals, pets
    assert sorted(labels_of(level2)) == ["Domestic animals, pets", "Musical instrument"]
    assert {s.label: s.score for s in level2}["Domestic animals, pets"] == pytest.approx(0.7)


def test_level_skips_ancestors_that_are_not_sources():
    # Speech's depth-2 ancestor is the abstract "Human voice": the nearest separable class is Speech itself
    assert labels_of(plan({"Male speech, man speaking": 0.8}, hierarchy="level:2")) == ["Speech"]


def test_bad_hierarchy_is_a_value_error():
    with pytest.raises(ValueError, match="level:N"):
        plan({"Dog": 0.9}, hierarchy="deepest")


def test_speech_variants_merge_into_one_speech_source():
    result = plan({"Male speech, man speaking": 0.7, "Female speech, woman speaking": 0.8,
                   "Child speech, kid speaking": 0.5, "Conversation": 0.4, "Narration, monologue": 0.3,
                   "Speech": 0.9}, max_sources=10)
    assert [(s.label, s.prompt) for s in result] == [("Speech", "speech")]
    assert result[0].score == pytest.approx(0.9)


def test_singing_subtree_merges_into_singing_with_union_of_segments():
    probs = np.array([[0.8, 0.1], [0.1, 0.9]])
    result = plan_sources(probs, ["Male singing", "Female singing"], [(0, 10), (10, 20)])
    assert [(s.label, s.prompt) for s in result] == [("Singing", "singing")]
    assert result[0].segments == [(0.0, 20.0)]


def test_prompts_are_natural_and_overridable():
    result = plan({"Male speech, man speaking": 0.9, "Acoustic guitar": 0.8}, hierarchy="none")
    assert {s.label: s.prompt for s in result}["Acoustic guitar"] == "acoustic guitar"
    overridden = plan({"Bark": 0.9}, prompts={"Bark": "a small dog yapping"})
    assert overridden[0].prompt == "a small dog yapping"
    by_mid = plan({"Bark": 0.9}, prompts={"/m/05tny_": "barking"})
    assert by_mid[0].prompt == "barking"


def test_max_sources_keeps_highest_scores_in_order():
    scores = {"Dog": 0.5, "Cat": 0.9, "Car": 0.7, "Piano": 0.6, "Flute": 0.3}
    result = plan(scores, max_sources=3)
    assert labels_of(result) == ["Cat", "Car", "Piano"]
    assert len(plan(scores)) == 4  # default
    assert plan(scores, max_sources=0) == []


def test_include_forces_and_exclude_forbids_by_name_mid_or_prompt():
    scores = {"Dog": 0.9, "Cat": 0.1, "Car": 0.7}
    result = plan(scores, include=["cat"], exclude=["car"])
    assert labels_of(result) == ["Cat", "Dog"]  # forced first
    assert result[0].segments == [(0.0, 10.0)]  # never above threshold: the whole recording
    assert labels_of(plan(scores, exclude=["dog", "/m/0k4j"])) == []  # Dog by its prompt, Car by its mid
    assert labels_of(plan(scores, include=["Cat"], max_sources=1)) == ["Cat"]


def test_exclude_by_prompt_and_mid():
    assert labels_of(plan({"Bark": 0.9, "Meow": 0.8}, exclude=["dog barking"])) == ["Meow"]
    assert labels_of(plan({"Bark": 0.9, "Meow": 0.8}, exclude=["/m/07qrkrw"])) == ["Bark"]


def test_include_of_a_class_not_scored_is_a_forced_source():
    result = plan({"Dog": 0.9}, include=["cello"])
    assert [(s.label, s.mid) for s in result] == [("Cello", "/m/01xqw"), ("Dog", "/m/0bt9lr")]
    free = plan({"Dog": 0.9}, include=["Tibetan throat singing drone"])
    assert free[0].mid is None and free[0].prompt == "tibetan throat singing drone"


def test_unknown_columns_are_ignored_with_a_debug_message(caplog):
    with caplog.at_level(logging.DEBUG, logger="autosep.taggers.planner"):
        result = plan({"Not a class at all": 0.99, "Dog": 0.5})
    assert labels_of(result) == ["Dog"]
    assert "Not a class at all" in caplog.text


def test_nothing_detected_is_an_empty_plan():
    assert plan({"Dog": 0.01, "Speech": 0.1}) == []
    assert plan_sources(np.zeros((0, 2)), ["Dog", "Cat"], []) == []


def test_open_set_phrases_keep_their_prompt_and_map_to_audioset():
    result = plan({"open:acoustic guitar strumming": 1.0, "open:two dogs barking loudly": 1.0,
                   "open:background noise": 1.0, "open:a theremin solo": 1.0, "Guitar": 0.9},
                  max_sources=10)
    by_prompt = {s.prompt: s for s in result}
    assert by_prompt["acoustic guitar strumming"].label == "acoustic guitar strumming"
    assert load_ontology().nodes[by_prompt["acoustic guitar strumming"].mid].name == "Acoustic guitar"
    assert load_ontology().nodes[by_prompt["two dogs barking loudly"].mid].name == "Bark"
    assert "background noise" not in by_prompt  # maps to a non-source class
    assert "guitar" not in by_prompt  # Guitar is an ancestor of the acoustic guitar source
    assert by_prompt["a theremin solo"].mid == load_ontology().by_name("Theremin").id


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="windows, classes"):
        plan_sources(np.zeros((2, 3)), ["Dog", "Cat"], [(0, 1), (1, 2)])


def test_open_set_phrases_merge_like_their_classes():
    alone = plan({"open:man speaking": 1.0})
    assert [(s.prompt, s.mid) for s in alone] == [("man speaking", "/m/09x0r")]  # own words, Speech group
    both = plan({"open:man speaking": 1.0, "open:woman speaking": 0.9})
    assert [(s.label, s.prompt) for s in both] == [("Speech", "speech")]  # two speakers: the group's prompt


def test_nan_scores_count_as_absent():
    assert labels_of(plan({"Dog": float("nan"), "Cat": 0.9})) == ["Cat"]


@pytest.mark.parametrize("names,hierarchy", [
    (("Rattle", "Rattle (instrument)"), "leaf"),  # two leaves in different subtrees, one prompt: "rattle"
    (("Snort", "Snort (horse)"), "leaf"),
    (("Cattle, bovinae", "Moo"), "none"),  # an ancestor kept beside its child, both read "cow mooing"
])
def test_classes_sharing_a_prompt_become_one_source(names, hierarchy):
    # The separator refuses duplicate prompts (and one prompt gives one stem), so a plan never holds two.
    probs = np.array([[0.9, 0.1], [0.1, 0.4]])
    windows = [(0.0, 10.0), (10.0, 20.0)]
    result = plan_sources(probs, list(names), windows, hierarchy=hierarchy)
    assert len(result) == 1
    assert result[0].label == load_ontology().lookup(names[0]).name and result[0].score == pytest.approx(0.9)
    assert result[0].segments == [(0.0, 20.0)]  # the union of both classes' windows
