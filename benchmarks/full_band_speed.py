"""Cost of ZeroSep per backbone: DiT/UNet evaluations per separated second, CPU time on the tiny test models, and
the real models' parameter counts (their published architectures instantiated without weights).

    python benchmarks/full_band_speed.py [--threads 2] [--steps 50]

3 sources per window, w = 1, the default window of each backbone. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tiny_models.audioldm2 import build_tiny_audioldm2  # noqa: E402
from tiny_models.stable_audio import build_tiny_stable_audio_3, build_tiny_stable_audio_open  # noqa: E402

from autosep.separator import ZeroSep  # noqa: E402

SOURCES = ["cello", "flute", "violin"]


def real_parameter_counts() -> dict[str, str]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderOobleck, AutoencoderSAME, StableAudio3DiTModel, StableAudioDiTModel

    def count(module) -> str:
        return f"{sum(p.numel() for p in module.parameters()) / 1e9:.2f}B"

    with init_empty_weights():
        # stable-audio-open-1.0's DiT (model_config: embed 1536, depth 24, 24 heads, cond 768) and Oobleck VAE;
        # Stable Audio 3 medium: diffusers' default StableAudio3DiTModel and SAME-L.
        sao = StableAudioDiTModel(sample_size=1024, in_channels=64, num_layers=24, attention_head_dim=64,
                                  num_attention_heads=24, num_key_value_attention_heads=12, out_channels=64,
                                  cross_attention_dim=768, time_proj_dim=256, global_states_input_dim=1536,
                                  cross_attention_input_dim=768)
        sa3 = StableAudio3DiTModel()
        same_l = AutoencoderSAME(encoder_channels=256, encoder_transformer_depths=(12,))
        return {"stable-audio-open": f"DiT {count(sao)}, VAE {count(AutoencoderOobleck())}",
                "stable-audio-3": f"DiT {count(sa3)}, VAE {count(same_l)}",
                "audioldm2": "UNet 0.35B"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = real_parameter_counts()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        builders = {"audioldm2": build_tiny_audioldm2, "stable-audio-open": build_tiny_stable_audio_open,
                    "stable-audio-3": build_tiny_stable_audio_3}
        for name, build in builders.items():
            zs = ZeroSep.from_pretrained(build(Path(tmp) / name), device="cpu")
            real_window = zs.backbone.known_window()  # the published checkpoint's default window
            seconds = min(zs.default_window, 2.56)
            frames = int(seconds * zs.sample_rate)
            wave = 0.1 * torch.randn((zs.channels, frames) if zs.channels > 1 else (frames,),
                                     generator=torch.Generator().manual_seed(0))
            for inv_prompt in ("null", "others"):
                zs.separate(wave, SOURCES, steps=2, inv_prompt=inv_prompt)  # warm-up
                start = time.perf_counter()
                result = zs.separate_detailed(wave, SOURCES, steps=args.steps, inv_prompt=inv_prompt)
                wall = time.perf_counter() - start
                evals = result.unet_evaluations
                rate = f"{zs.sample_rate / 1000:g} kHz x{zs.channels}"
                rows.append((name, rate, inv_prompt, evals, f"{evals / real_window:.2g}", f"{wall:.2f} ({seconds:.2f} s)",
                             params[name]))
    print(f"3 sources, {args.steps} steps, DDPM/edit-friendly inversion, w = 1, {args.threads} threads\n")
    print("| backbone | works at | c_inv | evals per window | evals per separated second (real window) "
          "| tiny-model CPU time, s (window) | real model parameters |")
    print("|---|---|---|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
