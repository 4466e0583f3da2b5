"""Streamed block tagging: the one path from a recording to its tags and its plan.

``autosep``, ``autosep --dry-run`` and ``autosep tag`` all come here, so the three agree on every file. The
recording is read once, in blocks of about ``TAG_BLOCK_S``; the same pass measures the peak and counts NaN/inf
samples. Each block is extended by (tagger window - hop) so the tagger's windows continue one grid across block
boundaries, as if it had scored the whole file at once. The blocks' score tables are joined by label (an
open-set tagger names different phrases in different blocks; a label a block did not name scores 0 there) into
one ``TagResult`` that carries the tagger's default threshold and window length, which the planner turns into
the presence threshold (``planner.resolve_threshold``, the one place that decides it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..taggers.base import Tagger, TagResult, WindowGrid
from .recording import SILENCE_PEAK, Recording

TAG_BLOCK_S = 60.0  # the tagger sees the recording in blocks this long, so tagging memory stays flat too
TOP_TAGS = 10


@dataclass
class TaggedRecording:
    """What one pass over a recording found: the joined tags (None when nothing was tagged), the plan built from
    them, the loudest sample and how many NaN/inf samples were replaced by silence."""

    result: TagResult | None
    plan: list = field(default_factory=list)
    peak: float = 0.0
    non_finite: int = 0

    @property
    def silent(self) -> bool:
        return self.peak < SILENCE_PEAK

    def top_tags(self, count: int = TOP_TAGS) -> list[dict]:
        """The ``count`` strongest classes, ``{"label", "mid", "max_score"}``, for the manifest and reports."""
        from ..taggers import describe_label
        from ..taggers.sources import SCORE_DIGITS, by_score_then_name

        if self.result is None:
            return []
        entries = [dict(zip(("label", "mid"), describe_label(label)), max_score=round(score, SCORE_DIGITS))
                   for label, score in self.result.top(len(self.result.labels))]
        return sorted(entries, key=lambda e: by_score_then_name(e["max_score"], e["label"]))[:count]


def _join(tagger: Tagger, tagged: list[tuple[float, TagResult]]) -> TagResult:
    labels = list(dict.fromkeys(label for _, r in tagged for label in r.labels))
    column = {label: j for j, label in enumerate(labels)}
    blocks = []
    for _, r in tagged:
        block = np.zeros((len(r.window_times), len(labels)), dtype=np.float32)
        block[:, [column[label] for label in r.labels]] = np.asarray(r.probs, dtype=np.float32).reshape(
            len(r.window_times), len(r.labels))
        blocks.append(block)
    first = tagged[0][1]
    notes = list(dict.fromkeys(note for _, r in tagged for note in (r.notes or [])))
    return TagResult(
        np.concatenate(blocks, axis=0), labels, [(offset + a, offset + b) for offset, r in tagged
                                                 for a, b in r.window_times],
        first.tagger, first.model_id, first.default_threshold, notes,
        window_seconds=first.window_seconds or WindowGrid.of(tagger).window_seconds,
    )


def tag_recording(reader: Recording, tagger: Tagger | None) -> TaggedRecording:
    """One streaming pass over ``reader``: peak, NaN count and, with a ``tagger``, its tags per block, joined."""
    rate = reader.sample_rate
    if tagger is None:
        result = reader.scan(max(1, int(TAG_BLOCK_S * rate)))
        return TaggedRecording(None, [], result.peak, result.non_finite)
    window, hop = WindowGrid.of(tagger).frames(rate)  # the grid the tagger scores on (one place decides it)
    block = max(hop, round(TAG_BLOCK_S * rate / hop) * hop)
    extra = max(0, window - hop)
    tagged: list[tuple[float, TagResult]] = []
    covered = 0  # frames already scored (a block's extension may reach the end of the file)

    def tag_block(start: int, samples: np.ndarray) -> None:
        nonlocal covered
        end = start + len(samples)
        if end <= covered:
            return
        tail = min(extra, reader.frames - end)
        if tail > 0:
            samples = np.concatenate([samples, reader.read(end, tail)])
        covered = end + max(tail, 0)
        tagged.append((start / rate, tagger.tag(samples, rate)))

    result = reader.scan(block, tag_block)
    return TaggedRecording(_join(tagger, tagged) if tagged else None, [], result.peak, result.non_finite)


def plan_recording(reader: Recording, tagger: Tagger, planner: Mapping[str, Any] | None = None) -> TaggedRecording:
    """Tag ``reader`` (``tag_recording``) and plan its sources with ``planner`` (``plan_sources`` keywords; the
    threshold, when None or absent, comes from the tagger). A silent recording has no plan."""
    return plan_tagged(tag_recording(reader, tagger), planner)


def plan_tagged(tagged: TaggedRecording, planner: Mapping[str, Any] | None = None) -> TaggedRecording:
    """``tagged``'s sources planned from its tags with ``planner`` (``plan_sources`` keywords); none when
    nothing was tagged or the recording is silent."""
    from ..taggers.planner import plan_from_result

    if tagged.result is not None and not tagged.silent:
        tagged.plan = list(plan_from_result(tagged.result, **dict(planner or {})))
    return tagged
