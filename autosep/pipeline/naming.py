"""Safe file names for stems: source names come from taggers and users, so they are never trusted as paths."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

RESIDUAL = "residual"  # the projected render's leftover stem; no source may take this name
REMIX = "remix"  # --keep/--remove write remix.<ext> beside the stems; no source may take this name either
_MAX_SLUG = 60


def slugify(name: str) -> str:
    """Lowercase ASCII letters, digits, ``_`` and ``-`` only; never empty, never a path or ``..``.

    Accents are folded ("Café" -> "cafe"); every other run of characters becomes one ``_``.
    """
    folded = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9_-]+", "_", folded).strip("_-")
    slug = re.sub(r"_{2,}", "_", slug)[:_MAX_SLUG].strip("_-")
    return slug or "source"


def unique_slugs(names: list[str], reserved: tuple[str, ...] = (RESIDUAL, REMIX)) -> list[str]:
    """One slug per name, in order; a slug already taken (or reserved) gets ``_2``, ``_3``..."""
    taken = set(reserved)
    result = []
    for name in names:
        base = slugify(name)
        slug, counter = base, 1
        while slug in taken:
            counter += 1
            slug = f"{base}_{counter}"
        taken.add(slug)
        result.append(slug)
    return result


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (resolved, symlinks followed) lies inside ``folder``."""
    try:
        resolved, base = os.path.realpath(path), os.path.realpath(folder)
        return os.path.commonpath([resolved, base]) == base
    except ValueError:  # different drives on Windows
        return False
