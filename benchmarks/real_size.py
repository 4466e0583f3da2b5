"""The real-size AudioLDM2 UNet (cvssp/audioldm2's architecture, random weights), shared by the benchmarks.

Nothing is downloaded: the architecture is rebuilt from the published config's numbers and initialised randomly,
which is enough to time forwards and loading (timing and memory do not depend on the weights' values).
"""

from __future__ import annotations

import torch

SECONDS = 10.24
LATENT_FRAMES = 256  # 10.24 s at 100 mel frames per second, downsampled 4x by the VAE
LATENT_BINS = 16  # 64 mel bins, downsampled 4x


def real_size_unet(seed: int = 0):
    """cvssp/audioldm2's UNet: 4 levels, and in every attention block a self-attention, then cross-attention to
    GPT-2's 768-wide generated embeddings and to Flan-T5's 1024-wide states (347 M parameters)."""
    from diffusers import AudioLDM2UNet2DConditionModel

    torch.manual_seed(seed)
    return AudioLDM2UNet2DConditionModel(
        in_channels=8, out_channels=8, block_out_channels=(128, 256, 384, 640), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=[[None, 768, 1024]] * 4, attention_head_dim=(4, 8, 12, 20),
    ).eval()


def unet_inputs(batch: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict:
    """One forward's inputs for a 10.24 s clip: latents, a timestep, GPT-2 and T5 conditioning (8 / 12 tokens)."""
    return dict(
        sample=torch.randn(batch, 8, LATENT_FRAMES, LATENT_BINS, dtype=dtype, device=device),
        timestep=torch.tensor(500, device=device),
        encoder_hidden_states=torch.randn(batch, 8, 768, dtype=dtype, device=device),
        encoder_hidden_states_1=torch.randn(batch, 12, 1024, dtype=dtype, device=device),
        encoder_attention_mask_1=torch.ones(batch, 12, dtype=torch.long, device=device),
    )
