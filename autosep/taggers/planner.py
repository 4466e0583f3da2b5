"""From per-window class scores to a short list of distinct, separable sources: ``plan_sources``.

A pure function over a score table, so any AudioSet-labelled tagger fits. Every planned source costs a full
diffusion pass and gives the user a file, so the planner names each sound source once, and only real sources.
The rules, in the order they apply:

1. **Columns.** Each label is an AudioSet mid or display name. A label starting with ``open:`` is a free-form
   phrase (audio-language model output, a user's CLAP vocabulary): it is kept as its own prompt and mapped to
   the nearest AudioSet class, when one matches, for the rules below. Other labels are ignored (debug log).
2. **Presence.** A class is active in a window when its probability is at least the presence threshold, and
   present when its active windows add up to ``min_active`` seconds (default: any one window). Time is counted
   by hops: each window contributes the span from its start to the next window's start (the last one, its whole
   length), so half-overlapping windows are not counted twice. A class's score is its maximum over windows: a
   source audible for only part of a long recording must not be averaged away.
   The threshold, when not given, comes from the tagger (see ``presence_threshold``): ``default_threshold`` is
   its operating point for a decision over one AudioSet clip (``CLIP_SECONDS`` = 10 s); a tagger whose windows
   are shorter max-pools several windows into each clip-length decision and is held to a higher per-window bar.
   The window length, when not given, is read from the window times, so the per-window bar always applies.
   **Family evidence** (``hierarchy="leaf"``): a tagger spreads one sound over classes at different depths
   (Guitar 0.5 and Acoustic guitar 0.6), so per window a non-heading source node's evidence is the noisy-OR of
   its own score and those of the source classes below it, ``1 - prod(1 - p)``, and that is what the threshold
   tests. A class keeps its own score unless it passes by family evidence alone (then the evidence is its score,
   and its "why" says so).
3. **Not sources.** Dropped: the "Channel, environment and background" subtree (rooms, reverberation, echo,
   noise, static, hum, sound reproduction), music genres, moods and roles, the "Other sourceless" leaves (sine
   wave, chirp tone, pulse, sound effect) and "Silence". The ontology's ``blacklist`` restriction means "not
   rated by annotators", not "not a source": blacklisted classes are kept unless a rule here drops them.
4. **Sources, from the ontology's shape** (``hierarchy="leaf"``, the default). Depths count source nodes only
   (abstract nodes such as "Human voice" are skipped, so Speech has depth 1), along a class's longest line of
   them when it has several parents.

   - A *heading* is a node of depth 1 or 2 with two or more levels below it (Music, Musical instrument, Animal,
     Domestic animals, Vehicle, Tools, Water, ...). It says what kind of sound is there, not which source: it is
     never a source when any class below it is present; alone, it is kept only at ``HEADING_ODDS`` times the
     odds of the threshold, with its own generic prompt ("music", "running water").
   - A *one-source node* is a non-heading node whose children are all leaves: the children are the sounds one
     source makes (Dog: Bark, Yip, Howl, Bow-wow, Growling, Whimper; Rain: Raindrop, Rain on surface; Speech:
     its speakers). Two name lists correct the shape where it misleads: "Singing" is one source by rule
     (``ONE_SOURCE``: its Chant sub-family holds voices too), and "Brass instrument" and "Mallet percussion" are
     families (``DISTINCT_KINDS``: Trumpet and Trombone are different instruments, not sounds of one). Present
     members of a one-source node (the node and its children, grouped with it when the node or a sibling is
     present) that are active in a common window form **one source**.
   - A *family* is any other non-heading node with children (Plucked string instrument: Guitar with its own
     children, Banjo, Mandolin; Bowed string instrument: Violin with Pizzicato, Cello, Double bass; Bird): its
     children are distinct sources and stay separate, unless one is too weak to stand beside a stronger kind in
     the same windows (below ``CONFIDENT_FRACTION`` of its score: the tagger unsure what it hears, as Guitar 0.7
     with Ukulele 0.3), which then joins the stronger. A present family with exactly one detected source below
     it joins that source as evidence (Bird 0.8 + Chirp 0.34 is one bird at 0.8); with several below, it is
     dropped (the sources below say more than it does); with none, it is a source itself.
   - A class with several parents (Growling: Dog, Cat, Roaring cats, Canidae) joins the parent with the best
     evidence: the parent's own score, or the best score among its other present children, in the windows where
     the class is active; without any, the class stands alone. A class under several one-source parents names
     a sound, not a source, so the parent it joined names the source (Growling with Roaring cats is "roaring
     cats", not "dog growling").
   - A source's score is the maximum over everything it holds, including a parent it replaces. Its label and
     prompt are those of its deepest *confident* class (score >= ``CONFIDENT_FRACTION`` of the source's score):
     Dog 0.8 + Bark 0.6 is "dog barking", Bee 1.0 + Buzz 0.48 stays "bee"; when several confident classes sit
     side by side (Bark and Bow-wow), the node they share labels the source ("dog").

   - **One sound, one source.** A weaker source whose scores rise and fall with a stronger one's (Pearson's r
     >= ``SAME_SOUND_R`` over a recording of at least ``SAME_SOUND_WINDOWS`` windows) is a second name for the
     same sound and joins it, recorded in its "why". For two sources of one family, the weaker one's active
     windows must also lie within the stronger one's: two real instruments playing together co-vary too, but
     each is heard where the other is not.

   ``"level:N"`` instead collapses each class to its ancestor at depth N (skipping ancestors that are not
   sources) and drops ancestors of kept classes; ``"none"`` keeps every class as it is.
5. **Equal prompts.** Classes that read as one prompt ("Rattle" and "Rattle (instrument)") are one source to the
   separator, which refuses duplicate prompts: the stronger is kept, active wherever either one is.
6. **Choice.** ``exclude`` names are removed (a source is excluded by any class it holds or its one-source
   node); ``include`` names are always kept, labelled as named (their windows, or the whole recording when none
   passes the threshold); the rest fill ``max_sources`` slots by score.

Every planned source says why it is there (``PlannedSource.why`` and ``classes``: the classes it holds and their
scores). Names in ``include``/``exclude`` match a display name, a mid or a prompt, ignoring case.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .audioset import AudioSetNode, Ontology, load_ontology
from .prompts import clean_phrase, match_audioset_class, prompt_for
from .settings import DEFAULT_MAX_SOURCES, DEFAULT_THRESHOLD, parse_hierarchy
from .sources import OPEN_SET_PREFIX, Segment, Source, by_score_then_name

PlannedSource = Source  # the planner's output is the one Source type (origin "tagged")

log = logging.getLogger(__name__)

CLIP_SECONDS = 10.0  # the AudioSet clip: the span a tagger's default threshold is a decision over
CONFIDENT_FRACTION = 0.5  # a class names its source when it scores at least this share of the source's score
HEADING_ODDS = 2.0  # a heading alone needs this many times the odds of the presence threshold
SAME_SOUND_R = 0.5  # two sources whose scores co-vary at least this much (Pearson's r) are one sound ...
SAME_SOUND_WINDOWS = 4  # ... over at least this many windows

NON_SOURCE_SUBTREES = ("Channel, environment and background", "Music genre", "Music mood", "Music role",
                       "Other sourceless")
NON_SOURCE_CLASSES = ("Silence",)
# Where the shape rule misreads the ontology, by name: a subtree that is one source although it has sub-families
# (Chant -> Mantra are voices too), and one-source-shaped nodes whose children are different instruments.
ONE_SOURCE = ("Singing",)
DISTINCT_KINDS = ("Brass instrument", "Mallet percussion")



@dataclass
class _Candidate:
    label: str
    node: AudioSetNode | None
    prompt: str
    score: float
    active: np.ndarray  # bool per window
    forced: bool = False
    open_set: bool = False  # label and prompt are the tagger's or user's own words, kept as they are
    column: np.ndarray | None = None  # its score per window
    note: str = ""  # how its evidence was gathered, when it is more than its own column (family evidence)

    @property
    def key(self) -> str:
        return self.node.id if self.node is not None else OPEN_SET_PREFIX + self.label


@dataclass
class _Source:
    """A source under construction: the candidates it holds and the node that makes them one."""

    members: list[_Candidate]
    root: AudioSetNode | None  # the one-source node, or the member itself
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return max(m.score for m in self.members)

    @property
    def active(self) -> np.ndarray:
        return np.logical_or.reduce([m.active for m in self.members])

    @property
    def forced(self) -> bool:
        return any(m.forced for m in self.members)

    def mids(self) -> set[str]:
        return {m.node.id for m in self.members if m.node is not None}


def merge_segments(segments: Iterable[Segment]) -> list[Segment]:
    """Union of possibly overlapping intervals, sorted."""
    merged: list[list[float]] = []
    for start, end in sorted((float(s), float(e)) for s, e in segments):
        if merged and start <= merged[-1][1] + 1e-9:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def hop_spans(window_times: Sequence[Segment]) -> np.ndarray:
    """Seconds each window contributes when time is counted by hops: from its start to the next window's start
    (the last window, and any window not overlapped by the next, its whole length)."""
    starts = np.array([float(s) for s, _ in window_times], dtype=np.float64)
    ends = np.array([float(e) for _, e in window_times], dtype=np.float64)
    order = np.argsort(starts, kind="stable")
    spans = np.empty(len(starts), dtype=np.float64)
    for rank, i in enumerate(order):
        end = ends[i]
        if rank + 1 < len(order):
            end = min(end, starts[order[rank + 1]])
        spans[i] = max(0.0, end - starts[i])
    return spans


def presence_threshold(clip_threshold: float, window_seconds: float | None, duration: float | None = None,
                       clip_seconds: float = CLIP_SECONDS) -> float:
    """The per-window threshold that keeps ``clip_threshold``'s operating point when windows are max-pooled.

    A clip-level decision over ``clip_seconds`` (or the whole recording, when shorter) made from windows of
    ``window_seconds`` pools ``n = span / window_seconds`` windows (never fewer than one). Any one of them
    passing makes the class present, so on a sound that is not there the chance of a false presence grows about
    n times. Modelling the tail of a sigmoid score as logistic, that chance is proportional to the odds of the
    threshold, so the threshold's odds are multiplied by n: ``t_n = n*o / (1 + n*o)`` with ``o = t / (1 - t)``.
    Windows of a clip or longer (PANNs, AST, CLAP at 10 s; the audio-LM at 30 s) keep their threshold; 1 s
    windows turn 0.25 into 0.77.
    """
    t = float(clip_threshold)
    if not window_seconds or window_seconds <= 0 or t <= 0 or t >= 1:
        return t
    span = clip_seconds if duration is None else min(clip_seconds, float(duration))
    pooled = max(1.0, span / float(window_seconds))
    odds = t / (1 - t) * pooled
    return float(odds / (1 + odds))


def _scaled_odds(threshold: float, factor: float) -> float:
    """``threshold`` with its odds multiplied by ``factor`` (0 and 1 stay as they are)."""
    if threshold <= 0 or threshold >= 1:
        return float(threshold)
    odds = threshold / (1 - threshold) * factor
    return float(odds / (1 + odds))


def resolve_threshold(threshold: float | None, default_threshold: float | None = None,
                      window_seconds: float | None = None, window_times: Sequence[Segment] = ()) -> float:
    """The presence threshold a plan uses, decided in this one place.

    An explicit ``threshold`` is a per-window probability and is used as it is. Otherwise the tagger's clip-level
    ``default_threshold`` (``DEFAULT_THRESHOLD`` when unknown) is adjusted for its window length with
    ``presence_threshold``; a window length not given is read from the window times (``window_length``), so a
    table planned without its tagger is held to the same per-window bar.
    """
    if threshold is not None:
        return float(threshold)
    base = DEFAULT_THRESHOLD if default_threshold is None else float(default_threshold)
    duration = None
    if window_times:
        duration = max(float(e) for _, e in window_times) - min(float(s) for s, _ in window_times)
    if not window_seconds:
        window_seconds = window_length(window_times)
    return presence_threshold(base, window_seconds, duration)


def window_length(window_times: Sequence[Segment]) -> float | None:
    """The tagger's window length as its window times show it: the longest window (the last one and a recording
    shorter than one window are cut at the end of the recording, so they are never longer). None: no windows."""
    lengths = [float(e) - float(s) for s, e in window_times]
    return max(lengths) if lengths and max(lengths) > 0 else None


class _Shape:
    """Facts about the ontology the planner's rules read, computed once per loaded ontology."""

    def __init__(self, ontology: Ontology):
        self.ontology = ontology
        self.non_source: set[str] = set()
        for name in NON_SOURCE_SUBTREES:
            root = ontology.lookup(name)
            if root is not None:
                self.non_source |= {root.id} | ontology.descendants(root.id)
        for name in NON_SOURCE_CLASSES:
            node = ontology.lookup(name)
            if node is not None:
                self.non_source.add(node.id)
        self.one_source = {n.id for n in (ontology.lookup(name) for name in ONE_SOURCE) if n is not None}
        self.distinct = {n.id for n in (ontology.lookup(name) for name in DISTINCT_KINDS) if n is not None}
        self.height: dict[str, int] = {}
        for mid in ontology.nodes:
            self._height(mid)
        self.depth: dict[str, int] = {}
        for mid in ontology.nodes:
            self.depth[mid] = max(sum(1 for m in path if not ontology.nodes[m].abstract)
                                  for path in ontology.paths_from_top(mid))

    def _height(self, mid: str) -> int:
        if mid not in self.height:
            children = [c for c in self.ontology.nodes[mid].child_ids if c in self.ontology.nodes]
            self.height[mid] = 1 + max(self._height(c) for c in children) if children else 0
        return self.height[mid]

    def is_source(self, node: AudioSetNode) -> bool:
        return not (node.abstract or node.id in self.non_source)

    def is_heading(self, node: AudioSetNode) -> bool:
        return node.id not in self.one_source and self.depth[node.id] <= 2 and self.height[node.id] >= 2

    def is_one_source(self, node: AudioSetNode) -> bool:
        return node.id in self.one_source or (self.height[node.id] == 1 and not self.is_heading(node)
                                              and node.id not in self.distinct)

    def is_family(self, node: AudioSetNode) -> bool:
        if node.id in self.distinct:
            return True
        return self.height[node.id] >= 2 and not self.is_heading(node) and node.id not in self.one_source

    def one_source_parents(self, node: AudioSetNode) -> int:
        return sum(1 for p in node.parents if p in self.ontology.nodes and self.is_one_source(self.ontology.nodes[p]))

    def one_source_ancestor(self, mid: str) -> str | None:
        """The ``ONE_SOURCE`` node that holds ``mid`` (itself included), if any."""
        if mid in self.one_source:
            return mid
        hits = self.one_source & self.ontology.ancestors(mid)
        return min(hits, key=self.ontology.order) if hits else None


def _shape(ontology: Ontology) -> _Shape:
    shape = getattr(ontology, "_planner_shape", None)
    if shape is None:
        shape = ontology._planner_shape = _Shape(ontology)  # built once per loaded ontology
    return shape


class _Planner:
    def __init__(self, ontology: Ontology, prompts: Mapping[str, str] | None):
        self.ontology = ontology
        self.shape = _shape(ontology)
        self.prompts = {k.casefold(): v for k, v in (prompts or {}).items()}

    def is_source(self, node: AudioSetNode) -> bool:
        return self.shape.is_source(node)

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
                              open_set=True, column=column)
        node = self.ontology.lookup(text)
        if node is None:
            log.debug("ignoring score column %r: not an AudioSet mid or class name", text)
            return None
        return _Candidate(node.name, node, self.prompt(node), float(column.max()), column >= threshold,
                          column=column)

    def level_target(self, node: AudioSetNode, level: int) -> AudioSetNode:
        if self.shape.depth[node.id] <= level:
            return node
        best: AudioSetNode | None = None
        for path in self.ontology.paths_from_top(node.id):
            for mid in path:
                candidate = self.ontology.nodes[mid]
                if self.is_source(candidate) and self.shape.depth[mid] >= level:
                    key = (self.shape.depth[mid], self.ontology.order(mid))
                    if best is None or key < (self.shape.depth[best.id], self.ontology.order(best.id)):
                        best = candidate
                    break
        return best or node

    def node_candidate(self, node: AudioSetNode, like: _Candidate) -> _Candidate:
        return _Candidate(node.name, node, self.prompt(node), like.score, like.active, like.forced)


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
            candidate = planner.node_candidate(as_node, candidate)
    existing = into.get(candidate.key)
    if existing is None:
        into[candidate.key] = candidate
        return
    stronger = candidate if candidate.score > existing.score else existing
    columns = [c.column for c in (existing, candidate) if c.column is not None]
    merged = replace(stronger, score=max(existing.score, candidate.score), active=existing.active | candidate.active,
                     forced=existing.forced or candidate.forced,
                     column=np.maximum.reduce(columns) if columns else None)
    if existing.prompt != candidate.prompt and stronger.node is not None and (existing.open_set or
                                                                              candidate.open_set):
        merged = replace(merged, label=stronger.node.name, prompt=planner.prompt(stronger.node), open_set=False)
    into[candidate.key] = merged


def _group_by_source(present: dict[str, _Candidate], planner: _Planner, threshold: float) -> list[_Source]:
    """Rule 4 (``hierarchy="leaf"``): one-source nodes gather their sounds, families join or stand, headings
    stand alone only above the heading bar."""
    shape = planner.shape
    by_mid = {c.node.id: c for c in present.values() if c.node is not None}
    sources: list[_Source] = [_Source([c], None, ["open-set phrase with no AudioSet class"])
                              for c in present.values() if c.node is None]
    forced_alone = [c for c in by_mid.values() if c.forced and shape.is_heading(c.node)]
    headings = [c for c in by_mid.values() if shape.is_heading(c.node) and not c.forced]
    families = [c for c in by_mid.values() if shape.is_family(c.node) and not c.forced
                and shape.one_source_ancestor(c.node.id) is None]
    grouped = [c for c in by_mid.values() if c not in headings and c not in families and c not in forced_alone]
    for root_mid, members in _one_source_roots(grouped, by_mid, planner).items():
        sources.extend(_sounds_of_one_source(planner.ontology.nodes[root_mid], members))
    _join_families(sources, families, planner)
    sources.extend(_headings_alone(headings, set(by_mid), planner, threshold))
    sources.extend(_Source([c], c.node, []) for c in forced_alone)
    return sources


def _one_source_roots(grouped: list[_Candidate], by_mid: dict[str, _Candidate],
                      planner: _Planner) -> dict[str, list[_Candidate]]:
    """Each grouped class under its one-source node: a ONE_SOURCE ancestor, itself, or the parent with the best
    evidence (a class with several parents)."""
    shape, ontology = planner.shape, planner.ontology

    def evidence(parent: str, child: _Candidate) -> float:
        """The parent's best score, or its other present children's, in the windows where ``child`` is active."""
        best = 0.0
        for mid in (parent, *ontology.nodes[parent].child_ids):
            other = by_mid.get(mid)
            if other is None or other is child:
                continue
            column = other.column if other.column is not None else np.where(other.active, other.score, 0.0)
            best = max(best, float(column[child.active].max(initial=0.0)))
        return best

    roots: dict[str, list[_Candidate]] = {}
    for c in grouped:
        mid = c.node.id
        root = shape.one_source_ancestor(mid)
        if root is None and shape.height[mid] == 0:
            parents = [p for p in c.node.parents if p in ontology.nodes
                       and shape.is_source(ontology.nodes[p]) and shape.is_one_source(ontology.nodes[p])]
            scored = [(evidence(p, c), -ontology.order(p), p) for p in parents]
            best = max(scored, default=None)
            if best is not None and best[0] > 0:
                root = best[2]
        roots.setdefault(root or mid, []).append(c)
    return roots


def _sounds_of_one_source(root: AudioSetNode, members: list[_Candidate]) -> list[_Source]:
    """Members of one one-source node active in a common window are one source (connected components)."""
    parent = list(range(len(members)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(members)):
        for j in range(i + 1, len(members)):
            if np.any(members[i].active & members[j].active):
                parent[find(i)] = find(j)
    components: dict[int, list[_Candidate]] = {}
    for i, member in enumerate(members):
        components.setdefault(find(i), []).append(member)
    return [_Source(component, root, [f"sounds of one source ({root.name}), active together"]
                    if len(component) > 1 else []) for component in components.values()]


def _join_families(sources: list[_Source], families: list[_Candidate], planner: _Planner) -> None:
    """A family joins its only detected source below it; with several below it is dropped, with none it stands."""
    for family in sorted(families, key=lambda c: -planner.shape.depth[c.node.id]):
        below = planner.ontology.descendants(family.node.id)
        holders = [s for s in sources if s.mids() & below]
        if len(holders) == 1:
            holders[0].members.append(family)
            holders[0].notes.append(f"{family.node.name} ({family.score:.2f}) joined: its only detected source")
        elif not holders:
            sources.append(_Source([family], family.node, []))
        else:
            log.debug("family %s dropped: %d distinct sources below it", family.node.name, len(holders))


def _headings_alone(headings: list[_Candidate], present_mids: set[str], planner: _Planner,
                    threshold: float) -> list[_Source]:
    """A heading is never a source beside a class below it; alone it needs the higher bar."""
    heading_bar = _scaled_odds(threshold, HEADING_ODDS)
    return [_Source([h], h.node, [f"category heading alone, above the heading bar {heading_bar:.2f}"])
            for h in headings
            if not present_mids & planner.ontology.descendants(h.node.id) and h.score >= heading_bar]


def _label_member(source: _Source, planner: _Planner) -> _Candidate:
    """The class that names a source: a forced member, else the deepest confident one (module docstring)."""
    forced = [m for m in source.members if m.forced]
    pool = forced or [m for m in source.members if m.score >= CONFIDENT_FRACTION * source.score - 1e-12]
    with_node = [m for m in pool if m.node is not None]
    if len(with_node) < len(pool) or not with_node:
        return pool[0]
    ancestors: set[str] = set()
    for m in with_node:
        ancestors |= planner.ontology.ancestors(m.node.id)
    deepest = [m for m in with_node if m.node.id not in ancestors]
    root = source.root
    if root is not None:
        # a class under several one-source parents names a sound, not a source: "Growling" with Roaring cats is
        # a tiger's
        shared = [m for m in deepest if m.node.id != root.id and root.id in m.node.parents
                  and planner.shape.one_source_parents(m.node) > 1]
        if shared and len(shared) == len(deepest):
            return next((m for m in source.members if m.node is not None and m.node.id == root.id),
                        None) or planner.node_candidate(root, shared[0])
    if len({m.node.id for m in deepest}) == 1:
        return max(deepest, key=lambda m: m.score)
    if root is not None and all(root.id in planner.ontology.ancestors(m.node.id) | {m.node.id} for m in deepest):
        present = next((m for m in source.members if m.node is not None and m.node.id == root.id), None)
        return present or planner.node_candidate(root, deepest[0])
    return max(deepest, key=lambda m: m.score)


def _finish(source: _Source, planner: _Planner, windows: list[Segment], spans: np.ndarray) -> tuple[_Candidate, dict]:
    name = _label_member(source, planner)
    active = source.active
    classes = sorted(((m.label, m.node.id if m.node is not None else None, m.score) for m in source.members),
                     key=lambda item: by_score_then_name(item[2], item[0]))
    why = list(source.notes) + [m.note for m in source.members if m.note]
    if any(m.forced for m in source.members):
        why.insert(0, "kept by --include")
    if len(source.members) == 1 and not why:
        why.append("detected class")
    if name.open_set:
        why.append("the tagger's own words as the prompt")
    elif len(source.members) > 1:
        why.append(f"named by {name.label} (deepest class at >= {CONFIDENT_FRACTION:g} of the score)")
    columns = [m.column if m.column is not None else np.where(m.active, m.score, 0.0) for m in source.members]
    label = replace(name, score=source.score, active=active, forced=source.forced,
                    column=np.maximum.reduce(columns))
    return label, {"classes": classes, "why": "; ".join(why), "active": float(spans[active].sum())}


def _kin(a: AudioSetNode, b: AudioSetNode, planner: _Planner) -> AudioSetNode | None:
    """The family two sources share (their deepest common ancestor that is a source and no heading), if any."""
    ontology, shape = planner.ontology, planner.shape
    common = (ontology.ancestors(a.id) | {a.id}) & (ontology.ancestors(b.id) | {b.id})
    families = [ontology.nodes[m] for m in common
                if shape.is_source(ontology.nodes[m]) and not shape.is_heading(ontology.nodes[m])]
    return max(families, key=lambda n: (shape.depth[n.id], -ontology.order(n.id)), default=None)


def _merge_weaker(finished: list[tuple[_Candidate, dict]], spans: np.ndarray,
                  same: Callable[[_Candidate, _Candidate], str | None]) -> list[tuple[_Candidate, dict]]:
    """Sources strongest first; a weaker one that ``same(weaker, stronger)`` describes (a reason, or None) joins
    the first such stronger one kept, its classes, windows and the reason added to it. Forced ones never join."""
    kept: list[list] = []  # [candidate, info] of the sources kept so far, strongest first
    for candidate, info in sorted(finished, key=lambda pair: by_score_then_name(pair[0].score, pair[0].label)):
        reason, entry = None, None
        if not candidate.forced:
            entry = next((e for e in kept if (reason := same(candidate, e[0])) is not None), None)
        if entry is None:
            kept.append([candidate, info])
            continue
        strong, strong_info = entry
        active = strong.active | candidate.active
        column = None if strong.column is None or candidate.column is None else np.maximum(strong.column,
                                                                                             candidate.column)
        entry[0] = replace(strong, active=active, column=column)
        entry[1] = {"classes": sorted(strong_info["classes"] + info["classes"],
                                      key=lambda item: by_score_then_name(item[2], item[0])),
                    "why": f"{strong_info['why']}; {candidate.label} ({candidate.score:.2f}) joined: {reason}",
                    "active": float(spans[active].sum())}
    return [(c, i) for c, i in kept]


def _merge_kin(finished: list[tuple[_Candidate, dict]], planner: _Planner,
               spans: np.ndarray) -> list[tuple[_Candidate, dict]]:
    """A kind too weak to stand beside a stronger kind of its family, in the same windows, is the same sound.

    A tagger unsure what a guitar is spreads it over Guitar, Ukulele and Zither; a real banjo beside a real
    mandolin scores high on both. A source below ``CONFIDENT_FRACTION`` of a stronger source of the same family
    (their deepest common ancestor is a source and no heading), active in a window they share, joins it.
    """
    def weaker_kind(candidate: _Candidate, strong: _Candidate) -> str | None:
        if candidate.node is None or strong.node is None:
            return None
        if candidate.score >= CONFIDENT_FRACTION * strong.score or not np.any(candidate.active & strong.active):
            return None
        family = _kin(candidate.node, strong.node, planner)
        return None if family is None else f"a weaker {family.name} kind in the same windows"

    return _merge_weaker(finished, spans, weaker_kind)


def covariation(weaker: np.ndarray, stronger: np.ndarray) -> float:
    """Pearson's r of two score columns over every window (0 when either column is flat)."""
    a, b = np.asarray(weaker, dtype=np.float64), np.asarray(stronger, dtype=np.float64)
    if len(a) < 2 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _merge_same_sound(finished: list[tuple[_Candidate, dict]], planner: _Planner,
                      spans: np.ndarray) -> list[tuple[_Candidate, dict]]:
    """One sound, one source: a weaker source whose scores rise and fall with a stronger one's is the same sound.

    A tagger gives one sound several classes, in one family or in different branches of the ontology (a synth
    pad as Organ and Synthesizer, a clarinet as Clarinet and Vehicle horn), and each passes on its own. Over a
    recording of at least ``SAME_SOUND_WINDOWS`` windows, Pearson's r of their scores at least ``SAME_SOUND_R``
    makes them one source. Two real sources of one family (two instruments) co-vary too when they play together,
    so for kin the weaker one's active windows must also lie within the stronger one's: a second name is heard
    only where the first is.
    """
    def same_sound(candidate: _Candidate, strong: _Candidate) -> str | None:
        if candidate.column is None or strong.column is None or len(candidate.column) < SAME_SOUND_WINDOWS:
            return None
        r = covariation(candidate.column, strong.column)
        if r < SAME_SOUND_R:
            return None
        kin = candidate.node is not None and strong.node is not None and _kin(candidate.node, strong.node,
                                                                              planner) is not None
        if kin and np.any(candidate.active & ~strong.active):
            return None
        return (f"the same sound as {strong.label} (scores co-vary, r = {r:.2f} over {len(strong.column)} windows"
                + (", active only within its windows)" if kin else ")"))

    return _merge_weaker(finished, spans, same_sound)


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
    default_threshold: float | None = None,
    window_seconds: float | None = None,
) -> list[PlannedSource]:
    """Plan the sources to separate from a ``[windows, classes]`` probability table (rules: module docstring).

    ``threshold`` is a per-window probability; when None, ``resolve_threshold`` derives it from the tagger's
    clip-level ``default_threshold`` and ``window_seconds`` (``plan_from_result`` passes both). ``prompts``
    overrides the prompt of a class (keys: display names, mids or open-set phrases). Returns the plan highest
    score first (forced ``include`` sources first); an empty list when nothing is detected.
    """
    scores = _score_table(probs, labels, window_times)
    mode, level = parse_hierarchy(hierarchy)
    if max_sources is not None and max_sources < 0:
        raise ValueError(f"max_sources must be >= 0, got {max_sources}")
    windows = [(float(s), float(e)) for s, e in window_times]
    threshold = resolve_threshold(threshold, default_threshold, window_seconds, windows)
    planner = _Planner(ontology or load_ontology(), prompts)
    names = _Names(include, exclude)
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        return []
    spans = hop_spans(windows)
    evidence, notes = scores, {}
    if mode == "leaf":  # 2b. a tagger spreads one sound over classes at different depths
        evidence, notes = _family_evidence(scores, labels, planner, threshold)
    # 1-3. columns, presence, not-sources
    present = _present(scores, evidence, notes, labels, threshold, 0.0 if min_active is None else float(min_active),
                       spans, planner, names)
    _add_unscored_includes(present, names, planner, len(windows))
    # 4. hierarchy
    if mode == "leaf":
        sources = _group_by_source(present, planner, threshold)
    else:
        sources = _collapse(present, planner, mode, level)
    finished = [_finish(source, planner, windows, spans) for source in sources if not names.excludes(source, planner)]
    if mode == "leaf":
        finished = _merge_same_sound(_merge_kin(finished, planner, spans), planner, spans)
    # 5. equal prompts; 6. choice
    chosen = _choose(_merge_equal_prompts(finished, spans), max_sources)
    return [_planned(candidate, info, windows) for candidate, info in chosen]


def _score_table(probs: np.ndarray, labels: Sequence[str], window_times: Sequence[Segment]) -> np.ndarray:
    """``probs`` as float64 ``[windows, classes]``, checked against the labels and windows; NaN is no evidence."""
    scores = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0)
    if scores.ndim == 1:
        scores = scores[None, :]
    if scores.ndim != 2 or scores.shape[1] != len(labels) or scores.shape[0] != len(window_times):
        raise ValueError(
            f"probs must be [windows, classes] = [{len(window_times)}, {len(labels)}], got shape {scores.shape}"
        )
    return scores


class _Names:
    """The ``include`` and ``exclude`` names, matched ignoring case against a name, a mid or a prompt."""

    def __init__(self, include: Iterable[str], exclude: Iterable[str]):
        self.include_given = [str(n).strip() for n in include if str(n).strip()]
        self.include = {n.casefold() for n in self.include_given}
        self.exclude = {str(n).strip().casefold() for n in exclude if str(n).strip()}

    def excludes(self, source: _Source, planner: _Planner) -> bool:
        """A source is excluded by any class it holds or by its one-source node (never when forced)."""
        if source.forced:
            return False
        if any(_matches(m, self.exclude) for m in source.members):
            return True
        return source.root is not None and _matches(planner.node_candidate(source.root, source.members[0]),
                                                    self.exclude)


def _family_evidence(scores: np.ndarray, labels: Sequence[str], planner: _Planner,
                     threshold: float) -> tuple[np.ndarray, dict[int, str]]:
    """Rule 2b: per window, a non-heading source node's evidence is the noisy-OR of its own score and those of
    the source classes below it, ``1 - prod(1 - p)``. Returns the new table and, for the columns that pass the
    threshold only thanks to the classes below, a note naming them."""
    ontology, shape = planner.ontology, planner.shape
    nodes = {}
    for j, label in enumerate(labels):
        text = str(label).strip()
        node = None if text.casefold().startswith(OPEN_SET_PREFIX) else ontology.lookup(text)
        if node is not None and shape.is_source(node):
            nodes[j] = node
    evidence, notes = scores.copy(), {}
    for j, node in nodes.items():
        if shape.is_heading(node) or not shape.height[node.id]:
            continue
        below = ontology.descendants(node.id)
        held = [k for k, other in nodes.items() if other.id in below and scores[:, k].max() > 0]
        if not held:
            continue
        evidence[:, j] = 1.0 - np.prod(1.0 - scores[:, [j, *held]], axis=1)
        if evidence[:, j].max() >= threshold > scores[:, j].max():
            strongest = sorted(held, key=lambda k: by_score_then_name(scores[:, k].max(), nodes[k].name))[:3]
            notes[j] = (f"{node.name}: family evidence {evidence[:, j].max():.2f} (own {scores[:, j].max():.2f} "
                        f"with {', '.join(f'{nodes[k].name} {scores[:, k].max():.2f}' for k in strongest)})")
    return evidence, notes


def _present(scores: np.ndarray, evidence: np.ndarray, notes: Mapping[int, str], labels: Sequence[str],
             threshold: float, min_active: float, spans: np.ndarray, planner: _Planner,
             names: _Names) -> dict[str, _Candidate]:
    """Rules 1-3: the columns that name a source and are present (or forced by ``include``), by key.

    A class is active where its ``evidence`` passes the threshold; its score stays its own, unless it passes
    only by family evidence (``notes``), when the evidence is its score and column."""
    present: dict[str, _Candidate] = {}
    for j, label in enumerate(labels):
        candidate = planner.candidate(label, scores[:, j], threshold)
        if candidate is None:
            continue
        candidate.active = evidence[:, j] >= threshold
        if j in notes:
            candidate.note, candidate.score, candidate.column = notes[j], float(evidence[:, j].max()), evidence[:, j]
        candidate.forced = _matches(candidate, names.include)
        if _matches(candidate, names.exclude):
            continue
        detected = candidate.active.any() and float(spans[candidate.active].sum()) >= min_active - 1e-9
        if not (detected or candidate.forced):
            continue
        if not candidate.forced and candidate.node is not None and not planner.is_source(candidate.node):
            continue
        if candidate.forced and not candidate.active.any():
            candidate.active = np.ones(len(spans), dtype=bool)  # forced but never passing: whole recording
        _combine(present, candidate, None, planner)
    return present


def _add_unscored_includes(present: dict[str, _Candidate], names: _Names, planner: _Planner, windows: int) -> None:
    """``include`` names that match no column at all: forced sources over the whole recording."""
    for text in names.include_given:
        if any(_matches(c, {text.casefold()}) for c in present.values()):
            continue
        node = planner.ontology.lookup(text)
        label = node.name if node is not None else clean_phrase(text)
        prompt = planner.prompt(node) if node is not None else planner.prompts.get(label.casefold(), label)
        forced = _Candidate(label, node, prompt, 0.0, np.ones(windows, dtype=bool), True, node is None)
        _combine(present, forced, None, planner)


def _collapse(present: dict[str, _Candidate], planner: _Planner, mode: str, level: int) -> list[_Source]:
    """``hierarchy="level:N"``: each class collapsed to its depth-N ancestor, ancestors of kept classes dropped;
    ``"none"``: every class as it is."""
    kept = present
    if mode == "level":
        collapsed: dict[str, _Candidate] = {}
        for candidate in present.values():
            target = planner.level_target(candidate.node, level) if candidate.node is not None else None
            _combine(collapsed, candidate, target, planner)
        ancestors: set[str] = set()
        for candidate in collapsed.values():
            if candidate.node is not None:
                ancestors |= planner.ontology.ancestors(candidate.node.id)
        kept = {k: c for k, c in collapsed.items() if c.forced or c.node is None or c.node.id not in ancestors}
    return [_Source([c], c.node, [f"collapsed to depth {level}"] if mode == "level" else []) for c in kept.values()]


def _merge_equal_prompts(finished: list[tuple[_Candidate, dict]],
                         spans: np.ndarray) -> list[tuple[_Candidate, dict]]:
    """Rule 5: classes that read as one prompt are one source to the separator, which refuses duplicate prompts."""
    by_prompt: dict[str, tuple[_Candidate, dict]] = {}
    for candidate, info in finished:
        key = candidate.prompt.strip().casefold()
        if key not in by_prompt:
            by_prompt[key] = (candidate, info)
            continue
        other, other_info = by_prompt[key]
        (stronger, strong_info), (weaker, _) = sorted(
            [(candidate, info), (other, other_info)], key=lambda pair: by_score_then_name(pair[0].score, pair[0].label))
        active = candidate.active | other.active
        classes = sorted(info["classes"] + other_info["classes"], key=lambda item: by_score_then_name(item[2], item[0]))
        why = f"{strong_info['why']}; {weaker.label} joined: same prompt {stronger.prompt!r}"
        by_prompt[key] = (replace(stronger, active=active, forced=candidate.forced or other.forced),
                          {"classes": classes, "why": why, "active": float(spans[active].sum())})
    return list(by_prompt.values())


def _choose(finished: list[tuple[_Candidate, dict]], max_sources: int | None) -> list[tuple[_Candidate, dict]]:
    """Rule 6: forced sources first, then by score, up to ``max_sources`` (forced ones always kept)."""
    ordered = sorted(finished, key=lambda pair: (not pair[0].forced, *by_score_then_name(pair[0].score, pair[0].label)))
    if max_sources is not None:
        forced_count = sum(1 for c, _ in ordered if c.forced)
        ordered = ordered[: max(max_sources, forced_count)]
    return ordered


def _planned(candidate: _Candidate, info: dict, windows: list[Segment]) -> PlannedSource:
    return PlannedSource(
        label=candidate.label, mid=candidate.node.id if candidate.node is not None else None, score=candidate.score,
        prompt=candidate.prompt, segments=merge_segments(w for w, on in zip(windows, candidate.active) if on),
        active=info["active"], classes=info["classes"], why=info["why"],
    )


def plan_from_result(result, **options) -> list[PlannedSource]:
    """``plan_sources`` over a ``TagResult``, with the tagger's own default threshold and window length."""
    return plan_sources(result.probs, result.labels, result.window_times,
                        default_threshold=getattr(result, "default_threshold", None),
                        window_seconds=getattr(result, "window_seconds", None), **options)
