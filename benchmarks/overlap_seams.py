"""What the window overlap buys: seam error at window boundaries against the work it costs.

A real recording is rendered offline (nothing downloaded): a piano melody and a drum pattern from a generated
MIDI file through fluidsynth with the General MIDI soundfont (fluid-soundfont-gm), and a sentence from
espeak-ng, mixed at 16 kHz. The clip C is shorter than one window, so separating it alone is a run with no window
boundary at all; the recording R is C repeated ``--repeats`` times. If windowing were free, R's stems would be C's
stems repeated. For each overlap the whole autosep pipeline (projected render, the sources given with -s) runs on
R, and its stems are compared with the repeated no-window stems:

* **seam error**: error energy over reference energy (dB) where windowing can show: in every overlap and 0.5 s
  either side of every window edge inside the recording;
* **interior error**: the same away from any window edge. The separator sees a different context in every
  window, so this is not zero either; a good overlap brings the seam error down to the interior's.

It also reports the work per minute of audio: windows of a 60 s recording and UNet sample-evaluations (3 sources
active everywhere, the default DDPM + "others" at ``--steps``).

The separator is the tiny random-weight AudioLDM2 of the test fixtures (no real weights can be downloaded here),
so the figures measure what windowing and cross-fading do to a diffusion separator's output, not the real
model's separation quality.

    python benchmarks/overlap_seams.py [--steps 10] [--repeats 3] [--overlaps 0s,0.5s,1s,2s,2.56s]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from real_audio import render_midi, speak  # noqa: E402

RATE = 16_000
WINDOW_S = 10.24
SOURCES = ["piano", "drums", "speech"]
SENTENCE = "The quick brown fox jumps over the lazy dog, while the band keeps playing in the next room."


def music(seconds: float) -> list[tuple[int, int, list]]:
    """A piano melody (program 0, channel 0) over a rock drum pattern (channel 9), a beat every 0.5 s."""
    melody = [60, 64, 67, 72, 71, 67, 64, 62, 60, 65, 69, 72, 70, 65, 62, 59]
    piano, drums = [], []
    for beat in range(int(seconds / 0.5)):
        start = beat * 0.5
        piano.append((start, 0.5 - 40 / 960, melody[beat % len(melody)], 90))
        for offset, drum in ((0.0, 36 if beat % 2 == 0 else 38), (0.0, 42), (0.25, 42)):
            drums.append((start + offset, 60 / 960, drum, 100))
    return [(0, 0, piano), (0, 9, drums)]


def render_clip(folder: Path, seconds: float) -> np.ndarray:
    """The clip C (mono float32 at 16 kHz): fluidsynth music plus espeak-ng speech."""
    from autosep.waveforms import resample

    music_wav = render_midi(music(seconds), folder / "music.wav", 44100)
    speech_wav = speak(SENTENCE, folder / "speech.wav", words_per_minute=150)
    parts = []
    for path in (music_wav, speech_wav):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        mono = resample(data.mean(axis=1), rate, RATE)
        mono = np.pad(mono, (0, max(0, round(seconds * RATE) - len(mono))))[: round(seconds * RATE)]
        parts.append(mono / (np.abs(mono).max() + 1e-9))
    mix = 0.5 * parts[0] + 0.35 * parts[1]
    return (0.9 * mix / np.abs(mix).max()).astype(np.float32)


def parse_seconds(text: str) -> float:
    text = text.strip().lower()
    return float(text[:-1]) if text.endswith("s") else float(text) * WINDOW_S


def separate(model: Path, wave: np.ndarray, folder: Path, name: str, window_s: float, overlap: float,
             steps: int) -> tuple[dict[str, np.ndarray], dict]:
    import autosep

    path = folder / f"{name}.wav"
    sf.write(str(path), wave, RATE, subtype="FLOAT")
    result = autosep.separate_file(path, sources=SOURCES, model=str(model), steps=steps, window=window_s,
                                   overlap=overlap, render="projected", out=str(folder / f"out-{name}"),
                                   format="wav", bit_depth="32f", device="cpu", overwrite=True)
    return {label: result.stems[label][:, 0] for label in SOURCES}, result.manifest


def seam_zone(frames: int, overlap_s: float) -> np.ndarray:
    """Frames where windowing can show: every overlap, and 0.5 s either side of every window edge inside the
    recording (the separator hears padding or a cut there)."""
    from autosep.waveforms import plan_windows

    window = round(WINDOW_S * RATE)
    windows = plan_windows(frames, window, max(1, window - round(overlap_s * RATE)))
    zone = np.zeros(frames, bool)
    half = RATE // 2
    for a, b in zip(windows, windows[1:]):
        zone[b.start:a.end] = True
        for edge in (a.end, b.start):
            zone[max(0, edge - half): edge + half] = True
    return zone


def error_db(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    err = float(np.sum((estimate[mask] - reference[mask]) ** 2))
    ref = float(np.sum(reference[mask] ** 2))
    return 10 * np.log10((err + 1e-12) / (ref + 1e-12))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--clip", type=float, default=6.0, help="seconds of the clip C (shorter than a window)")
    parser.add_argument("--repeats", type=int, default=6, help="R is C repeated this many times")
    parser.add_argument("--overlaps", default="0s,0.5s,1s,2s,2.56s", help="comma-separated; seconds or fractions")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch
    from rich.console import Console
    from rich.table import Table

    from autosep.waveforms import plan_windows
    from tiny_models.audioldm2 import build_tiny_audioldm2

    torch.set_num_threads(args.threads)
    for tool in ("fluidsynth", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install fluidsynth fluid-soundfont-gm espeak-ng)")
    overlaps = [parse_seconds(o) for o in args.overlaps.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_tiny_audioldm2(folder / "tiny")
        clip = render_clip(folder, args.clip)
        reference_clip, _ = separate(model, clip, folder, "clip", WINDOW_S, 0.0, args.steps)
        recording = np.tile(clip, args.repeats)
        reference = {k: np.tile(v, args.repeats) for k, v in reference_clip.items()}
        frames = len(recording)
        window = round(WINDOW_S * RATE)
        for overlap_s in overlaps:
            stems, manifest = separate(model, recording, folder, f"r{overlap_s:g}", WINDOW_S, overlap_s / WINDOW_S,
                                       args.steps)
            seams = seam_zone(frames, overlap_s)
            interior = ~seams
            # The recording's own start and end are no seams; keep them out of the interior too.
            interior[:RATE] = interior[-RATE:] = False
            estimate = np.concatenate([stems[k] for k in SOURCES])
            ref = np.concatenate([reference[k] for k in SOURCES])
            seam_mask, interior_mask = np.tile(seams, len(SOURCES)), np.tile(interior, len(SOURCES))
            minute_windows = len(plan_windows(60 * RATE, window, max(1, window - round(overlap_s * RATE))))
            per_window = manifest["work"]["unet_evaluations"] / max(1, manifest["work"]["separated_windows"])
            rows.append((overlap_s, error_db(estimate, ref, seam_mask), error_db(estimate, ref, interior_mask),
                         minute_windows, minute_windows * per_window, manifest["work"]["windows"]))

    table = Table(title=f"Window overlap: seam error vs work. Tiny AudioLDM2 (random weights), {args.clip:g} s clip "
                        f"(fluidsynth piano + drums, espeak-ng speech) repeated {args.repeats}x, {len(SOURCES)} "
                        f"sources, {args.steps} steps, {WINDOW_S} s windows, projected render")
    for column in ("overlap (s)", "overlap (% of window)", "seam error (dB)", "interior error (dB)",
                   "seam - interior (dB)", "windows per minute", "UNet evals per minute",
                   "evals per minute at 50 steps (3 x 99 per window)"):
        table.add_column(column, justify="right")
    for overlap_s, seam, inner, minute_windows, evals, _ in rows:
        table.add_row(f"{overlap_s:g}", f"{100 * overlap_s / WINDOW_S:.0f}%", f"{seam:.1f}", f"{inner:.1f}",
                      f"{seam - inner:+.1f}", str(minute_windows), f"{evals:.0f}",
                      f"{minute_windows * len(SOURCES) * (2 * 50 - 1):.0f}")
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
