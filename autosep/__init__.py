"""autosep: split any recording into one stem per sound source, with no prompts and no separation training."""

from __future__ import annotations

__version__ = "0.1.0"
