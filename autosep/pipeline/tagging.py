"""Tagging a whole recording in one streaming pass, block by block, so memory stays flat however long it is.

The pass also measures the peak level and counts NaN/inf samples (reading the file once for all three). The
tagger sees blocks of about ``TAG_BLOCK_S`` seconds, each extended by (tagger window - hop) so its windows
continue one grid across block boundaries, as if it had scored the whole file at once. Blocks are joined by
label, not position: an open-set tagger (audio-lm) names different phrases in different blocks, and a label a
block did not name scores 0 there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..taggers.base import Tagger, TagResult
from .reading import Recording, ScanResult

TAG_BLOCK_S = 60.0


@dataclass
class TagPass:
    """What one pass over a recording found: its level, and (when a tagger rode along) the joined tags."""

    scan: ScanResult
    tags: TagResult | None = None
    notes: list[str] = field(default_factory=list)  # the tagger's own warnings, once each


def tag_recording(recording: Recording, tagger: Tagger | None) -> TagPass:
    """Scan ``recording`` once, tagging it block by block when ``tagger`` is given."""
    rate = recording.sample_rate
    if tagger is None:
        return TagPass(recording.scan(max(1, int(TAG_BLOCK_S * rate))))
    window_s = float(tagger.window_seconds)
    hop_s = float(tagger.hop_seconds or window_s / 2)
    hop = max(1, round(hop_s * rate))
    window = max(1, round(window_s * rate))
    block = max(hop, round(TAG_BLOCK_S * rate / hop) * hop)
    extra = max(0, window - hop)
    tagged: list[tuple[float, TagResult]] = []
    covered = 0  # frames already scored (a block's extension may reach the end of the file)

    def tag_block(start: int, samples: np.ndarray) -> None:
        nonlocal covered
        end = start + len(samples)
        if end <= covered:
            return
        tail = min(extra, recording.frames - end)
        if tail > 0:
            samples = np.concatenate([samples, recording.read(end, tail)])
        covered = end + max(tail, 0)
        tagged.append((start / rate, tagger.tag(samples, rate)))

    scan = recording.scan(block, tag_block)
    notes = list(dict.fromkeys(note for _, result in tagged for note in result.notes))
    return TagPass(scan, _join(tagged, tagger), notes)


def _join(tagged: list[tuple[float, TagResult]], tagger: Tagger) -> TagResult | None:
    if not tagged:
        return None
    labels = list(dict.fromkeys(label for _, r in tagged for label in r.labels))
    column = {label: j for j, label in enumerate(labels)}
    blocks = []
    for _, r in tagged:
        block = np.zeros((len(r.window_times), len(labels)), dtype=np.float32)
        block[:, [column[label] for label in r.labels]] = np.asarray(r.probs, dtype=np.float32).reshape(
            len(r.window_times), len(r.labels))
        blocks.append(block)
    times = [(offset + a, offset + b) for offset, r in tagged for a, b in r.window_times]
    return TagResult(np.concatenate(blocks, axis=0), labels, times, tagger.name, tagger.model_id,
                     tagger.default_threshold)
