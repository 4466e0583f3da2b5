"""Stems checked by the tagger: after separation the same tagger hears each stem and the residual.

Tagging is cheap next to the diffusion passes, and it answers two questions no separator asks itself:

- **Confirm.** A stem's own score is the tagger's best score, over the classes its source holds
  (``PlannedSource.classes``), in the stem; the same score in the mixture is recorded beside it. A stem is
  *confirmed* when its own score reaches the presence threshold the plan used (``planner.resolve_threshold``):
  the tagger finds in the stem, by the rule that found it in the mixture, the source the stem is named after.
  Otherwise it is ``not_confirmed``. With ``drop_unconfirmed`` such a stem is removed and folded into the
  residual, which is written again as the input minus the kept stems as stored, so the files still add up to
  the input exactly (bit for bit with integer PCM). Without a residual (``--render generative``) the stem is
  only removed.
- **Discover.** The residual is planned with the same planner options; a source found there that is not in the
  plan, nor an ancestor or descendant of a planned class, is *discovered* (quiet sources masked by loud ones are
  easier to hear once the loud ones are out). Discoveries are reported; with ``rounds`` > 1 the pipeline
  separates again with the plan augmented by them, up to ``max_sources``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..taggers.base import Tagger, TagResult
from .recording import Recording, open_audio
from .tagging import tag_recording
from .write import StemWriters

CHECK_BLOCK_FRAMES = 1 << 16  # frames per block when the residual is written again


@dataclass
class StemCheck:
    """What the tagger said about one round's stems and residual."""

    threshold: float
    stems: list[dict] = field(default_factory=list)  # per planned source: own score in stem and mixture, verdict
    discovered: list = field(default_factory=list)  # PlannedSource found in the residual only

    @property
    def unconfirmed(self) -> list[int]:
        return [i for i, s in enumerate(self.stems) if not s["confirmed"]]

    def to_dict(self) -> dict[str, Any]:
        from .manifest import detection_entry

        return {"threshold": round(self.threshold, 4),
                "confirmed": [s["name"] for s in self.stems if s["confirmed"]],
                "not_confirmed": [s["name"] for s in self.stems if not s["confirmed"]],
                "discovered": [detection_entry(d) for d in self.discovered]}


def _columns(source) -> list[str]:
    """The score columns that speak for ``source``: its classes' mids, or its open-set phrase."""
    from ..taggers.sources import OPEN_SET_PREFIX

    held = [mid for _, mid, _ in getattr(source, "classes", None) or [] if mid]
    if getattr(source, "mid", None):
        held.append(source.mid)
    if not held:  # an open-set phrase with no AudioSet class
        held = [OPEN_SET_PREFIX + label for label, _, _ in getattr(source, "classes", None) or []]
        held.append(OPEN_SET_PREFIX + source.label)
    return list(dict.fromkeys(held))


def own_score(result: TagResult | None, source) -> float:
    """The tagger's best score, over the classes ``source`` holds, anywhere in ``result`` (0 when none)."""
    if result is None or result.probs.size == 0:
        return 0.0
    from ..taggers.sources import OPEN_SET_PREFIX
    from ..taggers.audioset import load_ontology

    ontology = load_ontology()
    wanted = set(_columns(source))
    best = 0.0
    for j, label in enumerate(result.labels):
        key = label
        if not label.startswith(OPEN_SET_PREFIX):
            node = ontology.lookup(label)
            key = node.id if node is not None else label
        if key in wanted:
            best = max(best, float(np.nan_to_num(result.probs[:, j]).max()))
    return best


def _tag_file(path: Path, tagger: Tagger) -> TagResult | None:
    with open_audio(path) as reader:
        return tag_recording(reader, tagger).result


def check_stems(tagger: Tagger, plan: Sequence, stem_paths: Sequence[Path], residual_path: Path | None,
                mixture: TagResult, planner: Mapping[str, Any] | None = None) -> StemCheck:
    """Tag every stem (and the residual) and compare with the plan; see the module docstring for the rules."""
    from ..taggers.planner import plan_from_result, resolve_threshold

    options = dict(planner or {})
    threshold = resolve_threshold(options.get("threshold"), mixture.default_threshold, mixture.window_seconds,
                                  mixture.window_times)
    check = StemCheck(threshold)
    for source, path in zip(plan, stem_paths):
        in_stem = own_score(_tag_file(path, tagger), source)
        in_mix = own_score(mixture, source)
        check.stems.append({"name": source.label, "score_in_stem": round(in_stem, 4),
                            "score_in_mixture": round(in_mix, 4), "confirmed": bool(in_stem >= threshold)})
    if residual_path is not None:
        residual = _tag_file(residual_path, tagger)
        if residual is not None:
            options.update(max_sources=None, include=())
            found = plan_from_result(residual, **options)
            check.discovered = [s for s in found if _is_new(s, plan)]
    return check


def _is_new(source, plan: Sequence) -> bool:
    """Not in ``plan``: neither the same class or prompt as a planned source, nor its ancestor or descendant."""
    from ..taggers.audioset import load_ontology

    ontology = load_ontology()
    for planned in plan:
        if source.prompt.casefold() == planned.prompt.casefold() or source.label.casefold() == planned.label.casefold():
            return False
        mids = {mid for _, mid, _ in getattr(planned, "classes", None) or [] if mid}
        if planned.mid:
            mids.add(planned.mid)
        ours = {mid for _, mid, _ in source.classes if mid} | ({source.mid} if source.mid else set())
        for mid in ours:
            if mid in ontology.nodes and any(
                    m == mid or m in ontology.ancestors(mid) or mid in ontology.ancestors(m) for m in mids):
                return False
    return True


def fold_into_residual(reader: Recording, kept: Sequence[Path], dropped: Sequence[Path], residual: Path | None,
                       fmt: str, subtype: str, sample_rate: int, channels: int) -> dict | None:
    """Remove the ``dropped`` stems; write ``residual`` again as the input minus the ``kept`` stems as stored.

    Returns the residual's new info (file, peak, clipped samples) or None without a residual. The new residual
    goes to a temporary file renamed over the old one only when complete.
    """
    info = None
    if residual is not None:
        handles = [open_audio(path) for path in kept]
        try:
            with StemWriters([residual], fmt, subtype, sample_rate, channels) as writers:  # removed unless committed
                for start in range(0, reader.frames, CHECK_BLOCK_FRAMES):
                    count = min(CHECK_BLOCK_FRAMES, reader.frames - start)
                    rest = reader.read(start, count).astype(np.float64)
                    for handle in handles:
                        rest -= handle.read(start, count).astype(np.float64)
                    writers.write(0, rest.astype(np.float32))
                writers.commit()
        finally:
            for handle in handles:
                handle.close()
        writer = writers[0]
        info = {"file": residual.name, "peak": round(writer.peak, 6), "clipped_samples": writer.clipped_samples}
    for path in dropped:
        path.unlink(missing_ok=True)
    return info
