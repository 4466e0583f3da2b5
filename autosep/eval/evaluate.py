"""Scoring a set of paired recordings: every metric, per stem pair, per recording and overall.

Rule of this module: each metric receives audio at its own rate, converted here explicitly (SI-SDR/SDR at
``sdr_rate``, 16 kHz by default, the rate autosep's separators and the paper's datasets work at; CLAP at the
rate its feature extractor declares), and the CLAP model is loaded once and run in batches over every stem of
the run. The report is plain JSON-ready data; printing and writing it is the command's job.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np

from ..frames import AudioDecodeError, load_audio
from ..pipeline.manifest import hub_revision, package_versions
from ..taggers.audioset import load_ontology
from .discovery import score_discovery, summarise_discovery
from .layout import RecordingFolder, match_by_labels, match_by_name, match_by_scores, resolve_match_mode
from .metrics import frechet_distance, is_silent, resample, sdr, si_sdr, to_mono

log = logging.getLogger("autosep")

EVAL_VERSION = 1
MATCH_METRICS = ("clap-a", "si-sdr")
PAIR_METRICS = ("si_sdr", "si_sdri", "sdr", "clap_a", "clap_t", "lpaps")


@dataclass
class EvalSettings:
    match: str = "auto"  # auto | labels | name | best
    match_metric: str = "clap-a"  # what --match best maximises
    clap_model: str | None = None  # None: laion/clap-htsat-unfused
    clap: bool = True  # False: no CLAP-A/CLAP-T/FAD/LPAPS (no CLAP model needed)
    device: str = "auto"
    sdr_rate: int = 16000
    batch_size: int = 8

    def validate(self) -> None:
        from .layout import MATCH_MODES, LayoutError

        if self.match not in MATCH_MODES:
            raise LayoutError(f"unknown match mode {self.match!r}; choose one of {', '.join(MATCH_MODES)}")
        if self.match_metric not in MATCH_METRICS:
            raise LayoutError(f"unknown match metric {self.match_metric!r}; choose {' or '.join(MATCH_METRICS)}")
        if self.match == "best" and self.match_metric == "clap-a" and not self.clap:
            raise LayoutError("--match best on CLAP-A needs CLAP; use --match-metric si-sdr with --no-clap")
        if self.sdr_rate < 1000:
            raise LayoutError(f"the SDR rate must be at least 1000 Hz, got {self.sdr_rate}")


@dataclass
class _Audio:
    sdr: np.ndarray  # mono at sdr_rate
    clap: np.ndarray | None  # mono at the CLAP rate


def _versions() -> dict[str, str]:
    versions = package_versions()
    for name in ("fast_bss_eval", "scipy", "soxr"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _mean(values: Sequence[float | None]) -> tuple[float | None, int]:
    defined = [v for v in values if v is not None and math.isfinite(v)]
    return (float(np.mean(defined)) if defined else None, len(defined))


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def evaluate(pairs: Sequence[tuple[RecordingFolder, RecordingFolder]], settings: EvalSettings,
             missing: Sequence[str] = (), scorer=None,
             on_recording: Callable[[str, int, int], None] | None = None) -> dict:
    """Score every (estimates, references) recording pair. ``scorer`` may be a loaded
    :class:`autosep.eval.clap.ClapScorer` (it is loaded here otherwise, unless ``settings.clap`` is False).
    ``missing`` names reference recordings that have no estimates (reported, not scored)."""
    settings.validate()
    ontology = load_ontology()
    if settings.clap and scorer is None:
        from .clap import ClapScorer

        scorer = ClapScorer(settings.clap_model, device=settings.device, batch_size=settings.batch_size)
    warnings: list[str] = [f"{name}: no estimates found for this reference recording" for name in missing]
    unreadable: list[str] = []

    def read(path) -> _Audio | None:
        try:
            recording = load_audio(path)
        except AudioDecodeError as exc:
            warnings.append(str(exc))
            unreadable.append(str(path))
            return None
        mono = to_mono(recording.samples)
        return _Audio(sdr=resample(mono, recording.sample_rate, settings.sdr_rate),
                      clap=scorer.prepare(mono, recording.sample_rate) if scorer is not None else None)

    # Pass 1: decode, match, and gather the pairs; the CLAP work is then batched over the whole run.
    records, jobs = [], []  # jobs: (record index, pair dict, estimate audio, reference audio, text)
    all_estimates, all_references = [], []
    for index, (estimates, references) in enumerate(pairs):
        if on_recording:
            on_recording(references.name, index + 1, len(pairs))
        est_audio = [read(stem.path) for stem in estimates.stems]
        ref_audio = [read(stem.path) for stem in references.stems]
        # The dataset's own mixture first (the one the references belong to), else the input autosep separated.
        mixture_path = references.mixture or estimates.mixture
        mixture = read(mixture_path) if mixture_path is not None else None
        mode = resolve_match_mode(settings.match, estimates)
        usable_e = [i for i, a in enumerate(est_audio) if a is not None]
        usable_r = [j for j, a in enumerate(ref_audio) if a is not None]
        e_stems = [estimates.stems[i] for i in usable_e]
        r_stems = [references.stems[j] for j in usable_r]
        if mode == "labels":
            local = match_by_labels(e_stems, r_stems, ontology)
        elif mode == "name":
            local = match_by_name(e_stems, r_stems)
        else:
            local = match_by_scores(_score_matrix([est_audio[i] for i in usable_e], [ref_audio[j] for j in usable_r],
                                                  settings.match_metric, scorer))
        matched = [(usable_e[a], usable_r[b]) for a, b in local]
        record = {
            "name": references.name, "estimates": str(estimates.folder), "references": str(references.folder),
            "mixture": None if mixture_path is None else str(mixture_path), "match": mode, "pairs": [],
            "unmatched_estimates": [s.name for i, s in enumerate(estimates.stems) if i not in {a for a, _ in matched}],
            "unmatched_references": [s.name for j, s in enumerate(references.stems) if j not in {b for _, b in matched}],
            "discovery": score_discovery(estimates.planned, [s.label for s in references.stems], ontology).to_dict(),
        }
        for i, j in matched:
            e, r = est_audio[i], ref_audio[j]
            pair = {"estimate": estimates.stems[i].name, "reference": references.stems[j].name,
                    "label": references.stems[j].label.describe(ontology),
                    "silent_estimate": is_silent(e.sdr)}
            pair["si_sdr"] = si_sdr(e.sdr, r.sdr)
            pair["sdr"] = sdr(e.sdr, r.sdr)
            mix_si_sdr = si_sdr(mixture.sdr, r.sdr) if mixture is not None else None
            pair["si_sdri"] = None if pair["si_sdr"] is None or mix_si_sdr is None else pair["si_sdr"] - mix_si_sdr
            record["pairs"].append(pair)
            if scorer is not None:
                jobs.append((pair, e, r, references.stems[j].label.describe(ontology)))
        all_estimates.extend(a for a in est_audio if a is not None)
        all_references.extend(a for a in ref_audio if a is not None)
        records.append(record)

    fad = None
    if scorer is not None:
        _clap_metrics(scorer, jobs)
        if len(all_estimates) >= 2 and len(all_references) >= 2:
            result = frechet_distance(scorer.embed_audio([a.clap for a in all_estimates]),
                                      scorer.embed_audio([a.clap for a in all_references]))
            fad = {"value": _round(result.value), "estimates": result.estimates, "references": result.references,
                   "dimensions": result.dimensions, "embedding": "clap", "reliable": result.reliable}
            if result.warning:
                warnings.append(result.warning)
        else:
            warnings.append(f"FAD needs at least 2 estimates and 2 references (got {len(all_estimates)} and "
                            f"{len(all_references)}); not computed")
    for record in records:
        for pair in record["pairs"]:
            for key in PAIR_METRICS:
                pair[key] = _round(pair.get(key))

    all_pairs = [pair for record in records for pair in record["pairs"]]
    overall = {"recordings": len(records), "pairs": len(all_pairs),
               "silent_estimates": sum(p["silent_estimate"] for p in all_pairs)}
    for key in PAIR_METRICS:
        overall[key], overall[f"{key}_n"] = _mean([p.get(key) for p in all_pairs])
        overall[key] = _round(overall[key])
    overall["fad"] = fad
    discovery = [score_discovery(e.planned, [s.label for s in r.stems], ontology) for e, r in pairs]
    overall["discovery"] = summarise_discovery(discovery)
    for record in records:
        record["summary"] = {key: _round(_mean([p.get(key) for p in record["pairs"]])[0]) for key in PAIR_METRICS}
    return {
        "eval_version": EVAL_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "models": {"clap": None if scorer is None else {
            "model_id": scorer.model_id, "revision": hub_revision(scorer.model_id,
                                                                  getattr(scorer.model, "name_or_path", None)),
            "sample_rate": scorer.sample_rate}},
        "rates": {"sdr": settings.sdr_rate, "clap": None if scorer is None else scorer.sample_rate},
        "versions": _versions(),
        "recordings": records,
        "missing_estimates": list(missing),
        "unreadable_files": unreadable,
        "overall": overall,
        "warnings": warnings,
    }


def _clap_metrics(scorer, jobs: list) -> None:
    """CLAP-A, CLAP-T and LPAPS for every matched pair, batched over the run."""
    if not jobs:
        return
    estimates = scorer.embed_audio([e.clap for _, e, _, _ in jobs])
    references = scorer.embed_audio([r.clap for _, _, r, _ in jobs])
    texts = sorted({text for *_, text in jobs})
    text_embeddings = dict(zip(texts, scorer.embed_text(texts)))
    lpaps = scorer.lpaps_many([(e.clap, r.clap) for _, e, r, _ in jobs])
    for k, (pair, _, _, text) in enumerate(jobs):
        pair["clap_a"] = float(estimates[k] @ references[k])
        pair["clap_t"] = float(estimates[k] @ text_embeddings[text])
        pair["lpaps"] = float(lpaps[k])


def _score_matrix(estimates: list[_Audio], references: list[_Audio], metric: str, scorer) -> np.ndarray:
    """``[estimates, references]`` scores for ``--match best`` (NaN where undefined)."""
    if not estimates or not references:
        return np.zeros((len(estimates), len(references)))
    if metric == "clap-a":
        a = scorer.embed_audio([e.clap for e in estimates])
        b = scorer.embed_audio([r.clap for r in references])
        return a @ b.T
    return np.array([[np.nan if (v := si_sdr(e.sdr, r.sdr)) is None else v for r in references] for e in estimates])
