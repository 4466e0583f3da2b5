"""AudioSet metadata: the ontology (632 nodes, with hierarchy and restrictions) and the 527-class label list.

Both files ship inside the package (``autosep/taggers/data``, with their licences in ``NOTICE`` there: the ontology
is CC BY-SA 4.0, the class list CC BY 4.0, both by Google), so nothing is downloaded and a fresh install works
offline. ``AUTOSEP_AUDIOSET_DIR`` names a folder with other copies to use instead. Either way a file is checked
by parsing it (the ontology must hold its nodes, the class list its 527 rows with ``index,mid,display_name``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import AutosepError

ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
CLASS_LABELS_URL = "https://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv"
ONTOLOGY_FILE = "ontology.json"
CLASS_LABELS_FILE = "class_labels_indices.csv"
AUDIOSET_DIR_ENV = "AUTOSEP_AUDIOSET_DIR"
AUDIOSET_CLASS_COUNT = 527
PACKAGE_DATA = Path(__file__).resolve().parent / "data"  # the shipped copies (and their NOTICE)

_SOURCES = {ONTOLOGY_FILE: ONTOLOGY_URL, CLASS_LABELS_FILE: CLASS_LABELS_URL}


class AudioSetMetadataError(AutosepError):
    """The AudioSet ontology or class list is missing or unreadable."""


@dataclass(frozen=True)
class AudioSetNode:
    """One ontology node. ``depth`` is 1 for the top-level categories (Animal, Music, ...), the shortest path
    from a top-level node otherwise; ``parents`` lists every parent (38 nodes have more than one)."""

    id: str
    name: str
    child_ids: tuple[str, ...]
    parents: tuple[str, ...]
    depth: int
    restrictions: tuple[str, ...]

    @property
    def abstract(self) -> bool:
        return "abstract" in self.restrictions

    @property
    def blacklisted(self) -> bool:
        return "blacklist" in self.restrictions


class Ontology:
    """Lookups over the AudioSet ontology by mid (``/m/0bt9lr``) or display name (``Dog``, any case)."""

    def __init__(self, records: list[dict], class_mids: list[str]):
        parents: dict[str, list[str]] = {}
        for record in records:
            for child in record.get("child_ids", []):
                parents.setdefault(child, []).append(record["id"])
        depths = _depths(records, parents)
        self.nodes: dict[str, AudioSetNode] = {
            r["id"]: AudioSetNode(
                id=r["id"], name=r["name"], child_ids=tuple(r.get("child_ids", [])),
                parents=tuple(parents.get(r["id"], [])), depth=depths[r["id"]],
                restrictions=tuple(r.get("restrictions", [])),
            )
            for r in records
        }
        self._order = {mid: i for i, mid in enumerate(self.nodes)}
        self._by_name = {node.name.casefold(): node for node in self.nodes.values()}
        self.class_mids: list[str] = list(class_mids)  # the 527 tagger outputs, in model output order

    def __len__(self) -> int:
        return len(self.nodes)

    def lookup(self, label: str) -> AudioSetNode | None:
        """The node for a mid or a display name, or ``None``."""
        text = label.strip()
        return self.nodes.get(text) or self._by_name.get(text.casefold())

    def by_name(self, name: str) -> AudioSetNode:
        node = self._by_name.get(name.casefold())
        if node is None:
            raise KeyError(f"no AudioSet class named {name!r}")
        return node

    @property
    def class_names(self) -> list[str]:
        return [self.nodes[mid].name for mid in self.class_mids]

    def order(self, mid: str) -> int:
        """Position in ontology.json, for deterministic tie-breaking."""
        return self._order.get(mid, len(self._order))

    def ancestors(self, mid: str) -> set[str]:
        """All ancestors over every parent path (not including ``mid`` itself)."""
        seen: set[str] = set()
        stack = list(self.nodes[mid].parents) if mid in self.nodes else []
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.nodes[current].parents)
        return seen

    def descendants(self, mid: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.nodes[mid].child_ids) if mid in self.nodes else []
        while stack:
            current = stack.pop()
            if current not in seen and current in self.nodes:
                seen.add(current)
                stack.extend(self.nodes[current].child_ids)
        return seen

    def paths_from_top(self, mid: str) -> list[list[str]]:
        """Every path from a top-level node down to ``mid`` (inclusive)."""
        node = self.nodes[mid]
        if not node.parents:
            return [[mid]]
        return [path + [mid] for parent in node.parents for path in self.paths_from_top(parent)]


def _depths(records: list[dict], parents: dict[str, list[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    frontier = [r["id"] for r in records if r["id"] not in parents]
    level = 1
    children = {r["id"]: r.get("child_ids", []) for r in records}
    while frontier:
        next_frontier = []
        for mid in frontier:
            if mid not in depth:
                depth[mid] = level
                next_frontier.extend(c for c in children.get(mid, []) if c not in depth)
        frontier, level = next_frontier, level + 1
    for r in records:  # unreachable nodes (none in v1) count as top level rather than failing
        depth.setdefault(r["id"], 1)
    return depth


def metadata_folder() -> Path:
    """Where the metadata is read from: ``AUTOSEP_AUDIOSET_DIR`` when set, else the copies in the package."""
    configured = os.environ.get(AUDIOSET_DIR_ENV)
    return Path(configured).expanduser() if configured else PACKAGE_DATA


def metadata_file(name: str) -> Path:
    """Path to ``ontology.json`` or ``class_labels_indices.csv``."""
    path = metadata_folder() / name
    if not path.is_file():
        if os.environ.get(AUDIOSET_DIR_ENV):
            raise AudioSetMetadataError(
                f"{AUDIOSET_DIR_ENV} is set to {os.environ[AUDIOSET_DIR_ENV]}, but {path} does not exist. Put {name} "
                f"there (from {_SOURCES[name]}) or unset {AUDIOSET_DIR_ENV} to use the copy shipped with autosep."
            )
        raise AudioSetMetadataError(f"{path} is missing from the autosep package; reinstall autosep")
    return path


def read_class_labels(path: Path) -> list[tuple[int, str, str]]:
    """Rows ``(index, mid, display_name)`` of ``class_labels_indices.csv``, checked."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or [c.strip() for c in rows[0]] != ["index", "mid", "display_name"]:
        raise AudioSetMetadataError(f"{path}: not an AudioSet class list (expected header index,mid,display_name)")
    parsed = [(int(r[0]), r[1].strip(), r[2].strip()) for r in rows[1:] if r]
    if len(parsed) != AUDIOSET_CLASS_COUNT or [r[0] for r in parsed] != list(range(AUDIOSET_CLASS_COUNT)):
        raise AudioSetMetadataError(f"{path}: expected {AUDIOSET_CLASS_COUNT} classes indexed 0..526")
    return parsed


def _load_checked(name: str, parse):
    path = metadata_file(name)
    try:
        return parse(path)
    except (AudioSetMetadataError, ValueError, IndexError, KeyError, UnicodeDecodeError) as exc:
        if isinstance(exc, AudioSetMetadataError):
            raise
        raise AudioSetMetadataError(f"{path}: unreadable AudioSet metadata ({exc}); replace the file") from None


def _read_ontology(path: Path) -> list[dict]:
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list) or not all("id" in r and "name" in r for r in records):
        raise ValueError("expected a list of nodes with id and name")
    return records


@lru_cache(maxsize=4)
def _load_ontology_cached(key: str | None) -> Ontology:
    records = _load_checked(ONTOLOGY_FILE, _read_ontology)
    rows = _load_checked(CLASS_LABELS_FILE, read_class_labels)
    return Ontology(records, [mid for _, mid, _ in rows])


def load_ontology() -> Ontology:
    """The ontology with the 527-class list, loaded once per metadata folder."""
    return _load_ontology_cached(str(metadata_folder()))


def class_labels_csv() -> Path:
    """Path to ``class_labels_indices.csv``, checked."""
    path = metadata_file(CLASS_LABELS_FILE)
    read_class_labels(path)
    return path
