"""Separation over a whole recording, window by window, streamed to the stem files.

Each window runs the separator only for the planned sources active in it (their tagged segments plus a
margin), so c_inv there is built from the sources active in that same window; a silent window or one with no
active source is not separated at all (its stems are silence). The per-window stems are rendered (projected
or generative), cross-faded into the neighbouring windows and written as soon as no later window can change
them.

A multi-channel separator (Stable Audio: stereo) gets a recording with its channel count as it is and returns
stems per channel; any other recording goes through it as the channel average (mono stems). The window length
defaults to the separator's own (its training length).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..frames import resample
from .progress import Progress
from .reading import SILENCE_PEAK, AudioReader
from .render import project
from .windows import OverlapAdd, Window, fit_length, plan_windows, scale_windows
from .write import StemWriter


DEFAULT_WINDOW_S = 10.24  # AudioLDM/AudioLDM2's training length, for separators that do not say theirs


def window_seconds(options, separator) -> float:
    """The window length a run uses: ``--window`` when given, else the separator's default."""
    if options.window is not None:
        return float(options.window)
    return float(getattr(separator, "default_window", DEFAULT_WINDOW_S))


def model_channels_for(separator, input_channels: int) -> int:
    """Channels the separator works on for a recording: its own count when the recording has exactly that many
    (stereo in, stereo stems), else 1 (the channel average)."""
    channels = int(getattr(separator, "channels", 1))
    return channels if channels > 1 and input_channels == channels else 1


class WindowedSeparation:
    """One loaded separator applied to recordings window by window (``options`` as in PipelineOptions)."""

    def __init__(self, separator, options, progress: Progress):
        self.separator = separator
        self.options = options
        self.progress = progress
        self.model_rate = int(getattr(separator, "sample_rate", 16000))
        self.unet_evaluations = 0  # samples through the UNet in the last run (the manifest's work record)

    def _active(self, plan: list, start_s: float, end_s: float) -> list[int]:
        margin = self.options.margin
        return [i for i, source in enumerate(plan)
                if any(a - margin < end_s and b + margin > start_s for a, b in source.segments)]

    def run(self, reader: AudioReader, plan: list, paths: list[Path], subtype: str, out_rate: int,
            out_channels: int) -> tuple[list[dict], dict | None, list[dict]]:
        """Separate ``plan`` over ``reader`` and stream the stems to ``paths`` (one per source, then the residual
        in projected mode). Returns per-stem info, residual info and the per-window log for the manifest.
        Files are renamed to their final names only when complete; on any error or Ctrl-C they are removed."""
        opts = self.options
        rate = reader.sample_rate
        model_rate = self.model_rate
        projected = opts.render == "projected"
        if not plan:
            return [], None, []
        window_frames = max(1, round(window_seconds(opts, self.separator) * rate))
        stem_channels = model_channels_for(self.separator, reader.channels)
        windows = plan_windows(reader.frames, window_frames, max(1, round(window_frames * (1 - opts.overlap))))
        fade = round(window_frames * opts.overlap)
        model_frames = round(reader.frames * model_rate / rate)
        model_windows = scale_windows(windows, model_rate / rate, model_frames)
        actives = [self._active(plan, w.start / rate, w.end / rate) for w in windows]
        self.progress.start_windows(len(windows), sum(len(a) for a in actives))

        writers: list[StemWriter] = []
        try:
            for path in paths:
                writers.append(StemWriter(path, opts.format, subtype, out_rate, out_channels))

            written = 0

            def sink(block: np.ndarray) -> None:
                nonlocal written
                if projected:
                    # The residual is the input minus the stems exactly as stored: with integer PCM the files
                    # add up to the input bit for bit, whatever rounding happened in the masks and cross-fades.
                    residual = reader.read(written, len(block)).astype(np.float64)
                    for k, writer in enumerate(writers[:-1]):
                        residual -= writer.write(block[:, k, :])  # what the file holds, clipping counted
                    writers[-1].write(residual.astype(np.float32))
                else:
                    for k, writer in enumerate(writers):
                        writer.write(block[:, k, :])
                written += len(block)

            if projected:
                mixer = OverlapAdd(windows, reader.frames, (len(writers), out_channels), fade, sink)
            else:
                mixer = OverlapAdd(model_windows, model_frames, (len(writers), stem_channels),
                                   round(fade * model_rate / rate), sink)
            self.unet_evaluations = 0
            c_inv: list[list[dict]] = [[] for _ in plan]
            fp32_retry = [False] * len(plan)
            window_log = []
            for w, mw, planned_active in zip(windows, model_windows, actives):
                original = reader.read(w.start, w.length)
                # A digitally silent window holds no source: its stems are silence, no need to run the model.
                silent = bool(planned_active) and float(np.abs(original).max()) < SILENCE_PEAK
                active = [] if silent else planned_active
                stems = self._separate_window(original, rate, mw, plan, active, c_inv, fp32_retry, w,
                                              stem_channels)
                window_log.append({"index": w.index, "start_s": round(w.start / rate, 3),
                                   "end_s": round(w.end / rate, 3), "sources": [plan[i].label for i in active],
                                   **({"silent": True} if silent else {})})
                # No active source: the stems stay silent there (the residual, computed in sink, takes it all).
                if not active:
                    mixer.add(w.index, None)
                elif projected:
                    mixer.add(w.index, project(original, stems, model_rate, rate))
                else:
                    mixer.add(w.index, stems.transpose(2, 0, 1))  # [frames, sources, channels]
                self.progress.window_done(w.index, len(planned_active))
            mixer.finish()
            for writer in writers:
                writer.commit()
        except BaseException:
            for writer in writers:
                writer.abort()
            raise

        stems_info = []
        for i, (source, writer) in enumerate(zip(plan, writers)):
            stems_info.append({
                "name": source.label, "file": writer.path.name, "mid": source.mid, "c_rev": source.prompt,
                "c_inv": c_inv[i],
                "windows_active": len(c_inv[i]), "fp32_retry": fp32_retry[i],
                "peak": round(writer.peak, 6), "silent": writer.peak < SILENCE_PEAK,
                "clipped_samples": writer.clipped_samples,
            })
        residual_info = None
        if projected:
            writer = writers[-1]
            residual_info = {"file": writer.path.name, "peak": round(writer.peak, 6),
                             "clipped_samples": writer.clipped_samples}
        return stems_info, residual_info, window_log

    def _separate_window(self, original: np.ndarray, rate: int, model_window: Window, plan: list,
                         active: list[int], c_inv: list[list[dict]], fp32_retry: list[bool],
                         window: Window, channels: int = 1) -> np.ndarray:
        """The generative stems of one window, float32 ``[len(plan), channels, model frames]``; inactive sources
        are 0. ``channels`` > 1: the window's channels go through the separator as they are."""
        opts = self.options
        stems = np.zeros((len(plan), channels, model_window.length), dtype=np.float32)
        if not active:
            return stems
        if channels > 1:
            wave = np.stack([fit_length(resample(np.ascontiguousarray(original[:, c]), rate, self.model_rate),
                                        model_window.length) for c in range(channels)])
        else:
            mono = original.mean(axis=1, dtype=np.float32)
            wave = fit_length(resample(mono, rate, self.model_rate), model_window.length)
        result = self.separator.separate_detailed(
            wave, sources=[plan[i].prompt for i in active], inversion=opts.inversion, steps=opts.steps,
            guidance=opts.guidance, inv_prompt=opts.inv_prompt, seed=opts.seed, progress=self.progress.steps,
        )
        self.unet_evaluations += int(result.unet_evaluations)
        separated = _to_numpy(result.stems)
        separated = separated.reshape(len(active), channels, -1)
        for row, i in enumerate(active):
            stems[i] = fit_length(separated[row].T, model_window.length).T  # fit_length works on axis 0
            c_inv[i].append({"window": window.index, "c_inv": result.inversion_prompts[row]})
            fp32_retry[i] = fp32_retry[i] or bool(result.fp32_retry[row])
        return stems


def _to_numpy(stems) -> np.ndarray:
    if hasattr(stems, "detach"):
        stems = stems.detach().to("cpu").float().numpy()
    return np.asarray(stems, dtype=np.float32)
