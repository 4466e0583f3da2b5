"""How far reduced precision moves ZeroSep's result, and why the DDIM inversion runs in float32.

bf16 on CPU stands in for fp16 on CUDA (both round the UNet's noise prediction to ~3 significant digits). On the
tiny random-weight AudioLDM2 of the test fixtures (nothing is downloaded), a 2.56 s mixture is inverted with
c_inv = "flute" and denoised with c_rev = "cello" at w = 1, with the UNet in float32 (the reference: the same
bf16-rounded weights, cast up) and in bf16 for the inversion, the reverse pass or both. The table gives each
result's relative distance ||a - ref|| / ||ref|| to the float32 run: for x_T after the inversion, and for the final
latents. DDIM inversion chains every step on the last and amplifies rounding; DDPM's does not (its x_t are drawn
independently).

    python benchmarks/inversion_precision.py [--steps 10 25 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from autosep.separator import ZeroSep, mel  # noqa: E402
from autosep.separator.guidance import GuidedNoise  # noqa: E402
from autosep.separator.inversion import (  # noqa: E402
    auxiliary_noise,
    ddim_invert,
    ddpm_invert,
    make_inverse_scheduler,
    make_scheduler,
    reverse,
)


def separate(inverter: ZeroSep, reverser: ZeroSep, x0: torch.Tensor, inversion: str, steps: int):
    """(x_T, final latents): inversion with ``inverter``'s UNet precision, the reverse pass with ``reverser``'s."""
    config = inverter.pipe.scheduler.config
    scheduler = make_scheduler(config, steps)
    inverting, reversing = GuidedNoise(inverter._predict, 1.0), GuidedNoise(reverser._predict, 1.0)
    with torch.no_grad():
        if inversion == "ddim":
            x_top = ddim_invert(make_inverse_scheduler(config, steps), x0, lambda x, t: inverting(x, t, ["flute"]))
            return x_top, reverse(scheduler, x_top, lambda x, t: reversing(x, t, ["cello"]))
        noise = auxiliary_noise(tuple(x0.shape), steps, seed=42)
        x_top, maps = ddpm_invert(scheduler, x0, lambda x, t: inverting(x, t, ["flute"]), noise)
        return x_top, reverse(scheduler, x_top, lambda x, t: reversing(x, t, ["cello"]), maps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tiny_models.audioldm2 import build_tiny_audioldm2

    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_audioldm2(Path(folder) / "tiny-audioldm2")
        low = ZeroSep.from_pretrained(path, device="cpu", dtype="bf16")
        full = ZeroSep.from_pretrained(path, device="cpu", dtype="fp32")
    for module in [full.pipe.unet]:  # the same (bf16-rounded) weights; text encoders are float32 in both
        module.to(torch.bfloat16).to(torch.float32)

    t = torch.arange(40_960) / mel.SAMPLE_RATE
    noise = torch.randn(t.shape[0], generator=torch.Generator().manual_seed(1))
    wave = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * noise
    scaled, _ = mel.normalise(wave)
    with torch.no_grad():
        x0 = full._encode(mel.pad_to_multiple(scaled, full.backbone.frame_multiple))

    def distance(a: torch.Tensor, b: torch.Tensor) -> str:
        return f"{float((a - b).norm() / b.norm()):.3f}"

    table = Table(title="Relative distance to the float32 run (tiny AudioLDM2, bf16 UNet on CPU)")
    for column in ("inversion", "steps", "x_T: bf16 inversion", "latents: all bf16",
                   "latents: fp32 inversion, bf16 reverse"):
        table.add_column(column, justify="left" if column == "inversion" else "right")
    for inversion in ("ddim", "ddpm"):
        for steps in args.steps:
            top_ref, ref = separate(full, full, x0, inversion, steps)
            top_low, all_low = separate(low, low, x0, inversion, steps)
            _, mixed = separate(full, low, x0, inversion, steps)
            table.add_row(inversion.upper(), str(steps), distance(top_low, top_ref), distance(all_low, ref),
                          distance(mixed, ref))
    console = Console(width=150) if not sys.stdout.isatty() else Console()
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
