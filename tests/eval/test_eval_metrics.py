"""autosep.eval metrics against independent computations: SI-SDR/SDR by hand at a known SNR, the Frechet
distance's defining properties, source-discovery counts on hand-made plans, and CLAP on a tiny random CLAP
loaded from a saved folder the way a user's download is."""

from __future__ import annotations

import numpy as np
import pytest

from autosep.eval.discovery import resolve_label, score_discovery, summarise_discovery
from autosep.eval.metrics import frechet_distance, resample, sdr, si_sdr, si_sdr_improvement

RATE = 16000


def _reference(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t + 0.3) + 0.05 * rng.standard_normal(len(t))


def _at_snr(reference: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(reference))
    noise -= noise @ reference / (reference @ reference) * reference  # orthogonal: the SNR is exact
    noise *= np.sqrt((reference @ reference) / (noise @ noise) / 10 ** (snr_db / 10))
    return reference + noise


def _si_sdr_by_hand(estimate: np.ndarray, reference: np.ndarray) -> float:
    alpha = estimate @ reference / (reference @ reference)
    target = alpha * reference
    return 10 * np.log10((target @ target) / ((estimate - target) @ (estimate - target)))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_si_sdr_and_sdr_equal_a_known_snr(snr_db):
    reference = _reference()
    estimate = _at_snr(reference, snr_db)
    assert si_sdr(estimate, reference) == pytest.approx(snr_db, abs=0.1)
    assert si_sdr(estimate, reference) == pytest.approx(_si_sdr_by_hand(estimate, reference), abs=0.01)
    # SDR at a known SNR too: the filter can only explain about 512/32000 of white noise.
    assert snr_db <= sdr(estimate, reference) < snr_db + 0.2


def test_sdr_equals_a_least_squares_projection_by_hand():
    # SDR lets a 512-tap filter of the reference explain what it can: by hand, a least-squares projection of
    # the estimate onto 512 delayed copies of the reference.
    reference = _reference(1.0)
    estimate = _at_snr(reference, 6.0)
    delays = np.zeros((RATE, 512))
    for k in range(512):
        delays[k:, k] = reference[:RATE - k]
    projection = delays @ np.linalg.lstsq(delays, estimate, rcond=None)[0]
    by_hand = 10 * np.log10((projection @ projection) / ((estimate - projection) @ (estimate - projection)))
    assert sdr(estimate, reference) == pytest.approx(by_hand, abs=0.05)


def test_si_sdr_ignores_any_gain_on_the_estimate_and_sdr_forgives_a_delay():
    reference = _reference()
    estimate = _at_snr(reference, 12.0)
    assert si_sdr(0.01 * estimate, reference) == pytest.approx(si_sdr(estimate, reference), abs=1e-6)
    assert si_sdr(-3.0 * estimate, reference) == pytest.approx(si_sdr(estimate, reference), abs=1e-6)
    # A short delay is not a scale: SI-SDR punishes it, SDR's distortion filter forgives it.
    delayed = np.concatenate([np.zeros(5), estimate[:-5]])
    assert sdr(delayed, reference) > si_sdr(delayed, reference) + 10


def test_si_sdr_improvement_and_silence():
    reference, other = _reference(seed=0), _reference(seed=5)[::-1].copy()
    mixture = reference + other
    estimate = _at_snr(reference, 20.0)
    expected = _si_sdr_by_hand(estimate, reference) - _si_sdr_by_hand(mixture, reference)
    assert si_sdr_improvement(estimate, reference, mixture) == pytest.approx(expected, abs=0.01)
    assert si_sdr(reference, reference) == pytest.approx(100.0) == sdr(reference, reference)  # capped, not inf
    silent = np.zeros_like(reference)
    assert si_sdr(silent, reference) is None and sdr(reference, silent) is None
    assert si_sdr_improvement(silent, reference, mixture) is None


def test_stereo_is_averaged_and_lengths_are_trimmed():
    reference = _reference()
    estimate = _at_snr(reference, 15.0)
    stereo = np.stack([estimate, estimate], axis=1)
    assert si_sdr(np.concatenate([stereo, stereo[:100]]), reference) == pytest.approx(si_sdr(estimate, reference))


def test_frechet_distance_is_zero_on_itself_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((64, 8))
    itself = frechet_distance(embeddings, embeddings)
    assert itself.value == pytest.approx(0.0, abs=1e-9)
    assert itself.reliable and itself.warning is None
    distances = [frechet_distance(embeddings + shift, embeddings).value for shift in (0.1, 0.5, 1.0)]
    assert distances == sorted(distances) and distances[0] > 0
    # A mean shift d along every axis adds exactly 8 d^2 (the covariances are equal).
    assert distances[2] == pytest.approx(8 * 1.0 ** 2, rel=1e-9)
    # Independent closed form for two diagonal Gaussians: sum (sqrt(var_a) - sqrt(var_b))^2 with equal means.
    a = rng.standard_normal((4000, 3)) * np.array([1.0, 2.0, 0.5])
    b = rng.standard_normal((4000, 3)) * np.array([2.0, 1.0, 0.5])
    assert frechet_distance(a, b).value == pytest.approx(2.0, abs=0.15)


def test_frechet_distance_warns_on_small_sets():
    rng = np.random.default_rng(1)
    small = frechet_distance(rng.standard_normal((5, 16)), rng.standard_normal((7, 16)))
    assert not small.reliable
    assert "5 estimates and 7 references" in small.warning
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(rng.standard_normal((1, 4)), rng.standard_normal((3, 4)))


def test_resampling_is_explicit_and_keeps_content():
    t = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 440 * t)
    up = resample(tone, RATE, 48000)
    assert len(up) == 48000
    expected = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    assert np.max(np.abs(up[1000:-1000] - expected[1000:-1000])) < 1e-3


# -- source discovery ---------------------------------------------------------------------------------------

def _labels(*names):
    return [resolve_label(name) for name in names]


def test_discovery_counts_the_class_a_child_and_a_non_heading_parent(audioset_dir):
    truth = _labels("Dog", "Cello", "Male speech, man speaking")
    score = score_discovery(_labels("Bark", "Cello", "Speech"), truth)  # child, same, non-heading parent
    assert (score.tp, score.fp, score.fn) == (3, 0, 0)
    assert score.precision == score.recall == score.f1 == 1.0 and score.count_correct
    assert ("Bark", "Dog") in score.matches and ("Speech", "Male speech, man speaking") in score.matches


def test_discovery_headings_do_not_count_and_duplicates_are_false_positives(audioset_dir):
    # "Human voice" is an abstract heading above Speech; "Music" is a top-level category above every instrument.
    score = score_discovery(_labels("Human voice", "Music"), _labels("Speech", "Cello"))
    assert (score.tp, score.fp, score.fn) == (0, 2, 2) and score.f1 == 0.0
    duplicate = score_discovery(_labels("Cello", "Cello", "Violin, fiddle"), _labels("Cello", "Dog"))
    assert (duplicate.tp, duplicate.fp, duplicate.fn) == (1, 2, 1)
    assert duplicate.precision == pytest.approx(1 / 3) and duplicate.recall == 0.5
    assert duplicate.f1 == pytest.approx(2 * 1 / (2 * 1 + 2 + 1)) and not duplicate.count_correct


def test_discovery_assignment_maximises_matches_and_reads_stem_names(audioset_dir):
    # "Bark" could serve Dog or (as itself) Bark; the one-to-one assignment must use Dog for "Dog" and
    # Bark for "Bark" rather than give up a match.
    score = score_discovery(_labels("Dog", "Bark"), _labels("Bark", "Dog"))
    assert score.tp == 2
    # Stem names and phrases resolve through the ontology; unknown phrases only match themselves.
    assert resolve_label("acoustic_guitar").mid == resolve_label("Acoustic guitar").mid is not None
    assert resolve_label("dog barking").mid == resolve_label("Bark").mid
    open_set = score_discovery(_labels("zorblax whirr"), _labels("Zorblax whirr"))
    assert open_set.tp == 1
    totals = summarise_discovery([score, open_set, score_discovery(_labels("Cello"), _labels("Dog", "Cat"))])
    assert (totals["tp"], totals["fp"], totals["fn"]) == (3, 1, 2)
    assert totals["count_accuracy"] == pytest.approx(2 / 3)
