"""The per-recording flow and everything only it uses: audio -> tags -> plan -> stems -> files.

Modules, in the order a recording meets them: ``settings`` (the run's options, checked once), ``inputs`` (INPUT
arguments to files), ``reading`` (one recording type, block reads), ``recording`` (one recording, step by step),
``tagging`` (the streaming tagging pass), ``separate`` (the per-window separation loop), ``windows`` (cross-fade,
overlap-add), ``render`` (one renderer per render mode), ``write`` (atomic stem and JSON writers), ``naming``
(safe stem names), ``manifest`` (the record of what was done, written and read), ``batch`` (many recordings,
models loaded once, the skip decision), ``progress`` (hooks and displays) and ``api`` (``autosep.AutoSep``).
Names are imported on first use, so ``import autosep.pipeline`` stays light.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "AutoSep": "api", "separate_file": "api",
    "Pipeline": "recording", "RecordingResult": "recording", "PipelineOptions": "settings", "RunSettings": "settings",
    "BatchOutcome": "batch", "run_batch": "batch",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
