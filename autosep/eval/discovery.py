"""Source discovery: how well the planned sources match the true ones, through the AudioSet ontology.

Rule of this module: a planned source **counts for** a true source when it names

- the same class,
- a descendant of it (more specific is still that source: "Bark" for a true "Dog"), or
- a direct parent of it that is not a heading ("Dog" for a true "Bark", "Speech" for "Male speech").

A **heading** is an abstract ontology node ("Human voice", "Human sounds", "Source-ambiguous sounds") or a
top-level category ("Animal", "Music", "Sounds of things"): it names a branch, not a source, so "Music" never
counts for a true "Cello". Labels outside the ontology (free-form phrases) count only for the same phrase,
ignoring case and punctuation.

Each true source is matched at most once, and each planned source at most once (a maximum one-to-one
assignment that prefers exact matches), so a second planned source for the same true one is a **false
positive**: two stems of one cello are not two discoveries. Precision = TP / planned, recall = TP / true,
F1 their harmonic mean; ``count_correct`` says whether as many sources were planned as there are.
Totals over recordings are micro-averaged (TP, FP and FN summed), with the share of recordings whose count
is right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..taggers.audioset import Ontology, load_ontology
from ..taggers.prompts import clean_phrase, match_audioset_class

EXACT, DESCENDANT, PARENT = 3, 2, 1  # match strengths, the assignment prefers the stronger


@dataclass(frozen=True)
class Label:
    """A source label resolved against the ontology: ``mid`` is None for a phrase no class matches."""

    text: str
    mid: str | None

    def describe(self, ontology: Ontology) -> str:
        """The AudioSet display name, or the phrase for an open-set label."""
        return ontology.nodes[self.mid].name if self.mid in ontology.nodes else self.text

    def phrase(self, ontology: Ontology) -> str:
        """The label as written, for text prompts (CLAP-T, --oracle-sources); a bare mid becomes its name."""
        return self.describe(ontology) if self.text.strip() == self.mid else self.text


def resolve_label(text: str, mid: str | None = None, ontology: Ontology | None = None) -> Label:
    """A label from a manifest (name + mid), a labels file or a stem name (``acoustic_guitar``): a mid or
    display name is looked up directly, other phrases go through autosep's phrase-to-class matching."""
    ontology = ontology or load_ontology()
    if mid and mid in ontology.nodes:
        return Label(text, mid)
    phrase = text.replace("_", " ").strip()
    node = ontology.lookup(text) or ontology.lookup(phrase) or match_audioset_class(phrase, ontology)
    return Label(text, node.id if node is not None else None)


def _phrase(text: str) -> str:
    return clean_phrase(text.replace("_", " "), max_words=32).casefold()


def is_heading(mid: str, ontology: Ontology) -> bool:
    node = ontology.nodes[mid]
    return node.abstract or node.depth == 1


def match_strength(planned: Label, true: Label, ontology: Ontology) -> int:
    """EXACT, DESCENDANT, PARENT, or 0 when ``planned`` does not count for ``true``."""
    if planned.mid is None or true.mid is None:
        return EXACT if _phrase(planned.text) == _phrase(true.text) else 0
    if planned.mid == true.mid:
        return EXACT
    if planned.mid in ontology.descendants(true.mid):
        return DESCENDANT
    if planned.mid in ontology.nodes[true.mid].parents and not is_heading(planned.mid, ontology):
        return PARENT
    return 0


def assign(strength: np.ndarray) -> list[tuple[int, int]]:
    """A maximum one-to-one assignment over a ``[planned, true]`` strength matrix (0 = no match): as many
    matches as possible, then the strongest. Returns (planned index, true index) pairs."""
    if strength.size == 0 or not strength.any():
        return []
    from scipy.optimize import linear_sum_assignment

    # Any match is worth more than every strength difference together, so the count is maximised first.
    weight = np.where(strength > 0, strength + 10 * (EXACT + 1) * max(strength.shape), 0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if strength[r, c] > 0]


@dataclass
class DiscoveryScore:
    planned: list[str]
    true: list[str]
    matches: list[tuple[str, str]] = field(default_factory=list)  # (planned, true) names
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        return _f1(self.tp, self.fp, self.fn)

    @property
    def count_correct(self) -> bool:
        return len(self.planned) == len(self.true)

    def to_dict(self) -> dict:
        return {"planned": self.planned, "true": self.true,
                "matches": [{"planned": p, "true": t} for p, t in self.matches],
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "planned_count": len(self.planned), "true_count": len(self.true),
                "count_correct": self.count_correct}


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None


def score_discovery(planned: Sequence[Label], true: Sequence[Label], ontology: Ontology | None = None
                    ) -> DiscoveryScore:
    """Precision, recall, F1 and count correctness of one recording's planned sources."""
    ontology = ontology or load_ontology()
    strength = np.array([[match_strength(p, t, ontology) for t in true] for p in planned], dtype=int
                        ).reshape(len(planned), len(true))
    pairs = assign(strength)
    score = DiscoveryScore(planned=[p.describe(ontology) for p in planned], true=[t.describe(ontology) for t in true])
    score.matches = [(score.planned[p], score.true[t]) for p, t in pairs]
    score.tp = len(pairs)
    score.fp = len(planned) - score.tp
    score.fn = len(true) - score.tp
    return score


def summarise_discovery(scores: Sequence[DiscoveryScore]) -> dict:
    """Micro-averaged totals over recordings, and the share of recordings with the right source count."""
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("tp", "fp", "fn"))
    return {
        "recordings": len(scores), "tp": tp, "fp": fp, "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": _f1(tp, fp, fn),
        "count_accuracy": sum(s.count_correct for s in scores) / len(scores) if scores else None,
    }
