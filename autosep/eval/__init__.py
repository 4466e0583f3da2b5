"""``autosep eval``: score separated stems against references, and planned sources against the true ones.

One job per module: :mod:`.metrics` (SI-SDR, SDR, SI-SDRi, Frechet distance, explicit resampling),
:mod:`.clap` (CLAP-A, CLAP-T, CLAP embeddings for FAD, LPAPS), :mod:`.discovery` (precision/recall/F1 of the
planned sources through the AudioSet ontology), :mod:`.layout` (reading estimate and reference folders and
pairing their stems), :mod:`.evaluate` (computing every metric for a set of recordings) and :mod:`.command`
(the ``autosep eval`` command line). The metric libraries (``fast_bss_eval``) are the ``eval`` extra and are
imported only when a metric needs them.
"""
