"""Scoring a set of paired recordings: every metric, per stem pair, per recording and overall.

Rule of this module: each metric receives audio at its own rate, converted here explicitly (SI-SDR/SDR at
each reference's own rate by default, as ZeroSep's scripts and mir_eval compute them, or at ``sdr_rate``; CLAP at
the rate its feature extractor declares), and the CLAP model is loaded once and run in batches over every stem
of the run. Without a CLAP model (not cached, offline) the waveform metrics and discovery are still computed and
the report names what was skipped, unless the settings require CLAP. The report is plain JSON-ready data;
printing and writing it is the command's job.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import TYPE_CHECKING

import numpy as np

from ..pipeline.recording import AudioDecodeError, open_audio
from ..pipeline.manifest import hub_revision, package_versions
from ..taggers.audioset import load_ontology
from .discovery import score_discovery, summarise_discovery
from .layout import RecordingFolder, match_by_labels, match_by_name, match_by_scores, resolve_match_mode
from .metrics import frechet_distance, is_silent, resample, sdr, si_sdr, to_mono

if TYPE_CHECKING:  # both import torch and transformers: only when a run needs them
    from .clap import ClapScorer
    from .panns import PannsEmbedder

log = logging.getLogger("autosep")

EVAL_VERSION = 1
MATCH_METRICS = ("clap-a", "si-sdr")
FAD_EMBEDDINGS = ("clap", "panns")
PAIR_METRICS = ("si_sdr", "si_sdri", "sdr", "clap_a", "clap_t", "lpaps")
CLAP_METRICS = ("CLAP-A", "CLAP-T", "FAD (CLAP)", "LPAPS")
# What SDR and SI-SDR are, in the report's words (the BSS Eval variant matters: versions differ by decibels).
METRIC_VARIANTS = {
    "sdr": "BSS Eval v3 SDR (bss_eval_sources, as mir_eval and museval's v3 compute it): one reference per "
           "estimate, a 512-tap time-invariant distortion filter, the whole signal at once (not framewise); "
           "fast_bss_eval's implementation",
    "si_sdr": "SI-SDR (Le Roux et al. 2019), the whole signal at once; fast_bss_eval's implementation",
}


@dataclass
class EvalSettings:
    match: str = "auto"  # auto | labels | name | best
    match_metric: str = "clap-a"  # what --match best maximises
    clap_model: str | None = None  # None: laion/clap-htsat-unfused
    clap: bool = True  # False: no CLAP-A/CLAP-T/FAD/LPAPS (no CLAP model needed)
    device: str = "auto"
    sdr_rate: int | None = None  # None: each reference's own rate (the estimate is resampled to it)
    batch_size: int = 8
    fad_embeddings: tuple[str, ...] | None = None  # "clap", "panns"; None: ("clap",), or none with clap=False
    panns_model: str | None = None  # Cnn14 checkpoint for the PANNs FAD (default: autosep's verified download)
    require_clap: bool = False  # True: a CLAP model that cannot load is an error, not a skipped set of metrics

    @property
    def clap_required(self) -> bool:
        """Whether a CLAP model that cannot load fails the run: asked for (``require_clap``), named
        (``clap_model``, ``fad_embeddings`` with clap), or needed to pair the stems (``--match best`` on CLAP-A)."""
        return (self.require_clap or self.clap_model is not None or "clap" in (self.fad_embeddings or ())
                or (self.match == "best" and self.match_metric == "clap-a"))

    @property
    def fad(self) -> tuple[str, ...]:
        if self.fad_embeddings is None:
            return ("clap",) if self.clap else ()
        return tuple(dict.fromkeys(self.fad_embeddings))

    def validate(self) -> None:
        from .layout import MATCH_MODES, LayoutError

        if self.match not in MATCH_MODES:
            raise LayoutError(f"unknown match mode {self.match!r}; choose one of {', '.join(MATCH_MODES)}")
        if self.match_metric not in MATCH_METRICS:
            raise LayoutError(f"unknown match metric {self.match_metric!r}; choose {' or '.join(MATCH_METRICS)}")
        if self.match == "best" and self.match_metric == "clap-a" and not self.clap:
            raise LayoutError("--match best on CLAP-A needs CLAP; use --match-metric si-sdr with --no-clap")
        unknown = [name for name in self.fad if name not in FAD_EMBEDDINGS]
        if unknown:
            raise LayoutError(f"unknown FAD embedding {unknown[0]!r}; choose from {', '.join(FAD_EMBEDDINGS)}")
        if "clap" in self.fad and not self.clap:
            raise LayoutError("a CLAP FAD needs CLAP: drop --no-clap, or use --fad-embedding panns")
        if self.sdr_rate is not None and self.sdr_rate < 1000:
            raise LayoutError(f"the SDR rate must be at least 1000 Hz, got {self.sdr_rate}")


@dataclass
class _Audio:
    wave: np.ndarray  # mono at the file's rate (SI-SDR and SDR convert it to the pair's rate)
    rate: int
    clap: np.ndarray | None  # mono at the CLAP rate
    panns: np.ndarray | None  # mono at Cnn14's 32 kHz, when a PANNs FAD is asked for

    def at(self, rate: int) -> np.ndarray:
        return resample(self.wave, self.rate, rate)


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
             missing: Sequence[str] = (), scorer: "ClapScorer | None" = None,
             panns: "PannsEmbedder | None" = None,
             on_recording: Callable[[str, int, int], None] | None = None) -> dict:
    """Score every (estimates, references) recording pair. ``scorer`` may be a loaded
    :class:`autosep.eval.clap.ClapScorer` and ``panns`` a loaded :class:`autosep.eval.panns.PannsEmbedder`
    (loaded here otherwise, when the settings need them). ``missing`` names reference recordings that have no
    estimates (reported, not scored).

    In steps: load the models, score each recording (read, embed, match, score the pairs: :class:`_Scoring`),
    the FADs over every embedding, the summaries, the report. Recordings are processed one at a time (each
    one's stems in one batch per model) and only their embeddings are kept for FAD, so memory does not grow
    with the audio of the whole dataset."""
    settings.validate()
    skipped = None
    if settings.clap and scorer is None:
        scorer, skipped = _load_clap(settings)
    if "panns" in settings.fad and panns is None:
        from .panns import PannsEmbedder

        panns = PannsEmbedder(settings.panns_model, device=settings.device, batch_size=settings.batch_size)
    scoring = _Scoring(settings, scorer, panns, load_ontology())
    scoring.warnings.extend(f"{name}: no estimates found for this reference recording" for name in missing)
    records = []
    for index, (estimates, references) in enumerate(pairs):
        if on_recording:
            on_recording(references.name, index + 1, len(pairs))
        records.append(scoring.score(estimates, references))
    fad = scoring.fad()
    for record in records:
        for pair in record["pairs"]:
            for key in PAIR_METRICS:
                pair[key] = _round(pair.get(key))
    overall = _overall(records, pairs, fad, scoring.ontology)
    all_pairs = [pair for record in records for pair in record["pairs"]]
    return {
        "eval_version": EVAL_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {**asdict(settings), "fad_embeddings": list(settings.fad)},
        "models": _models_record(scorer, panns),
        "rates": {"sdr": settings.sdr_rate or sorted({p["sdr_rate"] for p in all_pairs}) or None,
                  "clap": None if scorer is None else scorer.sample_rate,
                  "panns": None if panns is None else panns.sample_rate},
        "variants": METRIC_VARIANTS,
        "skipped": skipped,
        "versions": _versions(),
        "recordings": records,
        "missing_estimates": list(missing),
        "unreadable_files": scoring.unreadable,
        "overall": overall,
        "warnings": scoring.warnings,
    }


class _Scoring:
    """One evaluation run: the models, and what is gathered across recordings (warnings, unreadable files,
    CLAP text embeddings once per label, the embeddings every FAD is computed over)."""

    def __init__(self, settings: EvalSettings, scorer: "ClapScorer | None", panns: "PannsEmbedder | None",
                 ontology):
        self.settings, self.scorer, self.panns, self.ontology = settings, scorer, panns, ontology
        self.embedders = {name: model for name, model in (("clap", scorer), ("panns", panns)) if model is not None}
        self.warnings: list[str] = []
        self.unreadable: list[str] = []
        self.texts: dict[str, np.ndarray] = {}
        self.fad_sets: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
            name: ([], []) for name in settings.fad if name != "clap" or scorer is not None}

    def read(self, path) -> _Audio | None:
        """``path`` as mono audio (and prepared for each embedding); None, with a warning, when unreadable."""
        try:
            with open_audio(path) as recording:
                rate, mono = recording.sample_rate, to_mono(recording.read(0, recording.frames))
        except AudioDecodeError as exc:
            self.warnings.append(str(exc))
            self.unreadable.append(str(path))
            return None
        mono = mono.astype(np.float32)
        return _Audio(wave=mono, rate=rate,
                      clap=self.scorer.prepare(mono, rate) if self.scorer is not None else None,
                      panns=self.panns.prepare(mono, rate) if "panns" in self.fad_sets else None)

    def score(self, estimates: RecordingFolder, references: RecordingFolder) -> dict:
        """One recording's record: read its stems, embed them, match estimates to references, score the pairs."""
        est_audio = [self.read(stem.path) for stem in estimates.stems]
        ref_audio = [self.read(stem.path) for stem in references.stems]
        # The dataset's own mixture first (the one the references belong to), else the input autosep separated.
        mixture_path = references.mixture or estimates.mixture
        mixture = self.read(mixture_path) if mixture_path is not None else None
        usable_e = [i for i, a in enumerate(est_audio) if a is not None]
        usable_r = [j for j, a in enumerate(ref_audio) if a is not None]
        est_embedding, ref_embedding = self._embed(est_audio, ref_audio, usable_e, usable_r)
        mode = resolve_match_mode(self.settings.match, estimates)
        local = self._match(mode, [estimates.stems[i] for i in usable_e], [references.stems[j] for j in usable_r],
                            [est_audio[i] for i in usable_e], [ref_audio[j] for j in usable_r],
                            [est_embedding.get("clap", {}).get(i) for i in usable_e],
                            [ref_embedding.get("clap", {}).get(j) for j in usable_r])
        matched = [(usable_e[a], usable_r[b]) for a, b in local]
        planned, true = estimates.planned, [s.label for s in references.stems]
        return {
            "name": references.name, "estimates": str(estimates.folder), "references": str(references.folder),
            "mixture": None if mixture_path is None else str(mixture_path), "match": mode,
            "pairs": self._pairs(matched, estimates, references, est_audio, ref_audio, mixture, est_embedding,
                                 ref_embedding),
            "unmatched_estimates": [s.name for i, s in enumerate(estimates.stems) if i not in {a for a, _ in matched}],
            "unmatched_references": [s.name for j, s in enumerate(references.stems) if j not in {b for _, b in matched}],
            "discovery": score_discovery(planned, true, self.ontology).to_dict(),
        }

    def _embed(self, est_audio: list, ref_audio: list, usable_e: list[int], usable_r: list[int]
               ) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, dict[int, np.ndarray]]]:
        """Every embedding this recording needs, one batch per model (estimates and references together), by
        model and stem index; the FAD embeddings are kept for the whole run."""
        embedded = {name: _embed(model, name, [est_audio[i] for i in usable_e] + [ref_audio[j] for j in usable_r])
                    for name, model in self.embedders.items() if name == "clap" or name in self.fad_sets}
        est_embedding = {name: dict(zip(usable_e, e[:len(usable_e)])) for name, e in embedded.items()}
        ref_embedding = {name: dict(zip(usable_r, e[len(usable_e):])) for name, e in embedded.items()}
        for name, (fad_estimates, fad_references) in self.fad_sets.items():
            fad_estimates.extend(est_embedding[name].values())
            fad_references.extend(ref_embedding[name].values())
        return est_embedding, ref_embedding

    def _match(self, mode: str, e_stems: list, r_stems: list, e_audio: list[_Audio], r_audio: list[_Audio],
               e_clap: list, r_clap: list) -> list[tuple[int, int]]:
        """(estimate, reference) index pairs among the readable stems, by ``mode`` (layout.py's match modes)."""
        if mode == "labels":
            return match_by_labels(e_stems, r_stems, self.ontology)
        if mode == "name":
            return match_by_name(e_stems, r_stems)
        if self.settings.match_metric == "clap-a":
            scores = [[e @ r for r in r_clap] for e in e_clap]
        else:
            scores = [[np.nan if (v := _si_sdr_pair(e, r, self.settings)) is None else v for r in r_audio]
                      for e in e_audio]
        return match_by_scores(np.array(scores).reshape(len(e_stems), len(r_stems)))

    def _pairs(self, matched: list[tuple[int, int]], estimates: RecordingFolder, references: RecordingFolder,
               est_audio: list, ref_audio: list, mixture: _Audio | None, est_embedding: dict, ref_embedding: dict
               ) -> list[dict]:
        """Every metric of each matched pair (unrounded)."""
        pairs, scorer = [], self.scorer
        for i, j in matched:
            e, r = est_audio[i], ref_audio[j]
            rate = self.settings.sdr_rate or r.rate
            estimate, reference = e.at(rate), r.at(rate)
            pair = {"estimate": estimates.stems[i].name, "reference": references.stems[j].name,
                    "label": references.stems[j].label.describe(self.ontology),
                    "silent_estimate": is_silent(estimate), "sdr_rate": rate}
            pair["si_sdr"] = si_sdr(estimate, reference)
            pair["sdr"] = sdr(estimate, reference)
            mix_si_sdr = si_sdr(mixture.at(rate), reference) if mixture is not None else None
            pair["si_sdri"] = None if pair["si_sdr"] is None or mix_si_sdr is None else pair["si_sdr"] - mix_si_sdr
            if scorer is not None:
                text = references.stems[j].label.phrase(self.ontology)  # CLAP-T's text: the label as written
                if text not in self.texts:
                    self.texts[text] = scorer.embed_text([text])[0]
                pair["text"] = text
                pair["clap_a"] = float(est_embedding["clap"][i] @ ref_embedding["clap"][j])
                pair["clap_t"] = float(est_embedding["clap"][i] @ self.texts[text])
            pairs.append(pair)
        if scorer is not None and matched:
            for pair, value in zip(pairs, scorer.lpaps_many([(est_audio[i].clap, ref_audio[j].clap)
                                                             for i, j in matched])):
                pair["lpaps"] = float(value)
        return pairs

    def fad(self) -> dict:
        """The Fréchet audio distance per embedding over the whole run (where there are enough stems)."""
        fad = {}
        for name, (fad_estimates, fad_references) in self.fad_sets.items():
            if len(fad_estimates) < 2 or len(fad_references) < 2:
                self.warnings.append(f"{name}: FAD needs at least 2 estimates and 2 references (got "
                                     f"{len(fad_estimates)} and {len(fad_references)}); not computed")
                continue
            result = frechet_distance(np.stack(fad_estimates), np.stack(fad_references))
            fad[name] = {"value": _round(result.value), "estimates": result.estimates,
                         "references": result.references, "dimensions": result.dimensions,
                         "reliable": result.reliable}
            if result.warning:
                self.warnings.append(f"{name}: {result.warning}")
        return fad


def _overall(records: list[dict], pairs: Sequence[tuple[RecordingFolder, RecordingFolder]], fad: dict,
             ontology) -> dict:
    """The run's means over every pair (and each recording's, into its record), FAD and discovery."""
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
    return overall


def _models_record(scorer: "ClapScorer | None", panns: "PannsEmbedder | None") -> dict:
    return {
        "clap": None if scorer is None else {
            "model_id": scorer.model_id, "revision": hub_revision(scorer.model_id,
                                                                  getattr(scorer.model, "name_or_path", None)),
            "sample_rate": scorer.sample_rate},
        "panns": None if panns is None else {"model_id": panns.model_id, "sample_rate": panns.sample_rate},
    }


def _load_clap(settings: EvalSettings) -> "tuple[ClapScorer | None, dict | None]":
    """The CLAP scorer, or (when CLAP is not required) ``None`` and what was skipped and why: a model that is
    not cached must not cost the waveform metrics."""
    from ..errors import ModelNotAvailableError
    from .clap import ClapScorer

    try:
        return ClapScorer(settings.clap_model, device=settings.device, batch_size=settings.batch_size), None
    except ModelNotAvailableError as exc:
        if settings.clap_required:
            raise
        log.debug("CLAP not available: %s", exc)
        return None, {"metrics": list(CLAP_METRICS), "reason": str(exc)}


def _si_sdr_pair(estimate: _Audio, reference: _Audio, settings: EvalSettings) -> float | None:
    rate = settings.sdr_rate or reference.rate
    return si_sdr(estimate.at(rate), reference.at(rate))


def _embed(model, name: str, audios: list[_Audio]) -> np.ndarray:
    """Embeddings of ``audios`` at the model's own rate (prepared when read)."""
    if not audios:
        return np.zeros((0, 0))
    return model.embed_audio([getattr(audio, name) for audio in audios])
