"""autosep: split any recording into one stem per sound source, with no prompts and no separation training.

``autosep.AutoSep(**options).run(paths)`` and ``autosep.separate_file(path, **options)`` are imported lazily,
so ``import autosep`` stays light (no torch) until they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["AutoSep", "separate_file", "PipelineOptions", "RecordingResult", "__version__"]

_LAZY = {
    "AutoSep": ("autosep.pipeline.api", "AutoSep"),
    "separate_file": ("autosep.pipeline.api", "separate_file"),
    "PipelineOptions": ("autosep.pipeline.settings", "PipelineOptions"),
    "RecordingResult": ("autosep.pipeline.pipeline", "RecordingResult"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autosep' has no attribute {name!r}")
