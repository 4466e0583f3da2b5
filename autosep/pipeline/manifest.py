"""The per-recording ``manifest.json``: everything needed to know what was done and to reproduce it.

Written last; its presence marks the recording as done (and lets an interrupted batch resume).
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
from importlib import metadata
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("autosep", "torch", "diffusers", "transformers", "panns-inference", "soundfile", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "autosep":
                from .. import __version__

                versions[name] = __version__
    return versions


def _segments(source) -> list[list[float]]:
    return [[round(float(a), 3), round(float(b), 3)] for a, b in source.segments]


def hub_revision(*candidates: object) -> str | None:
    """The Hugging Face snapshot (commit hash) a model was loaded from, if it came from the hub cache."""
    for candidate in candidates:
        match = re.search(r"[\\/]snapshots[\\/]([0-9a-f]{40})", str(candidate or ""))
        if match:
            return match.group(1)
    return None


def detection_entry(source) -> dict[str, Any]:
    # PlannedSource (tagged) and GivenSource (-s, or rebuilt from a manifest) share these fields.
    return {
        "label": source.label,
        "mid": source.mid,
        "score": None if source.score is None else round(float(source.score), 4),
        "prompt": source.prompt,
        "segments": _segments(source),
    }


def build_manifest(*, reader, input_given: str, non_finite: int, peak: float, tagger, separator, plan,
                   source_mode: str, settings: dict, work: dict, stems: list[dict], residual: dict | None,
                   windows: list[dict], timings: dict, warnings: list[str], top_tags: list[dict],
                   processed_by: dict | None = None) -> dict:
    """Assemble the manifest. ``stems`` and ``residual`` carry what the writers measured (file, peak, clipping)."""
    silent = [s["name"] for s in stems if s.get("silent")]
    clipped = [s["file"] for s in stems + ([residual] if residual else []) if s.get("clipped_samples")]
    fp32_retry = [s["name"] for s in stems if s.get("fp32_retry")]
    return {
        "manifest_version": MANIFEST_VERSION,
        "status": "done",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input": {
            "path": str(reader.path.resolve()),
            "given": input_given,
            "duration_s": round(reader.duration, 6),
            "frames": reader.frames,
            "sample_rate": reader.sample_rate,
            "channels": reader.channels,
            "subtype": reader.subtype,
            "container": reader.container,
            "peak": round(float(peak), 6),
            "non_finite_samples": non_finite,
        },
        "tagger": None if tagger is None else {
            "name": getattr(tagger, "name", None),
            "model_id": getattr(tagger, "model_id", None),
            "revision": hub_revision(getattr(tagger, "model_id", None)),
        },
        "separator": None if separator is None else {
            "model_id": getattr(separator, "model_id", None),
            "backbone": getattr(getattr(separator, "backbone", None), "name", None),
            "sample_rate": getattr(separator, "sample_rate", None),
            "channels": getattr(separator, "channels", None),
            "sampler": (separator.sampler(settings.get("inversion", "ddpm")) if hasattr(separator, "sampler")
                        else None),
            "revision": hub_revision(getattr(separator, "model_id", None),
                                     getattr(getattr(separator, "pipe", None), "name_or_path", None)),
        },
        "versions": package_versions(),
        "source_mode": source_mode,  # "tagged" (planned from tags) or "given" (-s/--source)
        "detections": [detection_entry(s) for s in plan],
        "top_tags": top_tags,
        "sources": stems,
        "residual": residual,
        "windows": windows,
        "settings": settings,
        "work": work,  # windows, windows that ran the separator, samples through the UNet
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "processed_by": processed_by,  # engine (local or ray), host, and for Ray the node id and attempt
        "flags": {
            "no_sources": not plan,
            "fp32_retry": fp32_retry,
            "silent_stems": silent,
            "clipped_output": clipped,
            "non_finite_input": non_finite > 0,
        },
        "warnings": warnings,
    }
