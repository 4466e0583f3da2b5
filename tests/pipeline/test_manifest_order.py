"""Deterministic manifests (issue 24): every ranked list is ordered by the score as written (4 decimals), then by
name. Scores that differ only in their last bits, as they do between runs on different thread counts, come out
in the same order whichever way the bits fall."""

from __future__ import annotations

import numpy as np
import pytest

from autosep.pipeline.tagging import TaggedRecording
from autosep.taggers import plan_sources
from autosep.taggers.base import TagResult

ONE_WINDOW = [(0.0, 10.0)]
TIE, NUDGED = 0.61230000, 0.61230004  # written alike (0.6123): the same score to anyone reading the manifest


@pytest.fixture(autouse=True)
def _metadata(audioset_dir):
    return audioset_dir


@pytest.mark.parametrize("cat, dog", [(TIE, NUDGED), (NUDGED, TIE)])
def test_equal_scores_plan_in_name_order_whatever_their_last_bits(cat, dog):
    for labels in (["Dog", "Cat", "Bird"], ["Cat", "Dog", "Bird"]):  # the tagger's column order does not matter
        scores = {"Dog": dog, "Cat": cat, "Bird": 0.9}
        plan = plan_sources(np.array([[scores[k] for k in labels]]), labels, ONE_WINDOW, threshold=0.3)
        assert [s.label for s in plan] == ["Bird", "Cat", "Dog"]
    # Kept to the strongest two: the tie is settled by name, not by the bits.
    plan = plan_sources(np.array([[dog, cat, 0.9]]), ["Dog", "Cat", "Bird"], ONE_WINDOW, threshold=0.3,
                        max_sources=2)
    assert [s.label for s in plan] == ["Bird", "Cat"]


@pytest.mark.parametrize("cat, dog", [(TIE, NUDGED), (NUDGED, TIE)])
def test_equal_top_tags_are_listed_in_name_order_with_their_written_scores(cat, dog):
    for labels, scores in ((["Dog", "Cat", "Bird"], [dog, cat, 0.2]), (["Cat", "Dog", "Bird"], [cat, dog, 0.2])):
        result = TagResult(np.array([scores]), labels, list(ONE_WINDOW), "panns", "", 0.25, window_seconds=10.0)
        top = TaggedRecording(result).top_tags(count=2)
        assert [t["label"] for t in top] == ["Cat", "Dog"]
        assert [t["max_score"] for t in top] == [0.6123, 0.6123]
