"""The automatic stem pipeline, per recording:

    decode -> tag in windows -> plan sources -> separate window by window -> render stems -> write stems + manifest

Models are loaded once (:meth:`Pipeline.load`) and reused for every recording. The recording is read in blocks
and the stems are written as windows finish, so memory stays flat however long the file is. Everything a
recording produces goes to a temporary name first; ``manifest.json`` is written last and marks it done.
"""

from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AutosepError
from .inputs import InputFile
from .manifest import MANIFEST_NAME, build_manifest
from .naming import RESIDUAL, is_inside, unique_slugs
from .progress import Progress
from .reading import SILENCE_PEAK, AudioReader, open_audio, scan
from .render import RENDER_MODES
from .separate import WindowedSeparation, model_channels_for, window_seconds
from .write import OutputError, check_output_format, choose_subtype, read_json, remove_partials, write_json

MIN_DURATION_S = 0.1
TAG_BLOCK_S = 60.0  # the tagger sees the recording in blocks this long, so tagging memory stays flat too


class InputError(AutosepError):
    """This recording cannot be processed (too short, unreadable...); the batch goes on."""


@dataclass
class PipelineOptions:
    """Every knob of a run. Field names match the command line's long options."""

    # Sources: given prompts skip tagging.
    sources: list[str] | None = None
    tagger: str = "panns"
    tagger_model: str | None = None
    vocab: str | None = None
    planner: dict[str, Any] = field(default_factory=dict)  # plan_sources keyword arguments
    dry_run: bool = False
    # Separation.
    model: str = "audioldm2"
    inversion: str = "ddpm"
    steps: int = 50
    guidance: float = 1.0
    inv_prompt: str = "others"
    seed: int = 42
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None
    window: float | None = None  # seconds; None: the separator's default (its training length)
    overlap: float = 0.25
    margin: float = 1.0  # seconds around a source's tagged segments in which it is still separated
    render: str = "projected"
    # Output.
    out: str | Path = "separated"
    format: str = "wav"
    bit_depth: str | None = None
    overwrite: bool = False

    def validate(self) -> None:
        if self.window is not None and self.window <= 0:
            raise AutosepError(f"--window must be positive, got {self.window}")
        if not 0 <= self.overlap < 1:
            raise AutosepError(f"--overlap must be at least 0 and below 1, got {self.overlap}")
        if self.render not in RENDER_MODES:
            raise AutosepError(f"--render must be one of {', '.join(RENDER_MODES)}, got {self.render!r}")
        if self.steps < 1:
            raise AutosepError(f"--steps must be at least 1, got {self.steps}")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise AutosepError(f"--guidance must be a number >= 0 (1.0 is ZeroSep's default), got {self.guidance}")
        if self.vocab is not None and self.sources is None and str(self.tagger).strip().lower() != "clap":
            raise AutosepError("--vocab is only used by --tagger clap")
        if self.sources is not None and not [s for s in self.sources if s.strip()]:
            raise AutosepError("--source needs a non-empty prompt")
        choose_subtype(self.format, self.bit_depth, None)  # raises for impossible format/bit-depth pairs


@dataclass
class GivenSource:
    """A source named with ``-s``: same fields as the planner's ``PlannedSource``, active everywhere."""

    label: str
    prompt: str
    segments: list[tuple[float, float]]
    mid: str | None = None
    score: float | None = None


@dataclass
class RecordingResult:
    input: Path
    output: Path | None
    status: str  # "done", "skipped" (already done), "planned" (dry run), "failed"
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    plan: list = field(default_factory=list)
    manifest: dict | None = None
    files: dict[str, Path] = field(default_factory=dict)  # source name (and "residual") -> stem file
    sample_rate: int | None = None
    seconds: float = 0.0
    stems: Mapping[str, np.ndarray] = field(default_factory=dict)  # the Python API's stems, read on access

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped", "planned")

    def load_stems(self) -> dict[str, np.ndarray]:
        """The written stems as float32 arrays ``[frames, channels]``, by source name."""
        import soundfile as sf

        return {name: sf.read(str(path), dtype="float32", always_2d=True)[0] for name, path in self.files.items()}


class Pipeline:
    """Holds the loaded tagger and separator and processes recordings one after another."""

    def __init__(self, options: PipelineOptions, tagger=None, separator=None, progress: Progress | None = None):
        options.validate()
        self.options = options
        self.tagger = tagger
        self.separator = separator
        self.progress = progress or Progress()
        self._tag_notes: list[str] = []  # the tagger's warnings for the recording being processed
        self.processed_by: dict = {"engine": "local", "host": socket.gethostname()}  # the Ray engine sets its own

    @classmethod
    def load(cls, options: PipelineOptions, progress: Progress | None = None) -> "Pipeline":
        """Load the models this run needs, once. Raises AutosepError (e.g. ModelNotAvailableError)."""
        options.validate()
        progress = progress or Progress()
        tagger = separator = None
        if options.sources is None:
            from ..taggers import load_tagger

            progress.stage(f"loading tagger {options.tagger}")
            tagger = load_tagger(options.tagger, model=options.tagger_model, device=options.device,
                                 vocab=options.vocab)
        if not options.dry_run:
            from ..separator import ZeroSep

            progress.stage(f"loading separator {options.model}")
            separator = ZeroSep.from_pretrained(options.model, device=options.device, dtype=options.dtype,
                                                batch_size=options.batch_size)
        return cls(options, tagger, separator, progress)

    # -- one recording -------------------------------------------------------------------------------------------

    def output_folder(self, item: InputFile) -> Path:
        out_root = Path(self.options.out)
        folder = out_root / item.relative
        if not is_inside(folder, out_root) or folder.resolve() == out_root.resolve():
            raise OutputError(f"{item.path}: its output folder {folder} would fall outside {out_root}")
        return folder

    def process(self, item: InputFile) -> RecordingResult:
        """Process one recording. Errors about this recording come back as a failed result; Ctrl-C propagates
        (after removing this recording's temporary files)."""
        started = time.perf_counter()
        try:
            result = self._process(item, started)
        except (AutosepError, OSError) as exc:
            message = str(exc) if isinstance(exc, AutosepError) else f"{item.path}: {exc.strerror or exc}"
            result = RecordingResult(item.path, None, "failed", message)
        except Exception as exc:  # from torch/diffusers/the models/decoders: say which file, go on (not Ctrl-C)
            result = RecordingResult(item.path, None, "failed", f"{item.path}: {type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - started
        return result

    def _process(self, item: InputFile, started: float) -> RecordingResult:
        opts = self.options
        folder = self.output_folder(item)
        manifest_path = folder / MANIFEST_NAME
        previous = read_json(manifest_path)
        if previous is not None and not opts.dry_run:
            previous_input = Path(str(previous.get("input", {}).get("path", "")))
            same_input = previous_input.name and _same_file(previous_input, item.path)
            if not same_input and not opts.overwrite:
                raise OutputError(
                    f"{item.path}: {folder} already holds the results for another input ({previous_input}); "
                    "use a different --out, or --overwrite to replace them"
                )
            if not opts.overwrite:
                return RecordingResult(item.path, folder, "skipped", "already done (manifest.json exists)",
                                       plan=_plan_from_manifest(previous), manifest=previous,
                                       files=_files_from_manifest(folder, previous),
                                       sample_rate=_rate_from_manifest(previous))

        timings: dict[str, float] = {}
        warnings: list[str] = []
        with open_audio(item.path) as reader:
            timings["open"] = time.perf_counter() - started
            if reader.duration < MIN_DURATION_S:
                raise InputError(f"{item.path}: too short ({reader.duration * 1000:.0f} ms); autosep needs at "
                                 f"least {MIN_DURATION_S} s of audio")
            out_rate, out_channels = self._output_shape(reader)
            try:
                subtype = choose_subtype(opts.format, opts.bit_depth, reader.subtype)
                check_output_format(opts.format, subtype, out_rate, out_channels)
            except OutputError as exc:
                raise OutputError(f"{item.path}: {exc}") from None

            t0 = time.perf_counter()
            self.progress.stage("tagging" if self.tagger is not None and opts.sources is None else "reading")
            self._tag_notes = []
            plan, top_tags, peak, non_finite = self._plan(reader)
            timings["scan_and_tag"] = time.perf_counter() - t0
            warnings.extend(f"{item.path}: {note}" for note in dict.fromkeys(self._tag_notes))
            if non_finite:
                warnings.append(f"{item.path}: {non_finite} NaN/infinite samples were replaced by silence")
            if peak < SILENCE_PEAK:
                plan = []
                warnings.append(f"{item.path}: the recording is silent; no sources, no stems written")
            elif not plan:
                warnings.append(f"{item.path}: no source passed the threshold; no stems written "
                                "(try a lower --threshold, or name sources with -s)")
            for warning in warnings:
                self.progress.warn(warning)
            if opts.dry_run:
                return RecordingResult(item.path, folder, "planned", plan=plan, warnings=warnings)

            folder.mkdir(parents=True, exist_ok=True)
            remove_partials(folder)
            stale = set(_files_from_manifest(folder, previous).values()) if previous else set()
            manifest_path.unlink(missing_ok=True)  # from here on the folder is not "done" until the new manifest

            t0 = time.perf_counter()
            names = [s.label for s in plan]
            slugs = unique_slugs(names)
            ext = opts.format.lower()
            paths = [folder / f"{slug}.{ext}" for slug in slugs]
            if plan and opts.render == "projected":
                paths.append(folder / f"{RESIDUAL}.{ext}")
            separation = WindowedSeparation(self.separator, opts, self.progress)
            stems_info, residual_info, window_log = separation.run(reader, plan, paths, subtype, out_rate,
                                                                   out_channels)
            timings["separate_and_write"] = time.perf_counter() - t0

        files = {name: path for name, path in zip(names, paths)}
        if len(paths) > len(names):
            files[RESIDUAL] = paths[-1]
        for old in stale - set(files.values()):
            if is_inside(old, folder) and old.name != MANIFEST_NAME:
                old.unlink(missing_ok=True)
        late: list[str] = []
        for info in stems_info:
            if info.get("silent"):
                late.append(f"{item.path}: the stem for {info['name']!r} is silent")
            if info.get("clipped_samples"):
                late.append(f"{item.path}: {info['clipped_samples']} samples of {info['file']} were clipped "
                            "(write float stems with --format wav --bit-depth 32f to keep them)")
        for warning in late:
            self.progress.warn(warning)
        warnings.extend(late)
        timings["total"] = time.perf_counter() - started
        work = {"windows": len(window_log), "separated_windows": sum(1 for w in window_log if w["sources"]),
                "unet_evaluations": separation.unet_evaluations}
        manifest = build_manifest(
            reader=reader, input_given=item.given, non_finite=non_finite, peak=peak, tagger=self.tagger,
            separator=self.separator, plan=plan, source_mode="given" if opts.sources is not None else "tagged",
            settings=self._settings(subtype), work=work, stems=stems_info, residual=residual_info, windows=window_log,
            timings=timings, warnings=warnings, top_tags=top_tags, processed_by=self.processed_by,
        )
        write_json(manifest_path, manifest)
        return RecordingResult(item.path, folder, "done", plan=plan, manifest=manifest, files=files,
                               warnings=warnings, sample_rate=out_rate)

    def _output_shape(self, reader: AudioReader) -> tuple[int, int]:
        if self.options.render == "generative":
            # The separator's own output: its rate, and its channels when the recording has them (a stereo
            # model separates a stereo recording as stereo; anything else goes through it as mono).
            return self._model_rate(), model_channels_for(self.separator, reader.channels)
        return reader.sample_rate, reader.channels

    def _model_rate(self) -> int:
        return int(getattr(self.separator, "sample_rate", 16000))

    def _settings(self, subtype: str) -> dict:
        opts = self.options
        return {
            "seed": opts.seed, "steps": opts.steps, "inversion": opts.inversion, "guidance": opts.guidance,
            "inv_prompt": opts.inv_prompt, "render": opts.render, "window_s": window_seconds(opts, self.separator), "overlap": opts.overlap,
            "margin_s": opts.margin, "model": opts.model, "device": opts.device, "dtype": opts.dtype,
            "batch_size": opts.batch_size, "tagger": opts.tagger if opts.sources is None else None,
            "planner": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.planner.items()},
            "format": opts.format, "subtype": subtype,
        }

    # -- tagging and planning --------------------------------------------------------------------------------------

    def _plan(self, reader: AudioReader) -> tuple[list, list[dict], float, int]:
        """One streaming pass over the file: peak, NaN count and (unless sources were given) tags per block.

        The tagger sees blocks of about TAG_BLOCK_S, each extended by (tagger window - hop) so its windows
        continue the same grid across block boundaries, as if it had scored the whole file at once.
        """
        opts = self.options
        rate = reader.sample_rate
        tagging = self.tagger is not None and opts.sources is None
        window_s = float(getattr(self.tagger, "window_seconds", 10.0) or 10.0)
        hop_s = float(getattr(self.tagger, "hop_seconds", None) or window_s / 2)
        hop = max(1, round(hop_s * rate))
        block = max(hop, round(TAG_BLOCK_S * rate / hop) * hop) if tagging else max(1, int(TAG_BLOCK_S * rate))
        window = max(1, round(window_s * rate))
        extra = max(0, window - hop)
        tagged: list = []
        covered = 0  # frames already scored (a block's extension may reach the end of the file)

        def tag_block(start: int, samples: np.ndarray) -> None:
            nonlocal covered
            end = start + len(samples)
            if not tagging or end <= covered:
                return
            tail = min(extra, reader.frames - end)
            if tail > 0:
                samples = np.concatenate([samples, reader.read(end, tail)])
            covered = end + max(tail, 0)
            tagged.append((start / rate, self.tagger.tag(samples, rate)))

        result = scan(reader, block, tag_block)
        if opts.sources is not None:
            everywhere = [(0.0, reader.duration)]
            prompts = list(dict.fromkeys(s.strip() for s in opts.sources if s.strip()))  # drop repeats, keep order
            plan = [GivenSource(label=p, prompt=p, segments=list(everywhere)) for p in prompts]
            return plan, [], result.peak, result.non_finite
        if not tagged or result.peak < SILENCE_PEAK:
            return [], [], result.peak, result.non_finite
        from ..taggers import describe_label, plan_sources

        for _, tag_result in tagged:  # the tagger's own warnings (e.g. an audio-LM answer it could not parse)
            self._tag_notes.extend(getattr(tag_result, "notes", None) or [])
        # Columns are joined by label, not position: an open-set tagger (audio-lm) names different phrases in
        # different blocks. A label a block did not name scores 0 there.
        labels = list(dict.fromkeys(label for _, r in tagged for label in r.labels))
        column = {label: j for j, label in enumerate(labels)}
        blocks = []
        for _, r in tagged:
            block = np.zeros((len(r.window_times), len(labels)), dtype=np.float32)
            block[:, [column[label] for label in r.labels]] = np.asarray(r.probs, dtype=np.float32).reshape(
                len(r.window_times), len(r.labels))
            blocks.append(block)
        probs = np.concatenate(blocks, axis=0)
        times = [(offset + a, offset + b) for offset, r in tagged for a, b in r.window_times]
        planner = dict(opts.planner)
        if planner.get("threshold") is None:  # the tagger's own calibrated default
            planner["threshold"] = getattr(self.tagger, "default_threshold", None)
        plan = list(plan_sources(probs, labels, times, **planner))
        peak_scores = probs.max(axis=0)
        top = np.argsort(-peak_scores)[:10]
        top_tags = [dict(zip(("label", "mid"), describe_label(labels[i])), max_score=round(float(peak_scores[i]), 4))
                    for i in top]
        return plan, top_tags, result.peak, result.non_finite



def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _files_from_manifest(folder: Path, manifest: dict | None) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if not manifest:
        return files
    for entry in manifest.get("sources") or []:
        if isinstance(entry, dict) and entry.get("file"):
            files[str(entry.get("name"))] = folder / Path(str(entry["file"])).name  # never trust a path in it
    residual = manifest.get("residual")
    if isinstance(residual, dict) and residual.get("file"):
        files[RESIDUAL] = folder / Path(str(residual["file"])).name
    return files


def _plan_from_manifest(manifest: dict) -> list[GivenSource]:
    """The plan a finished recording was separated with, rebuilt from its manifest's detections."""
    plan = []
    for entry in manifest.get("detections") or []:
        if isinstance(entry, dict) and entry.get("label"):
            plan.append(GivenSource(label=str(entry["label"]), prompt=str(entry.get("prompt") or entry["label"]),
                                    segments=[tuple(seg) for seg in entry.get("segments") or []],
                                    mid=entry.get("mid"), score=entry.get("score")))
    return plan


def _rate_from_manifest(manifest: dict) -> int | None:
    settings = manifest.get("settings") or {}
    if settings.get("render") == "generative":
        return (manifest.get("separator") or {}).get("sample_rate")
    return (manifest.get("input") or {}).get("sample_rate")
