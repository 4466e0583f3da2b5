"""The models autosep knows by name: what they are, how big, under which licence, and how to fetch them.

The separator and the taggers each declare their own entries; ``autosep models`` lists them all and
``autosep models download NAME`` fetches one ahead of an offline run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class KnownModel:
    alias: str  # short name users type ("audioldm2", "panns")
    role: str  # "separator" or "tagger"
    source: str  # Hugging Face repo id, or the download URL for files that are not on the hub
    size: str  # approximate download size, for humans ("1.1 GB")
    licence: str  # licence of the weights, e.g. "CC BY-NC-SA 4.0"
    description: str
    fetch: Callable[[], Path] | None = None  # custom download (non-hub files); None means snapshot_download(source)
    is_cached: Callable[[], bool] | None = None  # with ``fetch``: whether a complete copy is already on disk
