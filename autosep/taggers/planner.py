"""From per-window class scores to a short list of distinct, separable sources: ``plan_sources``.

A pure function over a score table, so any AudioSet-labelled tagger fits. The rules, in the order they apply:

1. **Columns.** Each label is an AudioSet mid or display name. A label starting with ``open:`` is a free-form
   phrase (audio-language model output, a user's CLAP vocabulary): it is kept as its own prompt and mapped to
   the nearest AudioSet class, when one matches, for the rules below. Other labels not in the ontology are
   ignored (debug log).
2. **Presence.** A class is active in a window when its probability is at least ``threshold``
   (``DEFAULT_THRESHOLD`` = 0.25 when None; taggers carry their own ``default_threshold``). It is present when
   the union of its active windows lasts at least ``min_active`` seconds (default: any one active window).
   Its file-level score is the maximum over windows: a source that is audible for only part of a long
   recording must not be averaged away.
3. **Not sources.** Dropped: the "Channel, environment and background" subtree (rooms, reverberation, echo,
   noise, static, hum, sound reproduction), music genres, moods and roles, abstract and blacklisted nodes,
   "Silence" and "Sound effect".
4. **Merges.** Classes a text prompt cannot tell apart become one source: male, female and child speech,
   conversation and narration -> Speech; the whole Singing subtree -> Singing.
5. **Hierarchy.** ``"leaf"`` (default) keeps the most specific surviving class and drops every ancestor of it,
   over all parent paths (Music + Plucked string instrument + Guitar -> Guitar); ``"level:N"`` collapses each
   class to its ancestor at depth N (top-level categories are depth 1), skipping ancestors that are not
   sources, then drops ancestors as "leaf" does; ``"none"`` keeps every class.
6. **Choice.** ``exclude`` names are removed; ``include`` names are always kept (their windows, or the whole
   recording when none passes the threshold); the rest fill ``max_sources`` slots by score.

Names in ``include``/``exclude`` match a display name, a mid or a prompt, ignoring case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .audioset import AudioSetNode, Ontology, load_ontology
from .prompts import clean_phrase, match_audioset_class, prompt_for
from .settings import DEFAULT_MAX_SOURCES, PlanningSettings
from .sources import OPEN_SET_PREFIX, Segment, Source

log = logging.getLogger(__name__)

NON_SOURCE_SUBTREES = ("Channel, environment and background", "Music genre", "Music mood", "Music role")
NON_SOURCE_CLASSES = ("Silence", "Sound effect")
# Group name -> members (names) that merge into it; None means "the group's whole subtree".
MERGE_GROUPS: dict[str, tuple[str, ...] | None] = {
    "Speech": (
        "Male speech, man speaking", "Female speech, woman speaking", "Child speech, kid speaking",
        "Conversation", "Narration, monologue",
    ),
    "Singing": None,
}


@dataclass
class _Candidate:
    label: str
    node: AudioSetNode | None
    prompt: str
    score: float
    active: np.ndarray  # bool per window
    forced: bool = False
    open_set: bool = False  # label and prompt are the tagger's or user's own words, kept as they are

    @property
    def key(self) -> str:
        return self.node.id if self.node is not None else OPEN_SET_PREFIX + self.label


def merge_segments(segments: Iterable[Segment]) -> list[Segment]:
    """Union of possibly overlapping intervals, sorted."""
    merged: list[list[float]] = []
    for start, end in sorted((float(s), float(e)) for s, e in segments):
        if merged and start <= merged[-1][1] + 1e-9:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


class _Planner:
    def __init__(self, ontology: Ontology, prompts: Mapping[str, str] | None):
        self.ontology = ontology
        self.prompts = {k.casefold(): v for k, v in (prompts or {}).items()}
        roots = [ontology.lookup(name) for name in NON_SOURCE_SUBTREES]
        self.non_source: set[str] = set()
        for root in roots:
            if root is not None:
                self.non_source |= {root.id} | ontology.descendants(root.id)
        for name in NON_SOURCE_CLASSES:
            node = ontology.lookup(name)
            if node is not None:
                self.non_source.add(node.id)
        self.merge_into: dict[str, str] = {}
        for group, members in MERGE_GROUPS.items():
            root = ontology.lookup(group)
            if root is None:
                continue
            mids = ontology.descendants(root.id) if members is None else {
                n.id for n in (ontology.lookup(m) for m in members) if n is not None
            }
            for mid in mids:
                self.merge_into[mid] = root.id

    def is_source(self, node: AudioSetNode) -> bool:
        return not (node.abstract or node.blacklisted or node.id in self.non_source)

    def prompt(self, node: AudioSetNode) -> str:
        return prompt_for(node.name, node.id, self.prompts)

    def candidate(self, label: str, column: np.ndarray, threshold: float) -> _Candidate | None:
        text = str(label).strip()
        if text.casefold().startswith(OPEN_SET_PREFIX):
            phrase = clean_phrase(text[len(OPEN_SET_PREFIX):])
            if not phrase:
                return None
            node = match_audioset_class(phrase, self.ontology)
            user_prompt = self.prompts.get(phrase.casefold())
            return _Candidate(phrase, node, user_prompt or phrase, float(column.max()), column >= threshold,
                              open_set=True)
        node = self.ontology.lookup(text)
        if node is None:
            log.debug("ignoring score column %r: not an AudioSet mid or class name", text)
            return None
        return _Candidate(node.name, node, self.prompt(node), float(column.max()), column >= threshold)

    def level_target(self, node: AudioSetNode, level: int) -> AudioSetNode:
        if node.depth <= level:
            return node
        best: AudioSetNode | None = None
        for path in self.ontology.paths_from_top(node.id):
            for mid in path[level - 1:]:
                candidate = self.ontology.nodes[mid]
                if self.is_source(candidate):
                    key = (candidate.depth, self.ontology.order(candidate.id))
                    if best is None or key < (best.depth, self.ontology.order(best.id)):
                        best = candidate
                    break
        return best or node


def _matches(candidate: _Candidate, names: set[str]) -> bool:
    keys = {candidate.label.casefold(), candidate.prompt.casefold()}
    if candidate.node is not None:
        keys |= {candidate.node.name.casefold(), candidate.node.id.casefold()}
    return bool(keys & names)


def _combine(into: dict[str, _Candidate], candidate: _Candidate, as_node: AudioSetNode | None, planner: _Planner):
    """Fold ``candidate`` into ``into`` under ``as_node`` (or its own key), keeping the stronger evidence.

    An open-set phrase keeps its own words when it moves to ``as_node``; when two different sources end up
    under one class, the class's own name and prompt describe the merged source.
    """
    if as_node is not None and (candidate.node is None or as_node.id != candidate.node.id):
        if candidate.open_set:
            candidate = replace(candidate, node=as_node)
        else:
            candidate = _Candidate(as_node.name, as_node, planner.prompt(as_node), candidate.score,
                                   candidate.active, candidate.forced)
    existing = into.get(candidate.key)
    if existing is None:
        into[candidate.key] = candidate
        return
    stronger = candidate if candidate.score > existing.score else existing
    merged = replace(stronger, score=max(existing.score, candidate.score), active=existing.active | candidate.active,
                     forced=existing.forced or candidate.forced)
    if existing.prompt != candidate.prompt and stronger.node is not None and (existing.open_set or
                                                                              candidate.open_set):
        merged = replace(merged, label=stronger.node.name, prompt=planner.prompt(stronger.node), open_set=False)
    into[candidate.key] = merged


def plan_sources(
    probs: np.ndarray,
    labels: Sequence[str],
    window_times: Sequence[Segment],
    threshold: float | None = None,
    max_sources: int | None = DEFAULT_MAX_SOURCES,
    min_active: float | None = None,
    hierarchy: str = "leaf",
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    prompts: Mapping[str, str] | None = None,
    ontology: Ontology | None = None,
) -> list[Source]:
    """Plan the sources to separate from a ``[windows, classes]`` probability table (rules: module docstring).

    ``prompts`` overrides the prompt of a class (keys: display names, mids or open-set phrases). Returns the
    plan highest score first (forced ``include`` sources first); an empty list when nothing is detected.
    """
    scores = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0)  # a NaN score is no evidence
    if scores.ndim == 1:
        scores = scores[None, :]
    if scores.ndim != 2 or scores.shape[1] != len(labels) or scores.shape[0] != len(window_times):
        raise ValueError(
            f"probs must be [windows, classes] = [{len(window_times)}, {len(labels)}], got shape {scores.shape}"
        )
    settings = PlanningSettings(threshold, max_sources, min_active, hierarchy, tuple(include), tuple(exclude),
                                prompts).resolved()  # every check and default of these knobs lives there
    mode, level = settings.hierarchy_mode
    threshold, max_sources = settings.threshold, settings.max_sources
    min_active = settings.min_active or 0.0
    include, exclude = settings.include, settings.exclude
    planner = _Planner(ontology or load_ontology(), prompts)
    include_names = {str(n).strip().casefold() for n in include if str(n).strip()}
    exclude_names = {str(n).strip().casefold() for n in exclude if str(n).strip()}
    windows = [(float(s), float(e)) for s, e in window_times]
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        return []

    # 1-2. columns and presence
    present: dict[str, _Candidate] = {}
    for j, label in enumerate(labels):
        candidate = planner.candidate(label, scores[:, j], threshold)
        if candidate is None:
            continue
        candidate.forced = _matches(candidate, include_names)
        if _matches(candidate, exclude_names):
            continue
        active_time = sum(e - s for s, e in merge_segments(w for w, on in zip(windows, candidate.active) if on))
        detected = candidate.active.any() and active_time >= min_active - 1e-9
        if not (detected or candidate.forced):
            continue
        # 3. not a source
        if not candidate.forced and candidate.node is not None and not planner.is_source(candidate.node):
            continue
        if candidate.forced and not candidate.active.any():
            candidate.active = np.ones(len(windows), dtype=bool)  # forced but never passing: whole recording
        _combine(present, candidate, None, planner)

    # include names that match no column at all: forced open-set sources over the whole recording
    for name in include:
        text = str(name).strip()
        if text and not any(_matches(c, {text.casefold()}) for c in present.values()):
            node = planner.ontology.lookup(text)
            label = node.name if node is not None else clean_phrase(text)
            prompt = planner.prompt(node) if node is not None else planner.prompts.get(label.casefold(), label)
            forced = _Candidate(label, node, prompt, 0.0, np.ones(len(windows), dtype=bool), True, node is None)
            _combine(present, forced, None, planner)

    # 4. merges of indistinguishable siblings
    merged: dict[str, _Candidate] = {}
    for candidate in present.values():
        group = planner.merge_into.get(candidate.node.id) if candidate.node is not None else None
        group_node = planner.ontology.nodes[group] if group else None
        if group_node is not None and _matches(
            _Candidate(group_node.name, group_node, planner.prompt(group_node), 0, candidate.active), exclude_names
        ):
            continue
        _combine(merged, candidate, group_node, planner)

    # 5. hierarchy
    if mode == "level":
        collapsed: dict[str, _Candidate] = {}
        for candidate in merged.values():
            target = planner.level_target(candidate.node, level) if candidate.node is not None else None
            _combine(collapsed, candidate, target, planner)
        merged = collapsed
    if mode in ("level", "leaf"):  # after collapsing, an ancestor kept beside its descendant is still a duplicate
        ancestors: set[str] = set()
        for candidate in merged.values():
            if candidate.node is not None:
                ancestors |= planner.ontology.ancestors(candidate.node.id)
        merged = {k: c for k, c in merged.items() if c.forced or c.node is None or c.node.id not in ancestors}

    # Classes that read as one prompt ("Rattle" and "Rattle (instrument)" are both "rattle") are one source to the
    # separator, which refuses duplicate prompts: keep the stronger, active wherever either one is.
    by_prompt: dict[str, _Candidate] = {}
    for candidate in merged.values():
        key = candidate.prompt.strip().casefold()
        existing = by_prompt.get(key)
        if existing is None:
            by_prompt[key] = candidate
            continue
        stronger = candidate if candidate.score > existing.score else existing
        by_prompt[key] = replace(stronger, score=max(existing.score, candidate.score),
                                 active=existing.active | candidate.active,
                                 forced=existing.forced or candidate.forced)
    merged = {c.key: c for c in by_prompt.values()}

    # 6. choice
    ordered = sorted(merged.values(), key=lambda c: (not c.forced, -c.score, c.label))
    if max_sources is not None:
        forced = sum(1 for c in ordered if c.forced)
        ordered = ordered[: max(max_sources, forced)]
    return [
        Source(
            label=c.label, mid=c.node.id if c.node is not None else None, score=c.score, prompt=c.prompt,
            segments=merge_segments(w for w, on in zip(windows, c.active) if on),
        )
        for c in ordered
    ]
