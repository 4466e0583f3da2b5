"""Turning command-line inputs (files, folders, glob patterns) into the list of files to process."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from .audio import MEDIA_EXTENSIONS

_GLOB_CHARS = frozenset("*?[")


def media_files_in(folder: Path) -> list[Path]:
    """Audio and video files under ``folder``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_EXTENSIONS:
                found.append(Path(root) / name)
    return found


def expand_inputs(patterns: Iterable[str | os.PathLike]) -> list[Path]:
    """Files to process, in the order given, without duplicates.

    A folder contributes its media files (recursively, by ``MEDIA_EXTENSIONS``); a file is kept whatever its
    extension (decoding will say if it is not audio); a glob pattern (``*``, ``?``, ``[``; ``**`` recursive)
    is expanded by autosep itself, so quoting works the same on every shell. Anything that matches nothing
    is kept as given, so the caller reports it by name ("no such file") and goes on with the rest.
    """
    result: dict[Path, None] = {}
    for pattern in patterns:
        text = os.path.expanduser(os.fspath(pattern))
        path = Path(text)
        if path.exists():
            matches = [path]
        elif _GLOB_CHARS & set(text):
            matches = [Path(p) for p in sorted(glob.glob(text, recursive=True))] or [path]
        else:
            matches = [path]
        for match in matches:
            if match.is_dir():
                result.update(dict.fromkeys(media_files_in(match)))
            else:
                result[match] = None
    return list(result)
