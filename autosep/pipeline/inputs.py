"""Turn the INPUT arguments (files, folders, glob patterns) into a list of recordings to process.

Globs are expanded here rather than by the shell so that ``autosep "music/*.flac"`` behaves the same on Windows.
``collect_inputs`` serves ``autosep`` and ``autosep tag`` alike: it keeps, for each file, the folder it was found
under (``root``) so that the separation output tree can mirror the input tree, and names every input that
yields nothing, so the commands can report it before loading any model.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .recording import MEDIA_EXTENSIONS, is_media_file

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    path: Path  # the file to process
    root: Path  # the folder its output path is relative to (the folder given, the glob's base, or its own folder)
    given: str  # the INPUT argument it came from, for messages

    @property
    def relative(self) -> Path:
        """The path under ``root``, without extension: the recording's output folder under ``--out``."""
        relative = self.path.relative_to(self.root)
        return relative.with_suffix("") if relative.suffix else relative


@dataclass(frozen=True)
class MissingInput:
    given: str
    reason: str


def _is_glob(text: str) -> bool:
    return any(char in _GLOB_CHARS for char in text)


def _glob_root(pattern: str) -> Path:
    """The longest leading part of ``pattern`` that holds no wildcard: found files are made relative to it."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def media_files_in(folder: Path) -> list[Path]:
    """Audio and video files under ``folder``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_EXTENSIONS:
                found.append(Path(root) / name)
    return found


def collect_inputs(arguments: list[str]) -> tuple[list[InputFile], list[MissingInput]]:
    """Expand INPUT arguments in order. A file is taken whatever its extension (the decoder decides);
    folders and globs only yield media files. Duplicates (the same file reached twice) are dropped."""
    files: list[InputFile] = []
    missing: list[MissingInput] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path, given: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(InputFile(path, root, given))

    for given in arguments:
        path = Path(given).expanduser()
        if path.is_dir():
            media = media_files_in(path)
            if not media:
                missing.append(MissingInput(given, "the folder holds no audio or video files"))
            for found in media:
                add(found, path, given)
        elif path.exists():
            add(path, path.parent, given)
        elif _is_glob(given):
            root = _glob_root(str(path))
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            media: list[tuple[Path, Path]] = []
            for match in matches:
                if match.is_dir():
                    media.extend((found, root) for found in media_files_in(match))
                elif match.is_file() and is_media_file(match):
                    media.append((match, root))
            if not media:
                missing.append(MissingInput(given, "the pattern matches no audio or video files"))
            for found, found_root in media:
                add(found, found_root, given)
        else:
            missing.append(MissingInput(given, "no such file or folder; check the path"))
    return files, missing
