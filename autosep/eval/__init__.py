"""``autosep eval``: score separated stems against references, and planned sources against the true ones.

One job per module: :mod:`.metrics` (SI-SDR, SDR, SI-SDRi, Frechet distance, explicit resampling),
:mod:`.clap` (CLAP-A, CLAP-T, CLAP embeddings for FAD, LPAPS), :mod:`.panns` (PANNs embeddings for FAD),
:mod:`.discovery` (precision/recall/F1 of the planned sources through the AudioSet ontology), :mod:`.layout`
(reading estimate and reference folders and pairing their stems), :mod:`.evaluate` (computing every metric for
a set of recordings) and :mod:`.command` (the ``autosep eval`` command line). The metric libraries
(``fast_bss_eval``) are the ``eval`` extra and are imported only when a metric needs them.

Python use::

    from . import EvalSettings, evaluate, pair_recordings, read_estimates, read_references

    pairs, missing, _ = pair_recordings(read_estimates("separated"), read_references("references"))
    report = evaluate(pairs, EvalSettings(match="best"), missing=missing)
    report["overall"]["clap_a"], report["overall"]["fad"]["clap"]["value"]
"""

from .evaluate import EvalSettings, evaluate
from .layout import pair_recordings, read_estimates, read_labels_file, read_references

__all__ = ["EvalSettings", "evaluate", "pair_recordings", "read_estimates", "read_labels_file", "read_references"]
