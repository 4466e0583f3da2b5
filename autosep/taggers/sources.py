"""What a source is, for every stage that names one: the label vocabulary and the one ``Source`` type.

A tagger's column label is an AudioSet mid (``/m/0bt9lr``), an AudioSet display name, or a free-form phrase
marked with ``OPEN_SET_PREFIX`` (an audio-language model's answer, a user's CLAP vocabulary). The planner turns
columns into :class:`Source` objects; a source named by the user (``-s``) or restored from a manifest is the
same type, told apart by ``origin``. Taggers and the planner import from here, never from each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .audioset import Ontology, load_ontology

OPEN_SET_PREFIX = "open:"
ORIGINS = ("tagged", "given", "manifest")  # planned from tags, named by the user (-s), restored from a manifest

Segment = tuple[float, float]

# Scores are written with 4 decimals (manifests, reports), and ranked at that precision, the name breaking ties:
# their last bits change with the thread count, and must never reorder sources whose scores are written equal.
SCORE_DIGITS = 4


def by_score_then_name(score: float | None, name: str) -> tuple[float, str]:
    """The sort key of every ranked list: the highest score first, as written; equal ones by name."""
    return (-round(float(score), SCORE_DIGITS) if score is not None else float("inf"), str(name))


def describe_label(label: str, ontology: Ontology | None = None) -> tuple[str, str | None]:
    """A tagger column label as (display name, AudioSet mid or None): mids become names, ``open:`` phrases lose
    their prefix, unknown labels are returned as they are."""
    if label.startswith(OPEN_SET_PREFIX):
        return label[len(OPEN_SET_PREFIX):], None
    node = (ontology or load_ontology()).lookup(label)
    return (node.name, node.id) if node is not None else (label, None)


@dataclass
class Source:
    """One source to separate: its name, the separator prompt (c_rev) and where it is audible."""

    label: str  # AudioSet display name, the free-form phrase of an open-set source, or the user's prompt
    prompt: str
    segments: list[Segment] = field(default_factory=list)  # seconds, merged, sorted
    mid: str | None = None  # AudioSet mid, None when no class matches
    score: float | None = None  # file-level score (max over windows); None when not tagged
    origin: str = "tagged"  # "tagged" (planned from tags), "given" (-s/--source) or "manifest" (restored)
    # Why the planner made this a source: the classes it holds as (label, mid, score), strongest first, the rule
    # in words, and the time it is active counted by window hops (None: the length of ``segments``).
    classes: list[tuple[str, str | None, float]] = field(default_factory=list)
    why: str = ""
    active: float | None = None

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"Source origin must be one of {', '.join(ORIGINS)}, got {self.origin!r}")

    @classmethod
    def given(cls, prompt: str, duration_s: float) -> "Source":
        """A source the user named: its own prompt, active over the whole recording."""
        return cls(label=prompt, prompt=prompt, segments=[(0.0, float(duration_s))], origin="given")

    @property
    def active_seconds(self) -> float:
        if self.active is not None:
            return float(self.active)
        return float(sum(end - start for start, end in self.segments))

    def rounded_segments(self) -> list[list[float]]:
        return [[round(float(start), 3), round(float(end), 3)] for start, end in self.segments]

    def to_dict(self) -> dict:
        return {
            "label": self.label, "mid": self.mid, "score": None if self.score is None else round(float(self.score), SCORE_DIGITS),
            "prompt": self.prompt, "active_seconds": round(self.active_seconds, 3),
            "segments": self.rounded_segments(), "why": self.why, "classes": self.class_list(),
        }

    def class_list(self) -> list[dict]:
        return [{"label": label, "mid": mid, "score": round(float(score), SCORE_DIGITS)}
                for label, mid, score in self.classes]
