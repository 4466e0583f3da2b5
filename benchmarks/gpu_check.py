"""One short command that answers, on a GPU machine, what the CPU test suite cannot: does half precision hold, how
fast is a denoiser forward, how much memory does it take, and how many sequential model calls does a window cost.

    python benchmarks/gpu_check.py                  # on a GPU: the whole check (about 3-5 minutes on one H100)
    python benchmarks/gpu_check.py --cpu --quick    # anywhere: the same code on tiny sizes (the test suite runs it)

It prints one table (and writes it to ``--out``, default benchmarks/gpu_check.txt when run on a GPU):

* **precision**: each tiny test backbone (random weights, built here, nothing downloaded) loaded in fp16 and bf16
  against fp32 on the device: the prompt embeddings must be finite (the text encoders stay float32) and the
  stems within ``TOLERANCE`` (relative L2 distance to the fp32 stems, same seed) and finite without a retry;
* **speed and memory**: the denoiser alone (Tango's UNet from its shipped config, Stable Audio Open's and Stable
  Audio 3 medium's DiTs at diffusers' published sizes; random weights) at batch 1, 3 and 6 on a default window,
  in each precision: median forward time and peak GPU memory (``--quick``: the tiny denoisers);
* **sequential calls**: model forwards for two windows of three sources at 10 steps, one window at a time and
  both together (what ``--window-batch`` buys on a GPU); counts, the same on any device.

Nothing here is a pass/fail test of speed; the precision rows say PASS or FAIL against the stated tolerance.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
_SCRATCH = Path(tempfile.mkdtemp(prefix="autosep-gpu-check-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)  # the tiny models and private caches go
if __name__ == "__main__":  # run as a script: nothing is downloaded (a private, empty Hugging Face cache, offline)
    os.environ.update(HF_HOME=str(_SCRATCH / "hf"), HF_HUB_OFFLINE="1", AUTOSEP_CACHE=str(_SCRATCH / "cache"),
                      TOKENIZERS_PARALLELISM="false")

import torch  # noqa: E402

# Relative L2 distance of the reduced-precision stems to the fp32 ones (same weights, seed and prompts) that
# counts as agreement: bf16 keeps 8 mantissa bits, fp16 11, and 5 steps of inversion and denoising compound them.
TOLERANCE = {"fp16": 0.05, "bf16": 0.2}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SOURCES = ["cello", "flute", "violin"]


def build_tiny(names: list[str]) -> dict[str, Path]:
    """The test suite's tiny random-weight backbones, saved as a user's download would be."""
    from tiny_models.audioldm2 import build_tiny_audioldm2, install_in_hf_cache
    from tiny_models.stable_audio import build_tiny_stable_audio_3, build_tiny_stable_audio_open
    from tiny_models.tango import TEXT_ENCODER, build_tiny_flan_t5, build_tiny_tango

    folders = {}
    for name in names:
        folder = _SCRATCH / name
        if name == "audioldm2":
            folders[name] = build_tiny_audioldm2(folder)
        elif name == "tango":
            flan = build_tiny_flan_t5(_SCRATCH / "flan-t5")
            install_in_hf_cache(flan, TEXT_ENCODER)
            folders[name] = build_tiny_tango(folder, flan)
        elif name == "stable-audio-open":
            folders[name] = build_tiny_stable_audio_open(folder)
        else:
            folders[name] = build_tiny_stable_audio_3(folder)
    return folders


def test_wave(zs, seconds: float):
    generator = torch.Generator().manual_seed(0)
    samples = int(seconds * zs.sample_rate)
    t = torch.arange(samples) / zs.sample_rate
    wave = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(samples, generator=generator)
    return wave if zs.channels == 1 else torch.stack([wave, 0.8 * wave])


def precision_rows(folders: dict[str, Path], device: str, steps: int) -> list[tuple]:
    """fp16 and bf16 against fp32 on each tiny backbone: finite embeddings, stems within the tolerance."""
    import copy

    from autosep.separator import ZeroSep
    from autosep.separator.loading import load_pipeline

    rows = []
    for name, folder in folders.items():
        reference, pipe = None, load_pipeline(folder)
        for label in ("fp32", "fp16", "bf16"):
            try:  # each precision casts its own copy of the same float32 weights
                zs = ZeroSep(copy.deepcopy(pipe), name, torch.device(device), DTYPES[label])
                wave = test_wave(zs, 0.5)
                finite = all(bool(torch.isfinite(t.float()).all()) for p in SOURCES + [""]
                             for t in zs._conditioning(p).values() if t.is_floating_point())
                result = zs.separate_detailed(wave, SOURCES, steps=steps, seed=0)
            except (RuntimeError, NotImplementedError) as exc:  # an op this device has no kernel for
                rows.append(("precision", name, label, f"n/a: {str(exc).splitlines()[0][:60]}", "-"))
                continue
            if reference is None:
                reference = result.stems
            distance = float((result.stems - reference).norm() / reference.norm())
            ok = finite and not any(result.fp32_retry) and bool(torch.isfinite(result.stems).all())
            ok = ok and (label == "fp32" or distance <= TOLERANCE[label])
            limit = "" if label == "fp32" else f" (<= {TOLERANCE[label]})"
            rows.append(("precision", name, label, f"embeddings finite={finite}, stems rel. L2 {distance:.4f}{limit}, "
                         f"fp32 retries {sum(result.fp32_retry)}", "PASS" if ok else "FAIL"))
    return rows


def denoisers(quick: bool) -> dict:
    """name -> (denoiser factory, inputs factory(batch, dtype, device)) at real or tiny size."""
    from diffusers import StableAudio3DiTModel, StableAudioDiTModel, UNet2DConditionModel
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    from autosep.separator.tango_checkpoint import shipped_configs

    if quick:  # the tiny test models' sizes: the same classes and code paths
        unet_cfg = dict(in_channels=8, out_channels=8, block_out_channels=(16, 32), layers_per_block=1,
                        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), norm_num_groups=8,
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=24,
                        attention_head_dim=2, use_linear_projection=True, upcast_attention=True)
        sao_cfg = dict(sample_size=128, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
                       num_key_value_attention_heads=1, out_channels=4, cross_attention_dim=16, time_proj_dim=16,
                       global_states_input_dim=16, cross_attention_input_dim=8)
        sa3_cfg = dict(io_channels=8, patch_size=1, embed_dim=32, depth=2, num_heads=4, cond_token_dim=16,
                       global_cond_dim=16, local_add_cond_dim=5, timestep_features_dim=16, ff_mult=2,
                       num_memory_tokens=3)
        frames = {"tango": (16, 8), "stable-audio-open": 32, "stable-audio-3": 32}
    else:  # Tango's shipped UNet config; diffusers' defaults are the published SAO 1.0 and SA3 medium DiTs
        unet_cfg, sao_cfg, sa3_cfg = dict(shipped_configs()["unet"]), {}, {}
        # 10.24 s: 1024 mel frames / VAE 4x (64 mel bins / 4); SAO's 1024-frame window; SA3: 285 s / 4096 samples.
        frames = {"tango": (256, 16), "stable-audio-open": 1024, "stable-audio-3": round(285 * 44100 / 4096)}
    unet_cfg = {k: v for k, v in unet_cfg.items() if not k.startswith("_")}

    def tango_inputs(model, batch, dtype, device):
        c = model.config
        return dict(sample=torch.randn(batch, c.in_channels, *frames["tango"], device=device, dtype=dtype),
                    timestep=torch.tensor(500, device=device),
                    encoder_hidden_states=torch.randn(batch, 32, c.cross_attention_dim, device=device, dtype=dtype))

    def sao_inputs(model, batch, dtype, device):
        c = model.config
        rotary = get_1d_rotary_pos_embed(c.attention_head_dim // 2, frames["stable-audio-open"] + 1, use_real=True,
                                         repeat_interleave_real=False)
        return dict(hidden_states=torch.randn(batch, c.in_channels, frames["stable-audio-open"], device=device,
                                              dtype=dtype),
                    timestep=torch.full((batch,), 0.5, device=device),
                    encoder_hidden_states=torch.randn(batch, 130, c.cross_attention_input_dim, device=device,
                                                      dtype=dtype),
                    global_hidden_states=torch.randn(batch, 1, c.global_states_input_dim, device=device, dtype=dtype),
                    rotary_embedding=tuple(r.to(device) for r in rotary))

    def sa3_inputs(model, batch, dtype, device):
        c = model.config
        return dict(hidden_states=torch.randn(batch, c.io_channels, frames["stable-audio-3"], device=device,
                                              dtype=dtype),
                    timestep=torch.full((batch,), 0.5, device=device),
                    encoder_hidden_states=torch.randn(batch, 129, c.cond_token_dim, device=device, dtype=dtype),
                    encoder_attention_mask=torch.ones(batch, 129, device=device, dtype=torch.bool),
                    global_hidden_states=torch.randn(batch, c.global_cond_dim, device=device, dtype=dtype))

    found = {"tango UNet": (lambda: UNet2DConditionModel(**unet_cfg), tango_inputs),
             "stable-audio-open DiT": (lambda: StableAudioDiTModel(**sao_cfg), sao_inputs),
             "stable-audio-3 DiT": (lambda: StableAudio3DiTModel(**sa3_cfg), sa3_inputs)}
    if not quick:  # the real-size AudioLDM2 UNet the other benchmarks time (benchmarks/real_size.py)
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import real_size

        found = {"audioldm2 UNet": (real_size.real_size_unet,
                                    lambda model, batch, dtype, device: real_size.unet_inputs(batch, dtype, device)),
                 **found}
    return found


def speed_rows(device: str, quick: bool, repeats: int) -> list[tuple]:
    """Median forward time and peak memory of each denoiser at batch 1, 3 and 6 in each precision."""
    rows = []
    cuda = device.startswith("cuda")
    batches = (1, 3) if quick else (1, 3, 6)
    for name, (make, inputs) in denoisers(quick).items():
        torch.manual_seed(0)
        model = make().eval()
        size = sum(p.numel() for p in model.parameters())
        size = f"{size / 1e6:.0f}M" if size >= 1e6 else f"{size / 1e3:.0f}k"
        for label in ("fp32", "fp16", "bf16") if cuda else ("fp32", "bf16"):
            model.to(device, DTYPES[label])
            for batch in batches:
                kwargs = inputs(model, batch, DTYPES[label], device)
                times = []
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                try:
                    with torch.no_grad():
                        for _ in range(repeats + 1):  # the first call warms up (kernels, allocator)
                            start = time.perf_counter()
                            out = model(**kwargs, return_dict=False)[0]
                            if cuda:
                                torch.cuda.synchronize()
                            times.append(time.perf_counter() - start)
                except (RuntimeError, NotImplementedError) as exc:
                    rows.append(("speed", f"{name} ({size})", label, f"batch {batch}: n/a "
                                 f"({str(exc).splitlines()[0][:50]})", "-"))
                    continue
                peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else ""
                finite = bool(torch.isfinite(out.float()).all())
                rows.append(("speed", f"{name} ({size})", label,
                             f"batch {batch}: {statistics.median(times[1:]) * 1000:.1f} ms{peak}",
                             "finite" if finite else "NON-FINITE"))
        del model
    return rows


def call_rows(folders: dict[str, Path], device: str, steps: int) -> list[tuple]:
    """Sequential model forwards for two windows of three sources (ddpm, w = 1)."""
    from autosep.separator import ZeroSep

    rows = []
    for name, folder in folders.items():
        zs = ZeroSep.from_pretrained(folder, device=device, dtype="fp32")
        waves = [test_wave(zs, 0.5), test_wave(zs, 0.5) * 0.5]
        calls = []
        handle = zs.backbone.denoiser.register_forward_hook(lambda *args: calls.append(1))
        for together in (False, True):
            calls.clear()
            if together:
                zs.separate_windows(waves, [SOURCES] * 2, steps=steps)
            else:
                for wave in waves:
                    zs.separate(wave, SOURCES, steps=steps)
            rows.append(("calls", name, "any", f"2 windows x 3 sources, {steps} steps, "
                         f"{'together' if together else 'one at a time'}: {len(calls)} forwards", "-"))
        handle.remove()
    return rows


def print_table(rows: list[tuple], title: str, out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("check", "model", "dtype", "result", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console = Console(width=160) if not sys.stdout.isatty() else Console()
    console.print(table)
    if out is not None:
        with open(out, "w", encoding="utf-8") as handle:
            Console(file=handle, width=160).print(table)


def main(argv: list[str] | None = None, tiny: dict[str, Path] | None = None) -> int:
    """Run the check; ``tiny`` gives tiny backbone folders already built (the tests pass theirs)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is there")
    parser.add_argument("--quick", action="store_true",
                        help="AudioLDM2 and tiny denoisers only, 2 steps (seconds on a CPU; what the tests run)")
    parser.add_argument("--steps", type=int, default=5, help="diffusion steps of the precision check (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per batch (default 3)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the table here (default on a GPU: benchmarks/gpu_check.txt)")
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    out = args.out or (ROOT / "benchmarks" / "gpu_check.txt" if device == "cuda" and not args.quick else None)
    names = ["audioldm2"] if args.quick else ["audioldm2", "tango", "stable-audio-open", "stable-audio-3"]
    folders = tiny if tiny is not None else build_tiny(names)
    names = list(folders)
    rows = precision_rows(folders, device, 2 if args.quick else args.steps)
    rows += speed_rows(device, args.quick, 1 if args.quick else args.repeats)
    rows += call_rows({n: folders[n] for n in names[:1] + names[-1:]}, device, 2 if args.quick else 10)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print_table(rows, f"autosep GPU check on {name} (torch {torch.__version__})", out)
    return 1 if any(row[-1] in ("FAIL", "NON-FINITE") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
