"""What is on screen: each sampled frame scored against the candidate sources' names by a zero-shot image-text
model (CLIP or SigLIP, loaded once through transformers' ``from_pretrained``), and the times each one is seen.

A score is a probability that the frame shows the named thing, for each name on its own (so adding a candidate
never lowers another's score): SigLIP's own sigmoid where the model has one (it was trained that way), else, for
CLIP, the softmax of the name against a neutral caption (``BACKGROUND``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelNotAvailableError
from ..model_files import load_pretrained, resolve_model_id
from . import DEFAULT_VISUAL_MODEL
from .frames import Frame

CAPTION = "a photo of {}"
BACKGROUND = "a photo of something else"
ON_SCREEN_THRESHOLD = 0.5  # a frame shows a source when its score reaches this
FRAME_BATCH = 16


@dataclass
class OnScreen:
    """Where one source is seen: its per-frame scores and the spans of frames at or above the threshold."""

    name: str
    caption: str
    times: list[float]
    scores: list[float]
    spans: list[tuple[float, float]] = field(default_factory=list)

    @property
    def max_score(self) -> float:
        return max(self.scores, default=0.0)

    def seen_during(self, segments: Sequence[tuple[float, float]]) -> float:
        """The best score among frames inside ``segments`` (0 when none falls there), for evidence that what
        the tagger heard there is what is on screen."""
        inside = [s for t, s in zip(self.times, self.scores) if any(a <= t <= b for a, b in segments)]
        return max(inside, default=0.0)

    def to_dict(self) -> dict:
        return {"name": self.name, "caption": self.caption, "max_score": round(self.max_score, 4),
                "spans": [[round(a, 3), round(b, 3)] for a, b in self.spans],
                "scores": [[round(t, 3), round(s, 4)] for t, s in zip(self.times, self.scores)]}


def seen_spans(times: Sequence[float], scores: Sequence[float], threshold: float, every_s: float,
               duration_s: float) -> list[tuple[float, float]]:
    """Each frame at or above ``threshold`` stands for the ``every_s`` around it; neighbours join into spans."""
    spans: list[tuple[float, float]] = []
    for t, s in zip(times, scores):
        if s < threshold:
            continue
        a, b = max(0.0, t - every_s / 2), min(duration_s, t + every_s / 2)
        if spans and a <= spans[-1][1] + 1e-6:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
    return spans


class VisualScorer:
    """A loaded zero-shot image-text model; :meth:`score` rates frames against names."""

    def __init__(self, model, processor, model_id: str):
        self.model, self.processor, self.model_id = model, processor, model_id
        self.sigmoid = getattr(model, "logit_bias", None) is not None  # SigLIP's pairwise sigmoid loss

    @classmethod
    def from_pretrained(cls, model_id: str | None = None, device: str = "auto") -> "VisualScorer":
        """Load once per run. Raises ModelNotAvailableError with what to do when it cannot be had."""
        from transformers import AutoModel, AutoProcessor

        from ..devices import resolve_device

        model_id = resolve_model_id(model_id, DEFAULT_VISUAL_MODEL)
        why = ("visual model", "clip", "--visual-model", "leave it out with --no-visual")
        model = load_pretrained(AutoModel.from_pretrained, model_id, *why)
        processor = load_pretrained(AutoProcessor.from_pretrained, model_id, *why)
        if not hasattr(model, "get_image_features"):
            raise ModelNotAvailableError(f"visual model {model_id} is not an image-text model (CLIP or SigLIP); "
                                         "pass --visual-model with one, or --no-visual")
        return cls(model.to(resolve_device(device)).eval(), processor, model_id)

    def score(self, frames: Sequence[Frame], names: Sequence[str]) -> np.ndarray:
        """float ``[frames, names]`` in [0, 1]: how surely each frame shows each name."""
        import torch

        if not frames or not names:
            return np.zeros((len(frames), len(names)), dtype=np.float32)
        captions = [CAPTION.format(name) for name in names] + ([] if self.sigmoid else [BACKGROUND])
        device = next(self.model.parameters()).device
        rows = []
        for start in range(0, len(frames), FRAME_BATCH):
            images = [frame.image for frame in frames[start:start + FRAME_BATCH]]
            inputs = self.processor(text=captions, images=images, return_tensors="pt",
                                    padding="max_length" if self.sigmoid else True, truncation=True)
            with torch.no_grad():
                logits = self.model(**inputs.to(device)).logits_per_image.float().cpu()
            if self.sigmoid:
                rows.append(torch.sigmoid(logits))
            else:  # each name against the neutral caption, on its own
                pair = torch.stack([logits[:, :-1], logits[:, -1:].expand_as(logits[:, :-1])], dim=-1)
                rows.append(torch.softmax(pair, dim=-1)[..., 0])
        return torch.cat(rows).numpy()

    def look(self, frames: Sequence[Frame], names: Sequence[str], duration_s: float, every_s: float,
             threshold: float = ON_SCREEN_THRESHOLD) -> list[OnScreen]:
        """Each name's scores over the frames and its on-screen spans."""
        scores = self.score(frames, names)
        times = [frame.time_s for frame in frames]
        return [OnScreen(name, CAPTION.format(name), times, [float(s) for s in scores[:, j]],
                         seen_spans(times, scores[:, j], threshold, every_s, duration_s))
                for j, name in enumerate(names)]

