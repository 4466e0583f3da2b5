"""Inverting a clean latent to noise and denoising it back, with the diffusers DDIM scheduler doing every step.

Two inversions from the ZeroSep paper:

* DDPM "edit-friendly" inversion (Huberman-Spiegelglas et al., CVPR 2024): noisy latents x_t are drawn
  independently for every inference timestep, and the noise maps z_t = (x_{t-1} - mu_t(x_t)) / sigma_t are
  extracted so that the stochastic reverse step x_{t-1} = mu_t(x_t) + sigma_t z_t lands on them again.
  mu_t and sigma_t are the DDIM scheduler's own quantities at eta = 1 (its step with ``variance_noise=z`` is the
  reverse step), so inversion and reverse agree to float precision.
* DDIM inversion (deterministic), reversed by DDIM with eta = 0.

``eps_fn(latents, t)`` returns the model's prediction (already guided) for a batch of latents; it is the only model
call. It is in the scheduler's ``prediction_type``: noise for AudioLDM/AudioLDM2, v for Tango. Every step goes
through the scheduler's own ``step``, which converts the prediction, so both inversions and the reverse pass hold for
either kind (sigma_t depends only on the noise schedule).

The DDPM inversion's model calls are independent of each other (every x_t is drawn in advance), so
:func:`ddpm_invert_batched` makes them all at once, through one ``eps_all(latents [M, B, ...], timesteps [M])``
that the caller may split however memory requires; :func:`ddpm_invert` is the same computation step by step (the
published code's order) and agrees with it to float rounding. DDIM inversion stays sequential: each step starts
from the previous step's output.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from .prompts import INVERSIONS  # noqa: F401  (re-exported: the inversion names)

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# eps_all(latents [M, B, ...], timesteps [M]) -> eps [M, B, ...]: the noise of B latents at each of M timesteps.
EpsAllFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OnStep = Callable[[], None]


def make_scheduler(config, steps: int, device: torch.device | str = "cpu") -> DDIMScheduler:
    """A DDIM scheduler with the checkpoint's noise schedule, set to ``steps`` inference steps."""
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(steps, device=device)
    return scheduler


def make_inverse_scheduler(config, steps: int, device: torch.device | str = "cpu") -> DDIMInverseScheduler:
    inverse = DDIMInverseScheduler.from_config(config)
    inverse.set_timesteps(steps, device=device)
    return inverse


def auxiliary_noise(shape: tuple[int, ...], steps: int, seed: int) -> list[torch.Tensor]:
    """The DDPM inversion's noise: one ``torch.randn(shape)`` per inference timestep, in ascending t.

    Drawn on the CPU from a generator seeded with ``seed``, so the same seed gives the same noise on any machine.
    Entry i belongs to the i-th smallest timestep.
    """
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return [torch.randn(shape, generator=generator) for _ in range(steps)]


def _previous_timestep(scheduler: DDIMScheduler, timestep: torch.Tensor) -> int:
    # The same rule DDIMScheduler.step uses to find t-1.
    return int(timestep) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps


def sigma(scheduler: DDIMScheduler, timestep: torch.Tensor | int) -> torch.Tensor:
    """sigma_t at eta = 1: the standard deviation DDIMScheduler.step adds with ``variance_noise``.

    Computed from the scheduler's public schedule (``alphas_cumprod``, and ``final_alpha_cumprod`` past the first
    training step) with DDIM's formula, eq. 16 of Song et al.:
    sigma_t^2 = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), a the cumulative alpha products.
    """
    t = int(timestep)
    previous = _previous_timestep(scheduler, timestep)
    alpha_t = scheduler.alphas_cumprod[t]
    alpha_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod
    variance = (1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)
    return variance ** 0.5


def ddpm_invert(
    scheduler: DDIMScheduler,
    x0: torch.Tensor,
    eps_fn: EpsFn,
    noise: list[torch.Tensor],
    zero_last: bool = True,
    on_step: OnStep | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Edit-friendly DDPM inversion of ``x0`` [B, ...] (float32). Returns (x_T, z) with z aligned to
    ``scheduler.timesteps`` (descending t).

    ``noise[i]`` (see :func:`auxiliary_noise`) makes x_t for the i-th smallest timestep; it broadcasts over the
    batch. With ``zero_last`` (the default, as in the reference implementation) z is 0 at the last step, so the
    reverse pass ends on the model's own estimate mu_1(x_1, c_rev) instead of being pulled back to the mixture;
    that step then needs no model call. ``zero_last=False`` keeps the exact z there and the reverse pass with the
    same prompts reproduces ``x0``.
    """
    timesteps = scheduler.timesteps
    count = len(timesteps)
    noisy = noisy_latents(scheduler, x0, noise)
    x = noisy[0]
    x_top = x
    zs: list[torch.Tensor] = []
    for i, t in enumerate(timesteps):
        last = i == count - 1
        if last and zero_last:
            zs.append(torch.zeros_like(x0))
        else:
            target = x0 if last else noisy[i + 1]
            eps = eps_fn(x, t)
            mu = scheduler.step(eps, t, x, eta=1.0, variance_noise=torch.zeros_like(x)).prev_sample
            z = (target - mu) / sigma(scheduler, t)
            zs.append(z)
            # Carry on from exactly what the reverse step produces, so rounding never accumulates between them.
            x = scheduler.step(eps, t, x, eta=1.0, variance_noise=z).prev_sample
        if on_step is not None:
            on_step()
    return x_top, zs


def noisy_latents(scheduler: DDIMScheduler, x0: torch.Tensor, noise: list[torch.Tensor]) -> list[torch.Tensor]:
    """The edit-friendly inversion's x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise, one per ``scheduler.timesteps``
    (descending t); ``noise`` is in ascending t (see :func:`auxiliary_noise`) and broadcasts over the batch."""
    count = len(scheduler.timesteps)
    if len(noise) != count:
        raise ValueError(f"need one noise tensor per timestep ({count}), got {len(noise)}")
    alphas = scheduler.alphas_cumprod.to(x0.device, torch.float32)
    return [
        alphas[t].sqrt() * x0 + (1 - alphas[t]).sqrt() * noise[count - 1 - i].to(x0.device, x0.dtype)
        for i, t in enumerate(scheduler.timesteps)
    ]


def ddpm_invert_batched(
    scheduler: DDIMScheduler,
    x0: torch.Tensor,
    eps_all: EpsAllFn,
    noise: list[torch.Tensor],
    zero_last: bool = True,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`ddpm_invert` with every model call made at once: ``eps_all`` gets the noisy latents of all the
    timesteps that need the model, stacked [M, B, ...], with their timesteps [M] (M = steps - 1 with
    ``zero_last``, else steps), and returns their noise predictions in the same layout.

    Each z_t is then worked out from x_t, its prediction and x_{t-1} exactly as in the step-by-step form; the
    only difference is that the reverse step starts from the drawn x_t rather than from the previous reverse
    step's (equal up to float rounding) output.
    """
    timesteps = scheduler.timesteps
    count = len(timesteps)
    noisy = noisy_latents(scheduler, x0, noise)
    evaluated = count - 1 if zero_last else count
    eps = eps_all(torch.stack(noisy[:evaluated]), timesteps[:evaluated]) if evaluated else None
    zs: list[torch.Tensor] = []
    for i, t in enumerate(timesteps):
        if i >= evaluated:
            zs.append(torch.zeros_like(x0))
            continue
        target = x0 if i == count - 1 else noisy[i + 1]
        mu = scheduler.step(eps[i], t, noisy[i], eta=1.0, variance_noise=torch.zeros_like(x0)).prev_sample
        zs.append((target - mu) / sigma(scheduler, t))
    return noisy[0], zs


def ddim_invert(
    inverse_scheduler: DDIMInverseScheduler, x0: torch.Tensor, eps_fn: EpsFn, on_step: OnStep | None = None
) -> torch.Tensor:
    """Deterministic DDIM inversion of ``x0`` to x_T (eq. 2 of the ZeroSep paper), with diffusers' inverse DDIM."""
    x = x0
    for t in inverse_scheduler.timesteps:
        x = inverse_scheduler.step(eps_fn(x, t), t, x).prev_sample
        if on_step is not None:
            on_step()
    return x


def reverse(
    scheduler: DDIMScheduler,
    x_top: torch.Tensor,
    eps_fn: EpsFn,
    zs: list[torch.Tensor] | None = None,
    on_step: OnStep | None = None,
) -> torch.Tensor:
    """Denoise ``x_top`` to x_0: with ``zs`` the DDPM step (eta = 1, variance noise z_t), else DDIM (eta = 0)."""
    x = x_top
    for i, t in enumerate(scheduler.timesteps):
        eps = eps_fn(x, t)
        if zs is None:
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        else:
            x = scheduler.step(eps, t, x, eta=1.0, variance_noise=zs[i]).prev_sample
        if on_step is not None:
            on_step()
    return x
