"""Separation over a whole recording, window by window, streamed to the stem files.

Each window runs the separator only for the planned sources active in it (their tagged segments plus a
margin), so c_inv there is built from the sources active in that same window; a silent window or one with no
active source is not separated at all (its stems are silence). The renderer turns each window's stems into its
output piece; pieces are cross-faded into their neighbours and written as soon as no later window can change
them. The separator was loaded with its separation settings bound, so this loop passes only audio and prompts;
a multi-channel separator gets the window's channels when the renderer says it hears them (``stem_channels``).
With ``window_batch`` > 1, that many windows (with sources active) go through the separator together; each gets
the result it would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..waveforms import Window, fit_length, plan_windows, resample, to_mono
from ..taggers.sources import Source
from .manifest import ResidualReport, StemReport
from .. import stopping
from .progress import Progress
from .recording import SILENCE_PEAK, Recording
from .render import Renderer, StemPaths
from .settings import WindowSettings
from .windows import OverlapAdd, scale_windows
from .write import StemWriters


@dataclass
class SeparationReport:
    """What the loop did: one report per source stem, the residual's, the per-window log and the UNet work."""

    stems: list[StemReport]
    residual: ResidualReport | None
    windows: list[dict]
    unet_evaluations: int

    @property
    def separated_windows(self) -> int:
        return sum(1 for window in self.windows if window["sources"])


@dataclass
class _Queued:
    """A window read and waiting for its batch: the sources planned in it and those to separate (none when silent)."""

    window: Window
    planned_active: list[int]
    original: np.ndarray  # the window's frames at the recording's rate
    active: list[int]


@dataclass
class _Run:
    """One run over a recording: its grid and mixer, and what the windows separated so far added up to."""

    plan: list[Source]
    renderer: Renderer
    windows: list[Window]
    model_windows: list[Window]  # the same windows at the separator's rate
    actives: list[list[int]]  # per window, the planned sources active in it
    mixer: OverlapAdd
    c_inv: list[list[dict]]  # per source, {"window", "c_inv"} for every window it was separated in
    fp32_retry: list[bool]
    window_log: list[dict] = field(default_factory=list)
    unet_evaluations: int = 0


class WindowedSeparation:
    """One loaded separator (the ``ZeroSep`` contract: ``sample_rate``, ``separate_detailed``) applied to
    recordings window by window."""

    def __init__(self, separator, windows: WindowSettings, progress: Progress):
        self.separator = separator
        self.windows = windows
        self.progress = progress
        self.model_rate = int(separator.sample_rate)

    def _active(self, plan: list[Source], start_s: float, end_s: float) -> list[int]:
        margin = self.windows.margin_s
        return [i for i, source in enumerate(plan)
                if any(a - margin < end_s and b + margin > start_s for a, b in source.segments)]

    def run(self, recording: Recording, plan: list[Source], renderer: Renderer, paths: StemPaths,
            writers: StemWriters) -> SeparationReport:
        """Separate ``plan`` over ``recording`` into ``writers`` (``paths.all``, opened by the caller, who commits).

        In steps: lay out the window grid (and which sources are active in each window), then read each window
        and queue it; every ``window_batch`` windows with active sources are separated together and their pieces
        rendered and mixed into the writers (:meth:`_flush`); last, what the writers saw becomes the report."""
        run = self._lay_out(recording, plan, renderer, writers)
        # Windows go through the separator --window-batch at a time (their inversions and reverse passes share
        # forwards); each window's result is the one it would get alone.
        per_call = max(1, int(self.windows.window_batch or 1))
        rate = recording.sample_rate
        pending: list[_Queued] = []
        for w, planned_active in zip(run.windows, run.actives):
            original = recording.read(w.start, w.length)
            # A digitally silent window holds no source: its stems are silence, no need to run the model.
            silent = bool(planned_active) and float(np.abs(original).max()) < SILENCE_PEAK
            active = [] if silent else planned_active
            run.window_log.append({"index": w.index, "start_s": round(w.start / rate, 3),
                                   "end_s": round(w.end / rate, 3), "sources": [plan[i].label for i in active],
                                   **({"silent": True} if silent else {})})
            pending.append(_Queued(w, planned_active, original, active))
            if sum(1 for queued in pending if queued.active) >= per_call:
                self._flush(run, pending, rate)
        self._flush(run, pending, rate)
        run.mixer.finish()
        return self._report(run, paths, writers)

    def _lay_out(self, recording: Recording, plan: list[Source], renderer: Renderer, writers: StemWriters
                 ) -> "_Run":
        """The window grid at the recording's rate and at the separator's, the sources active in each window,
        and the mixer that cross-fades the rendered pieces into the writers."""
        rate = recording.sample_rate
        window_frames, hop, fade = self.windows.frames(rate)
        windows = plan_windows(recording.frames, window_frames, hop)
        laid, total, laid_fade = renderer.grid(windows, fade)
        ratio = self.model_rate / rate  # the separator hears each window resampled to its own rate
        model_windows = scale_windows(windows, ratio, round(recording.frames * ratio))
        actives = [self._active(plan, w.start / rate, w.end / rate) for w in windows]
        self.progress.start_windows(len(windows), sum(len(a) for a in actives))
        emitted = 0

        def sink(block: np.ndarray) -> None:
            nonlocal emitted
            renderer.emit(emitted, block, writers.write, len(plan))
            emitted += len(block)

        mixer = OverlapAdd(laid, total, renderer.piece_shape(len(plan)), laid_fade, sink)
        return _Run(plan, renderer, windows, model_windows, actives, mixer,
                    c_inv=[[] for _ in plan], fp32_retry=[False] * len(plan))

    def _flush(self, run: "_Run", pending: list["_Queued"], rate: int) -> None:
        """Separate the queued windows that have active sources (in one call), render each queued window's piece
        (silence where nothing is active: the projected residual takes it all) and mix it in, in order."""
        todo = [queued for queued in pending if queued.active]
        channels = run.renderer.stem_channels
        results = self._separate_windows([q.original for q in todo],
                                         [run.model_windows[q.window.index].length for q in todo], rate, channels,
                                         [[run.plan[i].prompt for i in q.active] for q in todo])
        by_window = {q.window.index: result for q, result in zip(todo, results)}
        for queued in pending:
            index = queued.window.index
            if not queued.active:
                run.mixer.add(index, None)
            else:
                result, model_length = by_window[index], run.model_windows[index].length
                run.unet_evaluations += int(result.unet_evaluations)
                stems = np.zeros((len(run.plan), channels, model_length), dtype=np.float32)
                separated = _to_numpy(result.stems).reshape(len(queued.active), channels, -1)
                for row, i in enumerate(queued.active):
                    stems[i] = fit_length(separated[row].T, model_length).T  # fit_length works on axis 0
                    run.c_inv[i].append({"window": index, "c_inv": result.inversion_prompts[row]})
                    run.fp32_retry[i] = run.fp32_retry[i] or bool(result.fp32_retry[row])
                run.mixer.add(index, run.renderer.piece(queued.original, stems))
            self.progress.window_done(index, len(queued.planned_active))
            stopping.checkpoint()
        pending.clear()

    @staticmethod
    def _report(run: "_Run", paths: StemPaths, writers: StemWriters) -> SeparationReport:
        """One report per source stem (its prompts, and what its writer saw), the residual's, the window log."""
        reports = [StemReport(name=source.label, file=writer.path.name, mid=source.mid, c_rev=source.prompt,
                              c_inv=run.c_inv[i], fp32_retry=run.fp32_retry[i], peak=writer.peak,
                              clipped_samples=writer.clipped_samples, silent=writer.peak < SILENCE_PEAK)
                   for i, (source, writer) in enumerate(zip(run.plan, writers.writers))]
        residual = None
        if paths.residual is not None:
            writer = writers[len(run.plan)]
            residual = ResidualReport(writer.path.name, writer.peak, writer.clipped_samples)
        return SeparationReport(reports, residual, run.window_log, run.unet_evaluations)

    def _step(self, done: int, total: int) -> None:
        """The separator's callback after every diffusion step: a stop asked for (Ctrl-C, SIGTERM) ends the
        UNet loop here, between steps, instead of after the whole window."""
        stopping.checkpoint()
        self.progress.steps(done, total)

    def _separate_windows(self, originals: list[np.ndarray], model_lengths: list[int], rate: int, channels: int,
                          prompts: list[list[str]]) -> list:
        """The separator's results for some windows: each heard as the channel average (``[samples]``), or with
        ``channels`` > 1 as its channels (``[channels, samples]``), at the separator's rate. Several windows go
        in one ``separate_windows`` call; one window (or a separator without it) through ``separate_detailed``."""
        waves = []
        for original, model_length in zip(originals, model_lengths):
            if channels > 1:
                waves.append(np.stack([fit_length(resample(np.ascontiguousarray(original[:, c]), rate,
                                                           self.model_rate), model_length) for c in range(channels)]))
            else:
                waves.append(fit_length(resample(to_mono(original), rate, self.model_rate), model_length))
        if len(waves) > 1 and hasattr(self.separator, "separate_windows"):
            return self.separator.separate_windows(waves, prompts, progress=self._step)
        return [self.separator.separate_detailed(wave, sources=p, progress=self._step)
                for wave, p in zip(waves, prompts)]


def _to_numpy(stems) -> np.ndarray:
    if hasattr(stems, "detach"):
        stems = stems.detach().to("cpu").float().numpy()
    return np.asarray(stems, dtype=np.float32)
