"""The video-aware step between planning and separation (inputs with a video stream only).

1. frames   about one per second, scaled down (``video.frames``)
2. describe each ``--describe`` text is answered by the vision-language model with the sound that object makes;
            the answer becomes a new source's prompt (c_rev), active over the whole recording
3. look     every planned source is scored on screen (``video.onscreen``); its spans and scores go to the
            manifest. A class the tagger heard below the presence threshold (down to ``WEAK_FACTOR`` of it) that
            is seen on screen while it is heard joins the plan, within ``--max-sources``: the picture is extra
            evidence for a sound, never a sound by itself.

The models load on the first video input and are reused for every later one.
"""

from __future__ import annotations

from pathlib import Path

from ..taggers.sources import Source
from ..video.frames import has_video_stream, sample_frames
from ..video.settings import VisualSettings
from .tagging import TaggedRecording

WEAK_FACTOR = 0.5  # a class heard at half the presence threshold can be confirmed by the picture


class VisualEvidence:
    """Holds the loaded visual models of a run; :meth:`apply` adds a video's evidence to its plan."""

    def __init__(self, settings: VisualSettings, device: str = "auto", progress=None, models: dict | None = None):
        self.settings, self.device, self.progress = settings, device, progress
        # The loaded models by role, one dict for this object and every copy sharing_models makes: a model
        # loaded by any of them (on its first video) is loaded for all.
        self._models: dict = {} if models is None else models

    def sharing_models(self, settings: VisualSettings, progress) -> "VisualEvidence":
        """Another run's settings (e.g. its descriptions) with this run's models, loaded or still to load, so a
        server's requests or an evaluation's recordings load each once. The models must be the ones ``settings``
        name."""
        return VisualEvidence(settings, self.device, progress, self._models)

    def scorer(self):
        if "scorer" not in self._models:
            from ..video.onscreen import VisualScorer

            self.progress.stage(f"loading visual model {self.settings.model or 'clip'}")
            self._models["scorer"] = VisualScorer.from_pretrained(self.settings.model, self.device)
        return self._models["scorer"]

    def describer(self):
        if "describer" not in self._models:
            from ..video.describe import Describer

            self.progress.stage(f"loading describe model {self.settings.describe_model or 'smolvlm'}")
            self._models["describer"] = Describer.from_pretrained(self.settings.describe_model, self.device)
        return self._models["describer"]

    def apply(self, path: Path, duration_s: float, planning: TaggedRecording, planner: dict | None,
              warnings: list[str]) -> dict | None:
        """Add ``path``'s visual evidence to ``planning.plan`` (in place) and return the manifest's ``visual``
        record; None when the input has no video or nothing asks to look. ``planner`` (the planner's settings)
        is given for a tagged plan, whose weakly heard classes the picture may confirm."""
        settings = self.settings
        if not settings.active or planning.silent or not has_video_stream(path):
            if settings.describe and not planning.silent:
                warnings.append(f"{path}: has no video stream, so nothing to --describe; no source added for "
                                + ", ".join(repr(d) for d in settings.describe))
            return None
        self.progress.stage("looking at the video")
        frames = sample_frames(path, settings.every_s)
        record: dict = {"frames": len(frames), "every_s": settings.every_s,
                        "frame_times": [frame.time_s for frame in frames]}
        if not frames:
            return record
        described = self._describe(path, frames, duration_s, planning.plan, warnings) if settings.describe else []
        if described:
            record["describe"] = {"model": self.describer().model_id, "sources": described}
        if settings.enabled:
            record.update(self._look(frames, duration_s, planning, planner))
        return record

    def _describe(self, path: Path, frames, duration_s: float, plan: list[Source], warnings: list[str]) -> list:
        describer, entries = self.describer(), []
        for description in self.settings.describe:
            answer, shown = describer.describe(frames, description)
            if not answer:
                warnings.append(f"{path}: the describe model gave no answer for {description!r}; its words are "
                                "used as the prompt")
            prompt = answer or description
            self.progress.stage(f"{description!r} described as {prompt!r}")
            plan.append(Source(label=description, prompt=prompt, segments=[(0.0, float(duration_s))],
                               origin="given", why=f"described on screen: {description!r} -> {prompt!r}"))
            entries.append({"description": description, "answer": answer, "prompt": prompt, "frames_shown": shown})
        return entries

    def _look(self, frames, duration_s: float, planning: TaggedRecording, planner: dict | None) -> dict:
        settings, plan = self.settings, planning.plan
        described = set(settings.describe)
        weak = _weakly_heard(planning, planner, plan) if planner is not None else []
        # what is looked for: a described object by its description, any other source by its prompt
        names = [s.label if s.label in described else s.prompt for s in plan] + [s.prompt for s in weak]
        looks = self.scorer().look(frames, names, duration_s, settings.every_s, settings.threshold)
        kept = list(zip(plan, looks[:len(plan)]))
        limit = (planner or {}).get("max_sources")
        room = len(weak) if limit is None else max(0, limit - len(plan))
        promoted = []
        for source, look in zip(weak, looks[len(plan):]):
            seen = look.seen_during(source.segments)
            if len(promoted) < room and seen >= settings.threshold:
                source.why = (f"heard below the presence threshold (score {source.score:.2f}) and seen on screen "
                              f"while heard (score {seen:.2f})")
                promoted.append((source, look))
        plan.extend(source for source, _ in promoted)
        return {"model": self.scorer().model_id, "threshold": settings.threshold,
                "sources": [{"source": s.label, **look.to_dict()} for s, look in kept + promoted],
                "confirmed_by_picture": [s.label for s, _ in promoted]}


def _weakly_heard(planning: TaggedRecording, planner: dict, plan: list[Source]) -> list[Source]:
    """The sources a plan at ``WEAK_FACTOR`` times the presence threshold holds beyond ``plan``: classes the
    tagger heard, though too faintly to keep on the sound alone."""
    from ..taggers.planner import plan_from_result, resolve_threshold

    result = planning.result
    if result is None:
        return []
    threshold = resolve_threshold(planner.get("threshold"), result.default_threshold, result.window_seconds,
                                  result.window_times)
    looser = plan_from_result(result, **{**planner, "threshold": threshold * WEAK_FACTOR, "max_sources": None})
    have = {s.label for s in plan} | {s.mid for s in plan if s.mid}
    return [s for s in looser if s.label not in have and (s.mid is None or s.mid not in have)]
