"""Time-span prompts: ``-s "dog barking@12-18"`` keeps a source to the times given.

A prompt may end in ``@`` and one or more spans, comma separated, in seconds (``12-18``, ``12.5-18``) or clock
time (``0:12-0:18``, ``1:02:03-1:02:09.5``); an open end (``40-``) runs to the end of the recording. The same
prompt given twice has its spans merged; given once without spans it covers the whole recording. Text after an
``@`` that is not a span list stays part of the prompt.

A spanned source is separated only in windows that meet its spans (its segments are the spans), and its stem is
gated to them: exactly zero outside, with a short fade inside each span's edges so the cut never clicks. The
gate is applied to the stem before it is written, and the projected residual is the input minus the stems as
written, so what the gate takes out stays in ``residual`` and stems + residual still add up to the input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SettingsError
from ..taggers.sources import Source

Span = tuple[float, float | None]  # seconds; None: to the end of the recording
GATE_FADE_S = 0.01  # the ramp at each span edge, inside the span

_TIME = r"(?:\d+:){0,2}\d+(?:\.\d*)?"
_SPAN_LIST = re.compile(rf"^\s*{_TIME}\s*-\s*(?:{_TIME})?\s*(?:,\s*{_TIME}\s*-\s*(?:{_TIME})?\s*)*$")


def parse_time(text: str) -> float:
    """``"12"``, ``"12.5"``, ``"0:12"``, ``"1:02:03.5"`` -> seconds."""
    seconds = 0.0
    for part in text.strip().split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def format_time(seconds: float) -> str:
    """Seconds as the shortest plain number (``12``, ``12.5``): the form a span is recorded in."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class SpanPrompt:
    """A prompt and the spans it is kept to (empty: the whole recording)."""

    prompt: str
    spans: tuple[Span, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "SpanPrompt":
        """``"dog barking@12-18,30-"`` -> ``SpanPrompt("dog barking", ((12.0, 18.0), (30.0, None)))``."""
        text = str(text).strip()
        prompt, at, tail = text.rpartition("@")
        if not at or not prompt.strip() or not _SPAN_LIST.match(tail):
            return cls(text)
        spans = []
        for piece in tail.split(","):
            start_text, _, end_text = piece.partition("-")
            start = parse_time(start_text)
            end = parse_time(end_text) if end_text.strip() else None
            if not math.isfinite(start) or end is not None and (not math.isfinite(end) or end <= start):
                raise SettingsError(f"-s {text!r}: the span {piece.strip()!r} ends before it starts; write "
                                    "START-END with END after START, e.g. \"dog barking@12-18\"", "--source")
            spans.append((start, end))
        return cls(prompt.strip(), tuple(spans))

    @property
    def text(self) -> str:
        """The canonical form (``"dog barking@12-18,30-"``), as the request records it."""
        if not self.spans:
            return self.prompt
        return self.prompt + "@" + ",".join(
            f"{format_time(a)}-{'' if b is None else format_time(b)}" for a, b in self.spans)

    def segments(self, duration_s: float) -> list[tuple[float, float]]:
        """The spans clipped to a recording of ``duration_s``, merged and sorted (the whole of it without spans)."""
        if not self.spans:
            return [(0.0, float(duration_s))]
        clipped = sorted((max(0.0, a), min(float(duration_s), duration_s if b is None else b)) for a, b in self.spans)
        merged: list[tuple[float, float]] = []
        for a, b in clipped:
            if b <= a:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged


def given_span_prompts(sources: Iterable[str | SpanPrompt | tuple]) -> tuple[SpanPrompt, ...]:
    """The ``-s`` values as span prompts, one per prompt in the order first given: spans of a repeated prompt
    merged, a repeat without spans making it whole-recording. Accepts strings, :class:`SpanPrompt` and (Python
    API) ``(prompt, [(start, end), ...])`` pairs."""
    merged: dict[str, SpanPrompt] = {}
    for value in sources:
        given = _as_span_prompt(value)
        if not given.prompt:  # an empty -s "" is a mistake to say, not to drop
            raise SettingsError("--source got an empty prompt; give each -s a phrase naming the sound "
                                "(\"dog barking\")", "--source")
        earlier = merged.get(given.prompt)
        if earlier is None:
            merged[given.prompt] = given
        elif earlier.spans and given.spans:
            merged[given.prompt] = SpanPrompt(given.prompt, tuple(dict.fromkeys(earlier.spans + given.spans)))
        else:
            merged[given.prompt] = SpanPrompt(given.prompt)
    if not merged:
        raise SettingsError("--source needs a non-empty prompt", "--source")
    return tuple(merged.values())


def _as_span_prompt(value) -> SpanPrompt:
    if isinstance(value, SpanPrompt):
        return value
    if isinstance(value, str):
        return SpanPrompt.parse(value)
    try:
        prompt, spans = value
        pairs = tuple((float(a), None if b is None else float(b)) for a, b in spans)
    except (TypeError, ValueError):
        raise SettingsError(f"a source must be a prompt or (prompt, [(start, end), ...]), got {value!r}",
                            "--source") from None
    text = SpanPrompt(str(prompt).strip(), pairs).text
    return SpanPrompt.parse(text)  # checked the same way as typed spans


def span_gate(segments: Sequence[tuple[float, float]], start: int, frames: int, rate: int) -> np.ndarray:
    """float32 ``[frames]`` weights from output frame ``start``: 1 inside ``segments``, 0 outside, raised-cosine
    ramps of ``GATE_FADE_S`` just inside each edge (shorter for a short span) so a cut never clicks."""
    gate = np.zeros(frames, dtype=np.float32)
    index = np.arange(start, start + frames, dtype=np.float64)
    for a, b in segments:
        first, last = round(a * rate), round(b * rate)  # the span's frames are [first, last)
        lo, hi = max(first, start), min(last, start + frames)
        if hi <= lo:
            continue
        fade = max(1.0, min(GATE_FADE_S * rate, (last - first) / 2))
        part = index[lo - start:hi - start]
        ramp = np.minimum(np.minimum(part - first + 0.5, last - part - 0.5) / fade, 1.0)
        gate[lo - start:hi - start] = np.sin(0.5 * np.pi * np.clip(ramp, 0.0, 1.0)) ** 2
    return gate


class GatedRenderer:
    """A renderer whose stems ``gates`` names (plan index -> segments in seconds) are gated to those segments
    before they are written; everything else is the wrapped renderer's."""

    def __init__(self, renderer, gates: Mapping[int, Sequence[tuple[float, float]]]):
        self._renderer = renderer
        self.gates = dict(gates)

    def __getattr__(self, name: str):
        return getattr(self._renderer, name)

    def emit(self, start: int, block: np.ndarray, write, sources: int) -> None:
        rate = self._renderer.shape[0]
        block = np.array(block, dtype=np.float32, copy=True)
        for index, segments in self.gates.items():
            block[:, index] *= span_gate(segments, start, len(block), rate).reshape(-1, 1)
        self._renderer.emit(start, block, write, sources)


def gated(renderer, plan: Sequence, spans: Mapping[str, Sequence[Span]]):
    """``renderer`` gating the plan's sources that were given with spans (by prompt) to their segments; the
    renderer itself when none was."""
    gates = {i: source.segments for i, source in enumerate(plan)
             if getattr(source, "origin", None) == "given" and spans.get(source.prompt)}
    return GatedRenderer(renderer, gates) if gates else renderer


def given_plan(prompts: Sequence[str], spans: Mapping[str, Sequence[Span]], duration_s: float) -> list[Source]:
    """The plan of the prompts given (``-s``): each active over its spans clipped to the recording, or over all
    of it. A prompt whose spans all lie past the end gets no segment, so it is never separated (a silent stem)."""
    plan = []
    for prompt in prompts:
        source = Source.given(prompt, duration_s)
        if spans.get(prompt):
            source.segments = SpanPrompt(prompt, tuple(spans[prompt])).segments(duration_s)
        plan.append(source)
    return plan
