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
        "Sine wave": 0.9, "Chirp tone": 0.9, "Pulse": 0.9, "Car": 0.5,
    }, max_sources=20)
    assert labels_of(result) == ["Car"]


def test_abstract_nodes_are_dropped_and_blacklist_means_unrated():
    ontology = load_ontology()
    abstract = [n.name for n in ontology.nodes.values() if n.abstract][:5]
    assert abstract
    assert plan(dict.fromkeys(abstract, 0.9), hierarchy="none") == []
    # "blacklist" marks classes the annotators did not rate, not classes that are no source
    assert ontology.by_name("Engine knocking").blacklisted
    assert labels_of(plan({"Engine knocking": 0.8})) == ["Engine knocking"]
    # ... unless another rule drops it: Harmonic is an "Other sourceless" leaf, Sidetone is sound reproduction
    assert plan({"Harmonic": 0.9, "Sidetone": 0.9}) == []


def test_leaf_keeps_most_specific_class():
    assert labels_of(plan({"Music": 0.9, "Musical instrument": 0.6, "Plucked string instrument": 0.5,
                           "Guitar": 0.4})) == ["Guitar"]
    dog = plan({"Animal": 0.9, "Domestic animals, pets": 0.7, "Dog": 0.8, "Bark": 0.6})
    assert [(s.label, s.prompt) for s in dog] == [("Bark", "dog barking")]
    assert dog[0].score == pytest.approx(0.8)  # the Dog it replaces counts; the headings above do not


def test_leaf_handles_classes_with_several_parents():
    ontology = load_ontology()
    choir = ontology.by_name("Choir")
    assert len(choir.parents) == 2  # Singing and Musical instrument
    # the heading Musical instrument is never a source beside classes below it; Choir is a singing source
    result = plan({"Musical instrument": 0.8, "Choir": 0.7, "Violin, fiddle": 0.6, "Singing": 0.6},
                  max_sources=10)
    assert [(s.label, s.prompt) for s in result] == [("Choir", "choir singing"), ("Violin, fiddle", "violin")]
    assert sorted(c[0] for c in result[0].classes) == ["Choir", "Singing"]


def test_hierarchy_none_keeps_all_and_level_collapses():
    scores = {"Music": 0.9, "Musical instrument": 0.6, "Guitar": 0.5, "Dog": 0.7, "Bark": 0.6}
    assert sorted(labels_of(plan(scores, hierarchy="none", max_sources=10))) == sorted(scores)
    level2 = plan(scores, hierarchy="level:2", max_sources=10)
    # Guitar -> Musical instrument (depth 2) and Music is its ancestor; Dog/Bark -> Domestic animals, pets
    assert sorted(labels_of(level2)) == ["Domestic animals, pets", "Musical instrument"]
    assert {s.label: s.score for s in level2}["Domestic animals, pets"] == pytest.approx(0.7)


def test_depth_counts_source_nodes_only():
    # Human sounds and Human voice are abstract: Speech is at depth 1, its speakers at depth 2
    assert labels_of(plan({"Male speech, man speaking": 0.8}, hierarchy="level:1")) == ["Speech"]
    assert labels_of(plan({"Male speech, man speaking": 0.8}, hierarchy="level:2")) == ["Male speech, man speaking"]
    # Chirp, tweet hangs under Bird vocalization and the abstract "Brief tone": its source depth comes from Bird's
    # line (Animal 1, Wild animals 2, Bird 3, Bird vocalization 4, Chirp 5), not from the shorter abstract path
    assert labels_of(plan({"Chirp, tweet": 0.8}, hierarchy="level:3")) == ["Bird"]


def test_bad_hierarchy_is_a_value_error():
    with pytest.raises(ValueError, match="level:N"):
        plan({"Dog": 0.9}, hierarchy="deepest")


def test_speech_variants_merge_into_one_speech_source():
    result = plan({"Male speech, man speaking": 0.7, "Female speech, woman speaking": 0.8,
                   "Child speech, kid speaking": 0.5, "Conversation": 0.4, "Narration, monologue": 0.3,
                   "Speech": 0.9}, max_sources=10)
    assert [(s.label, s.prompt) for s in result] == [("Speech", "speech")]
    assert result[0].score == pytest.approx(0.9)


def test_singing_subtree_is_one_source_when_its_voices_sound_together():
    probs = np.array([[0.8, 0.1, 0.6], [0.7, 0.9, 0.1]])
    result = plan_sources(probs, ["Male singing", "Female singing", "Mantra"], [(0, 10), (10, 20)])
    assert [(s.label, s.prompt) for s in result] == [("Singing", "singing")]  # Mantra is under Chant, still one
    assert result[0].segments == [(0.0, 20.0)]
    apart = plan_sources(np.array([[0.8, 0.1], [0.1, 0.9]]), ["Male singing", "Female singing"], [(0, 10), (10, 20)])
    assert labels_of(apart) == ["Female singing", "Male singing"]  # never heard together: two singers


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
    assert [(s.prompt, s.mid) for s in alone] == [("man speaking", "/m/05zppz")]  # own words, its class
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


# -- sources from the ontology's shape (issue 10) --------------------------------------------------------------------

def test_sounds_of_one_source_are_one_source_dog_bark_bow_wow():
    dog = plan({"Dog": 0.8, "Bark": 0.7, "Bow-wow": 0.5})
    assert [(s.label, s.prompt) for s in dog] == [("Dog", "dog")]  # two confident sounds side by side: the dog
    assert dog[0].score == pytest.approx(0.8)
    assert [c[0] for c in dog[0].classes] == ["Dog", "Bark", "Bow-wow"]
    assert "one source (Dog)" in dog[0].why
    # the parent need not be scored: siblings active together share it
    assert [(s.label, s.score) for s in plan({"Bark": 0.7, "Bow-wow": 0.6})] == [("Dog", pytest.approx(0.7))]
    assert labels_of(plan({"Meow": 0.6, "Caterwaul": 0.5})) == ["Cat"]
    assert labels_of(plan({"Raindrop": 0.6, "Rain on surface": 0.5, "Rain": 0.4})) == ["Rain"]
    # a weak sound below the confident parent does not name it
    assert [(s.label, s.prompt) for s in plan({"Dog": 0.8, "Bow-wow": 0.3})] == [("Dog", "dog")]


def test_sounds_of_one_source_never_heard_together_stay_apart():
    probs = np.array([[0.8, 0.0], [0.0, 0.7]])
    result = plan_sources(probs, ["Bark", "Bow-wow"], [(0, 10), (10, 20)])
    assert labels_of(result) == ["Bark", "Bow-wow"]


def test_an_ancestor_replaced_by_its_only_source_lends_its_score_bird_chirp():
    bird = plan({"Bird": 0.8, "Chirp, tweet": 0.34, "Cat": 0.5}, max_sources=1)
    assert [(s.label, s.prompt, s.score) for s in bird] == [("Bird", "birds", pytest.approx(0.8))]
    assert "Bird (0.80) joined" in plan({"Bird": 0.8, "Chirp, tweet": 0.34})[0].why
    chirping = plan({"Bird": 0.8, "Chirp, tweet": 0.6})
    assert [(s.label, s.prompt, s.score) for s in chirping] == [("Chirp, tweet", "birds chirping",
                                                                 pytest.approx(0.8))]
    bee = plan({"Bee, wasp, etc.": 1.0, "Buzz": 0.48})
    assert [(s.label, s.prompt, s.score) for s in bee] == [("Bee, wasp, etc.", "bee", pytest.approx(1.0))]


@pytest.mark.parametrize("family,kinds", [
    ("Plucked string instrument", ("Banjo", "Mandolin")),
    ("Bowed string instrument", ("Cello", "Double bass")),
    ("Brass instrument", ("Trumpet", "Trombone")),  # one-source shaped, a family by DISTINCT_KINDS
])
def test_kinds_under_a_family_stay_separate(family, kinds):
    result = plan({family: 0.7, kinds[0]: 0.6, kinds[1]: 0.5})
    assert labels_of(result) == list(kinds)  # the family itself is dropped: the sources below say more
    assert [s.score for s in result] == [pytest.approx(0.6), pytest.approx(0.5)]
    alone = plan({family: 0.7, kinds[0]: 0.5})
    assert [(s.label, s.score) for s in alone] == [(kinds[0], pytest.approx(0.7))]  # its only source: joins it
    assert labels_of(plan({family: 0.7})) == [family]


def test_headings_are_no_source_beside_a_class_below_them():
    assert labels_of(plan({"Music": 0.9, "Guitar": 0.3})) == ["Guitar"]
    assert plan({"Music": 0.9, "Guitar": 0.3})[0].score == pytest.approx(0.3)
    assert labels_of(plan({"Animal": 0.9, "Vehicle": 0.8, "Dog": 0.4, "Car": 0.3}, max_sources=10)) == ["Dog", "Car"]


def test_a_heading_alone_needs_the_higher_bar_and_keeps_a_generic_prompt():
    # threshold 0.25 (odds 1/3): the heading bar has twice the odds, 0.4
    assert plan({"Music": 0.35, "Vehicle": 0.39, "Tools": 0.3}) == []
    result = plan({"Music": 0.7, "Water": 0.6})
    assert [(s.label, s.prompt) for s in result] == [("Music", "music"), ("Water", "running water")]
    assert "heading" in result[0].why
    assert labels_of(plan({"Music": 0.35}, threshold=0.1)) == ["Music"]  # the bar follows the threshold


def test_a_class_with_several_parents_joins_the_one_with_evidence_tiger_growl():
    ontology = load_ontology()
    assert [ontology.nodes[p].name for p in ontology.by_name("Growling").parents][0] == "Dog"  # first in the file
    tiger = plan({"Roaring cats (lions, tigers)": 0.7, "Growling": 0.6})
    assert [(s.label, s.prompt) for s in tiger] == [("Roaring cats (lions, tigers)", "roaring cats")]
    assert [c[0] for c in tiger[0].classes] == ["Roaring cats (lions, tigers)", "Growling"]
    # evidence from a sibling counts too: Roar says "big cat", so the growl is not the dog's
    both = plan_sources(np.array([[0.9, 0.0, 0.0], [0.0, 0.6, 0.5]]), ["Dog", "Roar", "Growling"],
                        [(0, 10), (10, 20)])
    assert [(s.label, [c[0] for c in s.classes]) for s in both] == [("Dog", ["Dog"]),
                                                                   ("Roaring cats (lions, tigers)", ["Roar", "Growling"])]
    assert labels_of(plan({"Growling": 0.6})) == ["Growling"]  # no parent has evidence: it stands alone


def test_default_threshold_comes_from_the_tagger_and_its_window_length():
    from autosep.taggers.planner import presence_threshold

    assert presence_threshold(0.25, 10.0) == pytest.approx(0.25)  # a window is a clip: no change
    assert presence_threshold(0.25, 30.0) == pytest.approx(0.25)  # longer windows are never made laxer
    assert presence_threshold(0.25, 1.0) == pytest.approx(10 / 13)  # odds 1/3 x 10 windows pooled = 10/3
    assert presence_threshold(0.25, 0.5) > presence_threshold(0.25, 1.0) > presence_threshold(0.25, 5.0) > 0.25
    assert presence_threshold(0.25, 1.0, duration=2.0) == pytest.approx(0.4)  # only two windows to pool
    one = np.array([[0.4]])
    assert plan_sources(one, ["Dog"], ONE_WINDOW, default_threshold=0.5) == []
    assert labels_of(plan_sources(one, ["Dog"], ONE_WINDOW)) == ["Dog"]  # DEFAULT_THRESHOLD when unknown
    assert labels_of(plan_sources(one, ["Dog"], ONE_WINDOW, threshold=0.3, default_threshold=0.5)) == ["Dog"]
    # 1 s windows over 20 s, max-pooled: 0.6 passes 0.25 but not the pooled bar of 0.77
    windows = [(i * 0.5, i * 0.5 + 1.0) for i in range(39)]
    probs = np.full((39, 2), 0.05)
    probs[3, 0], probs[4, 1] = 0.6, 0.9
    assert labels_of(plan_sources(probs, ["Dog", "Cat"], windows, window_seconds=1.0)) == ["Cat"]
    assert labels_of(plan_sources(probs, ["Dog", "Cat"], windows, window_seconds=10.0)) == ["Cat", "Dog"]


def test_plan_from_result_uses_what_the_tag_result_carries():
    from autosep.taggers.base import TagResult
    from autosep.taggers.planner import plan_from_result

    result = TagResult(np.array([[0.6, 0.8]]), ["Dog", "Cat"], list(ONE_WINDOW), "clap", "", 0.7,
                       window_seconds=10.0)
    assert labels_of(plan_from_result(result)) == ["Cat"]
    assert labels_of(plan_from_result(result, threshold=0.5)) == ["Cat", "Dog"]


def test_min_active_counts_hops_not_whole_windows():
    windows = [(0, 10), (5, 15), (10, 20), (15, 25)]  # half-window hops over 25 s
    probs = np.array([[0.1], [0.9], [0.1], [0.1]])
    result = plan_sources(probs, ["Dog"], windows)
    assert result[0].active_seconds == pytest.approx(5.0)  # one hop, although its window lasts 10 s
    assert result[0].segments == [(5.0, 15.0)]
    assert plan_sources(probs, ["Dog"], windows, min_active=6) == []
    all_on = plan_sources(np.full((4, 1), 0.9), ["Dog"], windows)
    assert all_on[0].active_seconds == pytest.approx(25.0)  # hops add up to the recording, the last one whole


def test_every_source_says_why_in_its_dict():
    entry = plan({"Dog": 0.8, "Bark": 0.7, "Bow-wow": 0.5, "Piano": 0.6})[0].to_dict()
    assert entry["label"] == "Dog" and "one source" in entry["why"]
    mid = load_ontology().by_name
    assert [(c["label"], c["mid"], c["score"]) for c in entry["classes"]] == [
        ("Dog", mid("Dog").id, 0.8), ("Bark", mid("Bark").id, 0.7), ("Bow-wow", mid("Bow-wow").id, 0.5)]
    single = plan({"Piano": 0.6})[0].to_dict()
    assert single["why"] == "detected class" and [c["label"] for c in single["classes"]] == ["Piano"]


def test_a_weak_kind_beside_a_stronger_kind_of_its_family_is_the_same_sound():
    # the tagger unsure what the guitar is: Ukulele at less than half of Guitar, in the same windows
    result = plan({"Guitar": 0.7, "Ukulele": 0.3, "Zither": 0.32})
    assert [(s.label, s.score) for s in result] == [("Guitar", pytest.approx(0.7))]
    assert "Ukulele (0.30) joined" in result[0].why
    # heard at other times it is a source of its own
    apart = plan_sources(np.array([[0.7, 0.0], [0.0, 0.3]]), ["Guitar", "Ukulele"], [(0, 10), (10, 20)])
    assert labels_of(apart) == ["Guitar", "Ukulele"]
    # different families are never joined this way
    assert labels_of(plan({"Guitar": 0.7, "Flute": 0.3})) == ["Guitar", "Flute"]


# Issue 20: the planner's own defaults on a 1 s grid (as YAMNet's or PANNs' short windows): the per-window bar,
# family evidence and one sound, one source.

SECOND_GRID = [(float(i), float(i + 1)) for i in range(8)]  # eight 1 s windows: the clip-level 0.25 becomes 0.77


def grid_plan(columns: dict[str, list[float]]) -> list[PlannedSource]:
    """``plan_sources(probs, mids, times)`` with nothing else: the planner's own defaults."""
    mid = load_ontology().by_name
    return plan_sources(np.array(list(columns.values())).T, [mid(name).id for name in columns], SECOND_GRID)


def test_the_window_length_comes_from_the_window_times():
    quiet = grid_plan({"Dog": [0.6] * 8})  # passes the clip-level 0.25, not the 1 s windows' 0.77
    assert quiet == []
    assert [s.label for s in grid_plan({"Dog": [0.8] * 8})] == ["Dog"]


def test_a_sound_spread_over_a_parent_and_a_child_is_found_by_family_evidence():
    spread = grid_plan({"Guitar": [0.5] * 4 + [0.0] * 4, "Acoustic guitar": [0.6] * 4 + [0.0] * 4})
    (guitar,) = spread  # each below 0.77 alone; together 1 - 0.5 * 0.4 = 0.8
    assert guitar.label == "Guitar" and guitar.segments == [(0.0, 4.0)]
    assert guitar.score == pytest.approx(0.8)
    assert "family evidence 0.80 (own 0.50 with Acoustic guitar 0.60)" in guitar.why
    assert grid_plan({"Guitar": [0.5] * 8, "Dog": [0.6] * 8}) == []  # unrelated classes lend nothing


def test_an_alias_in_another_branch_co_varying_with_the_source_is_the_same_sound():
    clarinet = [0.95, 0.9, 0.2, 0.92, 0.1, 0.88, 0.3, 0.9]
    horn = [0.8 * p + 0.05 for p in clarinet]  # the tagger's second name for the same notes
    (source,) = grid_plan({"Clarinet": clarinet, "Vehicle horn, car horn, honking": horn})
    assert source.label == "Clarinet"
    assert "Vehicle horn, car horn, honking (0.81) joined: the same sound as Clarinet" in source.why
    assert "r = 1.00 over 8 windows" in source.why
    speech = [0.9, 0.1, 0.95, 0.2, 0.9, 0.85, 0.1, 0.9]  # a real second source does not co-vary
    assert {s.label for s in grid_plan({"Clarinet": clarinet, "Speech": speech})} == {"Clarinet", "Speech"}


def test_two_real_instruments_of_one_family_stay_apart_a_nested_second_name_joins():
    violin = [0.95, 0.9, 0.95, 0.9, 0.1, 0.1, 0.1, 0.1]
    cello = [0.9, 0.85, 0.9, 0.85, 0.1, 0.1, 0.9, 0.85]  # co-varies with the violin, also plays alone
    assert {s.label for s in grid_plan({"Violin, fiddle": violin, "Cello": cello})} == {"Violin, fiddle", "Cello"}
    nested = [0.85, 0.8, 0.85, 0.8, 0.1, 0.1, 0.1, 0.1]  # heard only where the violin is: its second name
    (source,) = grid_plan({"Violin, fiddle": violin, "Cello": nested})
    assert source.label == "Violin, fiddle" and "active only within its windows" in source.why


def test_a_short_table_is_not_judged_by_covariation():
    windows = SECOND_GRID[:3]
    mid = load_ontology().by_name
    plan = plan_sources(np.array([[0.95, 0.9], [0.2, 0.25], [0.9, 0.85]]),
                        [mid("Clarinet").id, mid("Speech").id], windows)
    assert {s.label for s in plan} == {"Clarinet", "Speech"}  # three windows: too few to tell
