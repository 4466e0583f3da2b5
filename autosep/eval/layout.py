"""Reading estimate and reference folders, and pairing recordings and stems.

Rule of this module: a **recording** is a folder that holds audio files or a ``manifest.json``; its name is its
path under the folder given (``live/set1``). Nothing here decodes audio or scores anything.

- **Estimates** (``autosep`` output, or any ``<recording>/<source>.wav`` folder): in a folder with a manifest,
  the stems are the manifest's sources (name and AudioSet mid), the planned sources are its detections and the
  mixture is its input file; ``residual.*`` is never a source. Without a manifest every audio file except
  ``residual.*`` and ``mixture.*`` is a stem, named by its file name.
- **References** (and ``autosep eval --run`` datasets): ``<recording>/mixture.<ext>`` (optional; SI-SDRi needs
  it) and one audio file per true source. A source's label is, in order: the ``--labels`` file's entry, the
  recording's ``labels.json`` entry, or its file name (``acoustic_guitar.wav`` -> "acoustic guitar"). Labels
  are AudioSet display names, mids or free phrases, resolved through the ontology by
  :func:`autosep.eval.discovery.resolve_label`.
- **Pairing recordings**: reference ``X`` goes with estimate ``X``, or with ``X/mixture`` (what ``autosep``
  writes for ``X/mixture.wav`` when run over a dataset).
- **Matching stems** (``--match``): ``labels`` pairs an estimate with the true source its label counts for
  (the discovery rule: same class, a descendant, a non-heading parent; strongest first, one-to-one); ``name``
  pairs equal file names; ``best`` pairs by the best one-to-one assignment on a score matrix (CLAP-A or
  SI-SDR, computed by :mod:`autosep.eval.evaluate`); ``auto`` is ``labels`` for autosep output (a manifest)
  and ``name`` otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..pipeline.recording import is_media_file
from ..errors import AutosepError
from ..pipeline.manifest import MANIFEST_NAME, Manifest, ManifestError, trusted_file
from ..pipeline.naming import RESIDUAL, slugify
from ..taggers.audioset import Ontology, load_ontology
from .discovery import Label, assign, match_strength, resolve_label

MIXTURE = "mixture"
LABELS_FILE = "labels.json"
MATCH_MODES = ("auto", "labels", "name", "best")


class LayoutError(AutosepError):
    """An estimates, references or labels path cannot be used."""


@dataclass
class Stem:
    name: str  # source name: the manifest's source name, else the file name without extension
    path: Path
    label: Label


@dataclass
class RecordingFolder:
    name: str
    folder: Path
    stems: list[Stem] = field(default_factory=list)
    mixture: Path | None = None
    manifest: Manifest | None = None
    planned: list[Label] = field(default_factory=list)  # what was planned (manifest detections, else the stems)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_media_file(p))


def _recording_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder; give a folder of <recording>/<source>.wav stems")
    found = [root] if (root / MANIFEST_NAME).is_file() or _audio_files(root) else []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        if (folder / MANIFEST_NAME).is_file() or _audio_files(folder):
            found.append(folder)
    return found


def _name(root: Path, folder: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return "." if relative in ("", ".") else relative


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayoutError(f"{path}: cannot read the {what} ({exc}); fix or remove it") from None


def read_labels_file(path: str | Path) -> dict[str, dict[str, str]]:
    """A ``--labels`` file: JSON ``{"<recording>": {"<source file name or stem>": "<label>"}}``."""
    data = _read_json(Path(path), "labels file")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise LayoutError(f"{path}: expected a JSON object {{\"<recording>\": {{\"<source>\": \"<label>\"}}}}")
    return {str(k): {str(s): str(lab) for s, lab in v.items()} for k, v in data.items()}


def _label_for(path: Path, table: dict[str, str]) -> str | None:
    return table.get(path.name) or table.get(path.stem)


def read_estimates(root: str | Path, ontology: Ontology | None = None) -> dict[str, RecordingFolder]:
    """Every recording under ``root`` as estimates (see the module docstring)."""
    ontology = ontology or load_ontology()
    root = Path(root)
    recordings = {}
    for folder in _recording_folders(root):
        recording = RecordingFolder(_name(root, folder), folder)
        try:
            manifest = Manifest.read(folder, strict=True)
        except ManifestError as exc:
            raise LayoutError(str(exc)) from None
        if manifest is not None:
            recording.manifest = manifest
            for stem in manifest.sources:
                path = trusted_file(folder, stem.file)
                if path is not None:
                    name = stem.name or path.stem
                    recording.stems.append(Stem(name, path, resolve_label(name, stem.mid, ontology)))
            recording.planned = [resolve_label(d.label, d.mid, ontology) for d in manifest.detections if d.label]
            source = manifest.input_path
            recording.mixture = source if source is not None and source.is_file() else None
        else:
            for path in _audio_files(folder):
                if path.stem.casefold() == RESIDUAL:
                    continue
                if path.stem.casefold() == MIXTURE:
                    recording.mixture = path
                    continue
                recording.stems.append(Stem(path.stem, path, resolve_label(path.stem, None, ontology)))
            recording.planned = [stem.label for stem in recording.stems]
        recordings[recording.name] = recording
    return recordings


def read_references(root: str | Path, labels: dict[str, dict[str, str]] | None = None,
                    ontology: Ontology | None = None) -> dict[str, RecordingFolder]:
    """Every recording under ``root`` as references: true stems, their labels and the mixture."""
    ontology = ontology or load_ontology()
    root = Path(root)
    recordings = {}
    for folder in _recording_folders(root):
        recording = RecordingFolder(_name(root, folder), folder)
        local: dict[str, str] = {}
        if (folder / LABELS_FILE).is_file():
            data = _read_json(folder / LABELS_FILE, "labels file")
            if not isinstance(data, dict):
                raise LayoutError(f"{folder / LABELS_FILE}: expected a JSON object {{\"<source>\": \"<label>\"}}")
            local = {str(k): str(v) for k, v in data.items()}
        given = (labels or {}).get(recording.name, {})
        files = _audio_files(folder)
        names = {p.name for p in files} | {p.stem for p in files}
        for table, where in ((local, folder / LABELS_FILE), (given, f"the --labels entry for {recording.name}")):
            unknown = sorted(key for key in table if key not in names)
            if unknown:  # a typo would otherwise fall back to the file name silently
                raise LayoutError(f"{where}: {unknown[0]!r} names no audio file in {folder}; "
                                  f"use the file names there ({', '.join(sorted(p.name for p in files))})")
        for path in files:
            if path.stem.casefold() == MIXTURE:
                recording.mixture = path
                continue
            text = _label_for(path, given) or _label_for(path, local) or path.stem.replace("_", " ")
            recording.stems.append(Stem(path.stem, path, resolve_label(text, None, ontology)))
        recording.planned = [stem.label for stem in recording.stems]
        if recording.stems:  # a folder holding only a mixture is a dataset input, not references
            recordings[recording.name] = recording
    unknown = sorted(set(labels or {}) - set(recordings))
    if unknown:
        raise LayoutError(f"the --labels file names recording {unknown[0]!r}, which is not under {root} "
                          f"(recordings are folder paths under it, e.g. {next(iter(recordings), 'song1')!r})")
    return recordings


def pair_recordings(estimates: dict[str, RecordingFolder], references: dict[str, RecordingFolder]
                    ) -> tuple[list[tuple[RecordingFolder, RecordingFolder]], list[str], list[str]]:
    """(estimate, reference) pairs, the references with no estimates, and the estimates with no references."""
    pairs, missing, used = [], [], set()
    for name, reference in references.items():
        candidates = [name, f"{name}/{MIXTURE}" if name != "." else MIXTURE]
        found = next((c for c in candidates if c in estimates and c not in used), None)
        if found is None:
            missing.append(name)
            continue
        used.add(found)
        pairs.append((estimates[found], reference))
    extra = [name for name in estimates if name not in used]
    return pairs, missing, extra


def resolve_match_mode(mode: str, estimates: RecordingFolder) -> str:
    if mode not in MATCH_MODES:
        raise LayoutError(f"unknown --match {mode!r}; choose one of {', '.join(MATCH_MODES)}")
    if mode == "auto":
        return "labels" if estimates.manifest is not None else "name"
    return mode


def match_by_labels(estimates: list[Stem], references: list[Stem], ontology: Ontology | None = None
                    ) -> list[tuple[int, int]]:
    ontology = ontology or load_ontology()
    strength = np.array([[match_strength(e.label, r.label, ontology) for r in references] for e in estimates],
                        dtype=int).reshape(len(estimates), len(references))
    return assign(strength)


def match_by_name(estimates: list[Stem], references: list[Stem]) -> list[tuple[int, int]]:
    keys = {}
    for j, reference in enumerate(references):
        keys.setdefault(slugify(reference.name), j)
    pairs, used = [], set()
    for i, estimate in enumerate(estimates):
        for key in (slugify(estimate.name), slugify(estimate.path.stem)):
            j = keys.get(key)
            if j is not None and j not in used:
                pairs.append((i, j))
                used.add(j)
                break
    return pairs


def match_by_scores(scores: np.ndarray) -> list[tuple[int, int]]:
    """The one-to-one assignment with the highest total score (``[estimates, references]``; NaN never pairs)."""
    if scores.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    finite = np.isfinite(scores)
    if not finite.any():
        return []
    filled = np.where(finite, scores, np.nanmin(np.where(finite, scores, np.nan)) - 1e6)
    rows, cols = linear_sum_assignment(filled, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if finite[r, c]]
