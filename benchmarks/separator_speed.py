"""How much UNet work ZeroSep does, against the one-source-at-a-time reference loop.

Default run: the tiny random-weight AudioLDM2 from the test fixtures (built into a temporary folder, nothing is
downloaded), a 10.24 s mixture, 3 sources, 50 steps. Each autosep configuration is compared with a baseline that
separates one source at a time and evaluates both guidance branches at every inversion and denoising step, as the
published reference code does (4 N UNet sample-evaluations per source for N steps).

``--real-unet`` also times the real-size AudioLDM2 UNet (its published architecture, random weights: 347 M
parameters) on the 8 x 256 x 16 latent of a 10.24 s clip at batch 1, 2 and 3, and estimates what a 3-source
separation costs on this CPU with and without autosep's batching and branch skipping.

    python benchmarks/separator_speed.py [--steps 50] [--threads 1] [--real-unet] [--real-evals 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from autosep.separator import ZeroSep, mel  # noqa: E402
from autosep.separator.inversion import auxiliary_noise, ddpm_invert, make_scheduler, reverse  # noqa: E402

SOURCES = ["cello", "flute", "violin"]
SECONDS = 10.24


@dataclass
class Run:
    name: str
    forwards: int
    evaluations: int
    unconditional: int
    seconds: float
    per_pass: list[int] | None = None  # UNet sample-evaluations of each pass (iterative separation)


class ForwardCounter:
    """Counts UNet forward calls (batches) by wrapping the module's forward."""

    def __init__(self, unet):
        self.unet = unet
        self.calls = 0
        self._original = unet.forward

        def counted(*args, **kwargs):
            self.calls += 1
            return self._original(*args, **kwargs)

        unet.forward = counted

    def close(self):
        del self.unet.forward


def mixture(seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * mel.SAMPLE_RATE)) / mel.SAMPLE_RATE
    gen = torch.Generator().manual_seed(0)
    return 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.2 * torch.sin(2 * torch.pi * 660 * t) + \
        0.05 * torch.randn(t.shape[0], generator=gen)


def run_autosep(zs: ZeroSep, wave, steps, inversion, inv_prompt, guidance, passes=1) -> Run:
    counter = ForwardCounter(zs.pipe.unet)
    start = time.perf_counter()
    result = zs.separate_detailed(wave, SOURCES, inversion=inversion, steps=steps, guidance=guidance,
                                  inv_prompt=inv_prompt, passes=passes)
    seconds = time.perf_counter() - start
    counter.close()
    name = f"autosep {inversion.upper()} + \"{inv_prompt}\", w={guidance:g}"
    if passes > 1:
        name += f", {passes} passes"
    return Run(name, counter.calls, result.unet_evaluations, result.details["unconditional_evaluations"], seconds,
               result.details["unet_evaluations_per_pass"])


def run_reference_loop(zs: ZeroSep, wave, steps, guidance) -> Run:
    """One source at a time; every step evaluates [unconditional, conditional] as a batch of 2 (reference code)."""
    counter = ForwardCounter(zs.pipe.unet)
    before = zs._evaluations
    start = time.perf_counter()
    with torch.no_grad():
        scaled, unscale = mel.normalise(wave)
        padded = mel.pad_to_multiple(scaled, zs.frame_multiple)
        for source in SOURCES:
            x0 = zs._encode(padded)

            def both_branches(prompt):
                def eps(x, t):
                    u, c = zs._predict(torch.cat([x, x]), t, ["", prompt]).chunk(2)
                    return u + guidance * (c - u)
                return eps

            scheduler = make_scheduler(zs.pipe.scheduler.config, steps, zs.device)
            noise = auxiliary_noise(tuple(x0.shape), steps, seed=42)
            x_top, zs_maps = ddpm_invert(scheduler, x0, both_branches(""), noise, zero_last=False)
            zs_maps[-1] = torch.zeros_like(zs_maps[-1])
            latents = reverse(scheduler, x_top, both_branches(source), zs_maps)
            zs._decode(latents)[:, : wave.shape[0]] * unscale
    seconds = time.perf_counter() - start
    counter.close()
    evaluations = zs._evaluations - before
    return Run("reference loop: 1 source at a time, both branches", counter.calls, evaluations, evaluations // 2,
               seconds)


def tiny_model_table(console: Console, steps: int) -> None:
    from tiny_models.audioldm2 import build_tiny_audioldm2

    with tempfile.TemporaryDirectory() as folder:
        zs = ZeroSep.from_pretrained(build_tiny_audioldm2(Path(folder) / "tiny-audioldm2"), device="cpu")
        wave = mixture(SECONDS)
        zs.separate(wave[:16_000], SOURCES, steps=2)  # warm-up: text encodings and first-call overheads
        baseline = run_reference_loop(zs, wave, steps, guidance=1.0)
        runs = [
            run_autosep(zs, wave, steps, "ddpm", "null", 1.0),
            run_autosep(zs, wave, steps, "ddpm", "others", 1.0),
            run_autosep(zs, wave, steps, "ddim", "null", 1.0),
            run_autosep(zs, wave, steps, "ddpm", "null", 3.0),
            run_autosep(zs, wave, steps, "ddpm", "others", 0.5),  # highlighting: both branches
            run_autosep(zs, wave, steps, "ddpm", "others", 1.0, passes=2),  # iterative separation
            run_autosep(zs, wave, steps, "ddpm", "null", 1.0, passes=2),
        ]
    table = Table(title=f"Tiny AudioLDM2, {SECONDS} s mixture, {len(SOURCES)} sources, {steps} steps, CPU "
                        f"({torch.get_num_threads()} thread(s))")
    for column in ("configuration", "UNet forwards", "UNet sample-evals", "evals per pass", "uncond. evals",
                   "fewer evals than ref.", "wall time (s)"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for run in [baseline, *runs]:
        ratio = baseline.evaluations / run.evaluations
        per_pass = " + ".join(str(n) for n in run.per_pass) if run.per_pass else str(run.evaluations)
        table.add_row(run.name, str(run.forwards), str(run.evaluations), per_pass, str(run.unconditional),
                      f"{ratio:.2f}x", f"{run.seconds:.1f}")
    console.print(table)


def real_unet_table(console: Console, steps: int, evals: int) -> None:
    from diffusers import AudioLDM2UNet2DConditionModel

    torch.manual_seed(0)
    # cvssp/audioldm2's UNet: 4 levels, 32 channels per attention head, and in every attention block a
    # self-attention, then cross-attention to GPT-2's 768-wide generated embeddings and to Flan-T5's 1024-wide states.
    unet = AudioLDM2UNet2DConditionModel(
        in_channels=8, out_channels=8, block_out_channels=(128, 256, 384, 640), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=[[None, 768, 1024]] * 4, attention_head_dim=(4, 8, 12, 20),
    ).eval()
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    frames = int(SECONDS * mel.SAMPLE_RATE) // mel.HOP_LENGTH

    per_forward: dict[int, float] = {}
    with torch.no_grad():
        for batch in (1, 2, 3):
            inputs = dict(
                sample=torch.randn(batch, 8, frames // 4, mel.N_MELS // 4), timestep=torch.tensor(500),
                encoder_hidden_states=torch.randn(batch, 8, 768), encoder_hidden_states_1=torch.randn(batch, 12, 1024),
                encoder_attention_mask_1=torch.ones(batch, 12, dtype=torch.long),
            )
            unet(**inputs)  # warm-up
            start = time.perf_counter()
            for _ in range(evals):
                unet(**inputs)
            per_forward[batch] = (time.perf_counter() - start) / evals

    table = Table(title=f"Real-size AudioLDM2 UNet ({params:.0f} M parameters, random weights), latent 8 x "
                        f"{frames // 4} x {mel.N_MELS // 4} ({SECONDS} s), CPU ({torch.get_num_threads()} thread(s)), "
                        f"mean of {evals}")
    for column in ("batch", "s per forward", "s per sample-evaluation"):
        table.add_column(column, justify="right")
    for batch, seconds in per_forward.items():
        table.add_row(str(batch), f"{seconds:.2f}", f"{seconds / batch:.2f}")
    console.print(table)

    n = steps
    reference = len(SOURCES) * 2 * n * per_forward[2]  # per source: N inversion + N reverse forwards of batch 2
    autosep_null = (n - 1) * per_forward[1] + n * per_forward[3]
    autosep_others = (n - 1) * per_forward[3] + n * per_forward[3]
    estimate = Table(title=f"Estimated UNet time for a {SECONDS} s clip, {len(SOURCES)} sources, {n} steps "
                           "(from the timings above)")
    for column in ("configuration", "forwards", "sample-evals", "UNet time (min)"):
        estimate.add_column(column, justify="left" if column == "configuration" else "right")
    estimate.add_row("reference loop (both branches, 1 source at a time)", str(len(SOURCES) * 2 * n),
                     str(len(SOURCES) * 4 * n), f"{reference / 60:.1f}")
    estimate.add_row('autosep DDPM + "null", w=1', str(2 * n - 1), str((n - 1) + len(SOURCES) * n),
                     f"{autosep_null / 60:.1f}")
    estimate.add_row('autosep DDPM + "others", w=1', str(2 * n - 1), str(len(SOURCES) * (2 * n - 1)),
                     f"{autosep_others / 60:.1f}")
    console.print(estimate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--real-unet", action="store_true", help="also time the real-size AudioLDM2 UNet")
    parser.add_argument("--real-evals", type=int, default=2, help="timed forwards per batch size (real UNet)")
    parser.add_argument("--skip-tiny", action="store_true", help="only the real-size UNet timings")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=150) if not sys.stdout.isatty() else Console()
    if not args.skip_tiny:
        tiny_model_table(console, args.steps)
    if args.real_unet:
        real_unet_table(console, args.steps, args.real_evals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
