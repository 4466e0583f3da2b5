"""How much UNet work ZeroSep does, against the published reference code's loop.

Three measurements, all on the CPU, nothing downloaded:

1. **Counts** (exact): the separator runs its real code path on the tiny AudioLDM2 test fixture with the UNet's
   forward replaced by a recorder that returns zeros (which forwards are made, and how big, does not depend on the
   values), for a 10.24 s window with 3 sources at ``--steps`` steps. Per window: sequential UNet calls (what a
   GPU waits for one after another), sample-evaluations (the work), unconditional evaluations, and the ratio of
   sample-evaluations against the published code. Per minute of audio: the same for the windows of a 60 s
   recording (10.24 s windows, ``--overlap``), with windows batched ``--window-batch`` at a time.
2. **Wall times** of the tiny model (real forwards) at ``--time-steps`` steps: median, min and max of ``--repeats``
   runs, interleaved (every configuration once per round) so a change in machine load hits all of them alike.
3. ``--real-unet``: the real-size AudioLDM2 UNet (its published architecture, random weights, 347 M parameters)
   on the 8 x 256 x 16 latent of a 10.24 s clip: seconds per forward and per sample at batch 1, 3 and 6, and the
   growth of peak memory (to size ``batch_size``).

The reference loop reproduces the published ZeroSep / edit-friendly DDPM code's calls: one source at a time, every
UNet call a batch of 1; the inversion evaluates the unconditional branch at every step, plus the conditional one
when c_inv is a prompt, and the reverse pass evaluates both branches at every step whatever the guidance weight.
That is 3 N sample-evaluations per source with the null c_inv and 4 N with a prompt, all sequential.

    python benchmarks/separator_speed.py [--steps 50] [--time-steps 20] [--repeats 3] [--threads 2] [--real-unet]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from autosep.separator import ZeroSep, mel  # noqa: E402
from autosep.separator.guidance import GuidedNoise  # noqa: E402
from autosep.separator.inversion import auxiliary_noise, ddpm_invert, make_scheduler, reverse  # noqa: E402
from autosep.separator.prompts import inversion_prompts  # noqa: E402
from autosep.waveforms import plan_windows  # noqa: E402

SOURCES = ["cello", "flute", "violin"]
SECONDS = 10.24
MINUTE = 60.0


@dataclass(frozen=True)
class Config:
    name: str
    reference: bool  # the published code's loop, else autosep
    inversion: str = "ddpm"
    inv_prompt: str = "others"
    guidance: float = 1.0
    passes: int = 1  # iterative separation: compared with the published loop run this many times

    @property
    def baseline(self) -> "Config":
        """The published loop this configuration is compared with: same c_inv kind (null or a prompt)."""
        return REFERENCE_NULL if self.inv_prompt == "null" else REFERENCE_PROMPT


REFERENCE_NULL = Config("published code, null c_inv (3N per source)", True, inv_prompt="null")
REFERENCE_PROMPT = Config("published code, c_inv = other prompts (4N per source)", True, inv_prompt="others")
CONFIGS = [
    REFERENCE_NULL,
    REFERENCE_PROMPT,
    Config('autosep DDPM + "null", w=1', False, "ddpm", "null", 1.0),
    Config('autosep DDPM + "others", w=1 (default)', False, "ddpm", "others", 1.0),
    Config('autosep DDIM + "null", w=1', False, "ddim", "null", 1.0),
    Config('autosep DDIM + "others", w=1', False, "ddim", "others", 1.0),
    Config('autosep DDPM + "null", w=3', False, "ddpm", "null", 3.0),
    Config('autosep DDPM + "others", w=3', False, "ddpm", "others", 3.0),
    Config('autosep DDPM + "others", w=0.5 (highlighting)', False, "ddpm", "others", 0.5),
    Config('autosep DDPM + "null", w=1, 2 passes', False, "ddpm", "null", 1.0, passes=2),
    Config('autosep DDPM + "others", w=1, 2 passes', False, "ddpm", "others", 1.0, passes=2),
]


@dataclass
class Work:
    sizes: list[int] = field(default_factory=list)  # batch size of each UNet forward, in order

    @property
    def calls(self) -> int:
        return len(self.sizes)

    @property
    def evaluations(self) -> int:
        return sum(self.sizes)


class Recorder:
    """Records every UNet forward's batch size; with ``stub`` the forward returns zeros instead of running."""

    def __init__(self, unet, stub: bool):
        self.unet, self.work = unet, Work()
        original = unet.forward

        def forward(sample, *args, **kwargs):
            self.work.sizes.append(int(sample.shape[0]))
            if stub:
                return (torch.zeros_like(sample),)
            return original(sample, *args, **kwargs)

        unet.forward = forward

    def close(self) -> Work:
        del self.unet.forward
        return self.work


def mixture(seconds: float, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(seconds * mel.SAMPLE_RATE)) / mel.SAMPLE_RATE
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.2 * torch.sin(2 * torch.pi * 660 * t) + \
        0.05 * torch.randn(t.shape[0], generator=gen)


def reference_window(zs: ZeroSep, wave: torch.Tensor, steps: int, config: Config) -> torch.Tensor:
    """The published loop: per source, DDPM inversion then reverse, every branch its own batch-1 forward."""
    c_inv = inversion_prompts(SOURCES, config.inv_prompt)
    stems = []
    with torch.no_grad():
        scaled, unscale = mel.normalise(wave)
        padded = mel.pad_to_multiple(scaled, zs.backbone.frame_multiple)
        for source, inv in zip(SOURCES, c_inv):
            x0 = zs._encode(padded)

            def branches(prompt: str, w: float) -> Callable:
                def eps(x, t):
                    uncond = zs._predict(x, t, [""])
                    if prompt == "":  # the reference skips the conditional call for the empty source prompt
                        return uncond
                    cond = zs._predict(x, t, [prompt])
                    return uncond + w * (cond - uncond)
                return eps

            scheduler = make_scheduler(zs.pipe.scheduler.config, steps, zs.device)
            noise = auxiliary_noise(tuple(x0.shape), steps, seed=42)
            # The reference evaluates every inversion step (its last z is then set to 0 by ZeroSep's reverse).
            x_top, maps = ddpm_invert(scheduler, x0, branches(inv, 1.0), noise, zero_last=False)
            maps[-1] = torch.zeros_like(maps[-1])
            latents = reverse(scheduler, x_top, branches(source, config.guidance), maps)
            stems.append(zs._decode(latents)[:, 0, : wave.shape[0]] * unscale)
    return torch.cat(stems)


def run_windows(zs: ZeroSep, waves: list[torch.Tensor], steps: int, config: Config) -> list:
    """Separate ``waves``; autosep's results (for their per-pass work), none for the published loop."""
    if config.reference:
        for wave in waves:
            reference_window(zs, wave, steps, config)
        return []
    return zs.separate_windows(waves, [SOURCES] * len(waves), inversion=config.inversion, steps=steps,
                               guidance=config.guidance, inv_prompt=config.inv_prompt, passes=config.passes)


def count(zs: ZeroSep, waves: list[torch.Tensor], steps: int, config: Config, window_batch: int = 1) -> Work:
    """Exact UNet work for ``waves``, separated ``window_batch`` at a time (UNet forward stubbed out)."""
    recorder = Recorder(zs.pipe.unet, stub=True)
    # The VAE decode and vocoder make no UNet calls: skipped too (silent stems of the right length).
    zs._decode = lambda latents: torch.zeros(latents.shape[0], 1,
                                             round(SECONDS * mel.SAMPLE_RATE) + zs.backbone.frame_multiple)
    try:
        for start in range(0, len(waves), window_batch):
            run_windows(zs, waves[start:start + window_batch], steps, config)
    finally:
        work = recorder.close()
        del zs._decode
    return work


def parse_overlap(text: str, window_s: float) -> float:
    """Overlap in seconds from ``1s`` or a fraction of the window (``0.25``, ``25%``)."""
    text = text.strip().lower()
    if text.endswith("s"):
        return float(text[:-1])
    if text.endswith("%"):
        return float(text[:-1]) / 100 * window_s
    return float(text) * window_s


def minute_windows(overlap_s: float) -> int:
    rate = mel.SAMPLE_RATE
    window = round(SECONDS * rate)
    return len(plan_windows(round(MINUTE * rate), window, max(1, window - round(overlap_s * rate))))


def counts_tables(console: Console, zs: ZeroSep, steps: int, overlap_s: float, window_batches: list[int],
                  batch_size: int | None) -> None:
    wave = mixture(SECONDS)
    windows = minute_windows(overlap_s)
    per_window = {config: count(zs, [wave], steps, config) for config in CONFIGS}
    per_pass = {config: _per_pass(zs, wave, steps, config) for config in CONFIGS}
    table = Table(title=f"UNet work per {SECONDS} s window, {len(SOURCES)} sources, {steps} steps, batch_size="
                        f"{batch_size or 'unbounded (default)'} (exact counts)")
    for column in ("configuration", "sequential UNet calls", "sample-evals", "sample-evals per pass", "uncond. evals",
                   "fewer sequential calls than published", "fewer evals than published"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for config in CONFIGS:
        work, base = per_window[config], per_window[config.baseline]
        uncond = unconditional_evaluations(zs, steps, config)
        # K passes are compared with the published loop run K times (it has no passes of its own).
        table.add_row(config.name, str(work.calls), str(work.evaluations), per_pass[config], str(uncond),
                      f"{base.calls * config.passes / work.calls:.2f}x",
                      f"{base.evaluations * config.passes / work.evaluations:.2f}x")
    console.print(table)

    minute = Table(title=f"UNet work per minute of audio: {windows} windows of {SECONDS} s overlapping by "
                         f"{overlap_s:g} s, {len(SOURCES)} sources in every window, {steps} steps (exact counts)")
    minute.add_column("configuration")
    for column in ("window batch", "sequential UNet calls", "sample-evals", "fewer sequential calls than published",
                   "fewer evals than published"):
        minute.add_column(column, justify="right")
    waves = [mixture(SECONDS, seed=k) for k in range(windows)]
    baselines = {c: count(zs, waves, steps, c) for c in (REFERENCE_NULL, REFERENCE_PROMPT)}
    for config in CONFIGS:
        for window_batch in ([1] if config.reference else window_batches):
            work = baselines[config] if config.reference else count(zs, waves, steps, config, window_batch)
            base = baselines[config.baseline]
            minute.add_row(config.name, str(window_batch), str(work.calls), str(work.evaluations),
                           f"{base.calls * config.passes / work.calls:.2f}x",
                           f"{base.evaluations * config.passes / work.evaluations:.2f}x")
    console.print(minute)


def _per_pass(zs: ZeroSep, wave: torch.Tensor, steps: int, config: Config) -> str:
    """Sample-evaluations of each pass, as the separator reports them ("-" for the published loop)."""
    if config.reference:
        return "-"
    recorder = Recorder(zs.pipe.unet, stub=True)
    try:
        (result,) = run_windows(zs, [wave], steps, config)
    finally:
        recorder.close()
    return " + ".join(str(n) for n in result.details["unet_evaluations_per_pass"])


def unconditional_evaluations(zs: ZeroSep, steps: int, config: Config) -> int:
    if config.reference:  # the unconditional branch at every inversion and every reverse step, per source
        return len(SOURCES) * 2 * steps
    if config.passes > 1:  # later passes invert each source's own stem: count them as the separator does
        recorder = Recorder(zs.pipe.unet, stub=True)
        try:
            (result,) = run_windows(zs, [mixture(SECONDS)], steps, config)
        finally:
            recorder.close()
        return result.details["unconditional_evaluations"]
    noise_for = GuidedNoise(zs._predict, config.guidance)
    c_inv = list(dict.fromkeys(inversion_prompts(SOURCES, config.inv_prompt)))
    inverted = steps - 1 if config.inversion == "ddpm" else steps
    return sum(noise_for.branch_counts(c)[1] for c in c_inv) * inverted + \
        sum(noise_for.branch_counts(s)[1] for s in SOURCES) * steps


def timing_table(console: Console, zs: ZeroSep, steps: int, repeats: int) -> None:
    wave = mixture(SECONDS)
    zs.separate(wave[:16_000], SOURCES, steps=2)  # warm-up: text encodings and first-call overheads
    seconds: dict[Config, list[float]] = {c: [] for c in CONFIGS}
    for _ in range(repeats):
        for config in CONFIGS:  # interleaved: each round runs every configuration once
            start = time.perf_counter()
            run_windows(zs, [wave], steps, config)
            seconds[config].append(time.perf_counter() - start)
    table = Table(title=f"Tiny AudioLDM2 wall time per {SECONDS} s window, {len(SOURCES)} sources, {steps} steps, "
                        f"CPU ({torch.get_num_threads()} thread(s)), {repeats} interleaved runs")
    for column in ("configuration", "median (s)", "min (s)", "max (s)", "faster than published (median)"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for config in CONFIGS:
        values = seconds[config]
        base = statistics.median(seconds[config.baseline])
        table.add_row(config.name, f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}",
                      f"{base / statistics.median(values):.2f}x")
    console.print(table)


def real_unet_table(console: Console, evals: int) -> None:
    from real_size import LATENT_BINS, LATENT_FRAMES, real_size_unet, unet_inputs

    unet = real_size_unet()
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    rows = []
    with torch.no_grad():
        for batch in (1, 3, 6):  # increasing, so each peak-memory reading is this batch size's own peak
            inputs = unet_inputs(batch)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            unet(**inputs)  # warm-up
            times = []
            for _ in range(evals):
                start = time.perf_counter()
                unet(**inputs)
                times.append(time.perf_counter() - start)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            rows.append((batch, times, (peak - before) * 1024 / 1e6))
    table = Table(title=f"Real-size AudioLDM2 UNet ({params:.0f} M parameters, random weights, float32), latent 8 x "
                        f"{LATENT_FRAMES} x {LATENT_BINS} ({SECONDS} s), CPU ({torch.get_num_threads()} thread(s)), "
                        f"{evals} timed forwards per batch size after a warm-up")
    for column in ("batch", "s per forward (median)", "min", "max", "s per sample", "peak memory growth (MB)"):
        table.add_column(column, justify="right")
    for batch, times, growth in rows:
        median = statistics.median(times)
        table.add_row(str(batch), f"{median:.2f}", f"{min(times):.2f}", f"{max(times):.2f}", f"{median / batch:.2f}",
                      f"{growth:.0f}")
    console.print(table)
    console.print("No GPU figure exists: this benchmark has only been run on CPUs (no GPU was available).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="steps for the exact counts (default 50)")
    parser.add_argument("--time-steps", type=int, default=10, help="steps for the wall times (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed runs per configuration")
    parser.add_argument("--overlap", default="1s", help="window overlap for the per-minute table (1s, 25%%...)")
    parser.add_argument("--window-batch", type=int, action="append", default=None,
                        help="window batch sizes for the per-minute table (repeatable; default 1 and 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--real-unet", action="store_true", help="also time the real-size AudioLDM2 UNet")
    parser.add_argument("--real-evals", type=int, default=2, help="timed forwards per batch size (real UNet)")
    parser.add_argument("--skip-timing", action="store_true", help="exact counts only")
    parser.add_argument("--skip-tiny", action="store_true", help="only the real-size UNet timings")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=200) if not sys.stdout.isatty() else Console()
    console.print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} torch thread(s)")
    if not args.skip_tiny:
        from tiny_models.audioldm2 import build_tiny_audioldm2

        with tempfile.TemporaryDirectory() as folder:
            zs = ZeroSep.from_pretrained(build_tiny_audioldm2(Path(folder) / "tiny-audioldm2"), device="cpu")
            counts_tables(console, zs, args.steps, parse_overlap(args.overlap, SECONDS), args.window_batch or [1, 4],
                          zs.batch_size)
            if not args.skip_timing:
                timing_table(console, zs, args.time_steps, args.repeats)
    if args.real_unet:
        real_unet_table(console, args.real_evals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
