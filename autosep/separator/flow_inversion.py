"""Inverting a clean latent to noise and back for the full-band backbones' samplers, with their diffusers schedulers.

Stable Audio Open samples with ``CosineDPMSolverMultistepScheduler``: DPM-Solver++ (2M, midpoint) for the
variance-exploding SDE x_sigma = x0 + sigma n, with a v-predicting denoiser D(x, sigma) preconditioned as in EDM.
Stable Audio 3 samples a rectified flow x_t = (1 - t) x0 + t n with ``FlowMatchEulerDiscreteScheduler`` (Euler on
the velocity v = n - x0). For each sampler there are two inversions, written as explicit steps:

* **Edit-friendly** (Huberman-Spiegelglas et al., CVPR 2024; for Stable Audio Open as in Manor & Michaeli, ICML
  2024): a noisy latent is drawn independently for every timestep from the forward process (x0 + sigma_i n_i, or
  (1 - t_i) x0 + t_i n_i), and each step's noise is solved for so that the sampler's step from x_i lands exactly on
  x_{i+1}. The reverse pass replays those noises, so with c_rev = c_inv it reproduces x0 (to float rounding). Since
  every x_i is known in advance, all the model evaluations of the inversion are independent: they run in batched
  forwards (``model_fn`` receives every timestep at once and chunks by its batch size).
* **Deterministic ODE** (DDIM-style): integrate the probability-flow ODE from x0 up to the top noise level with the
  c_inv prediction at the current point, then back down with c_rev. Each step depends on the previous one.

The scheduler does every step it can: the SDE update (its own first/second-order DPM-Solver++ logic and history)
and the Euler update are ``scheduler.step`` calls. For the SDE the solver's Gaussian noise is supplied through the
scheduler's ``noise_sampler`` slot (its Brownian-tree sampler otherwise), which is what makes the noise solvable.

``model_fn(x [B, ...], sigma [B]) -> output [B, ...]`` (float32) is the only model call: the raw, guided model
output (v-prediction for Stable Audio Open, velocity for Stable Audio 3) at noise level ``sigma`` per row.
"""

from __future__ import annotations

from typing import Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OnStep = Callable[[], None]


class _SuppliedNoise:
    """Stands in the scheduler's ``noise_sampler`` slot: returns the noise set for the coming step."""

    def __init__(self):
        self.noise: torch.Tensor | None = None

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        if self.noise is None:
            raise RuntimeError("no noise supplied for this SDE step")
        return self.noise


def sde_scheduler(config, steps: int, device: torch.device | str = "cpu"):
    """Stable Audio Open's ``CosineDPMSolverMultistepScheduler`` set to ``steps`` steps, its noise supplied by us."""
    from diffusers import CosineDPMSolverMultistepScheduler

    scheduler = CosineDPMSolverMultistepScheduler.from_config(config)
    scheduler.set_timesteps(steps, device=device)
    return _restart(scheduler)


def _restart(scheduler):
    """Clear the multistep solver's history (each pass starts fresh) and supply its noise ourselves."""
    scheduler.set_timesteps(scheduler.num_inference_steps, device=scheduler.timesteps.device)
    scheduler.noise_sampler = _SuppliedNoise()  # set_timesteps clears it; step() only builds its own when unset
    return scheduler


def _sde_noise_scale(scheduler, i: int) -> torch.Tensor:
    """The factor of the Gaussian noise in step i, computed as the scheduler's update computes it:
    sigma_{i+1} sqrt(1 - exp(-2h)), h = lambda_{i+1} - lambda_i, lambda = -log sigma (alpha = 1). 0 at sigma = 0."""
    sigma_s, sigma_t = scheduler.sigmas[i], scheduler.sigmas[i + 1]
    alpha_t, sigma_t = scheduler._sigma_to_alpha_sigma_t(sigma_t)
    alpha_s, sigma_s = scheduler._sigma_to_alpha_sigma_t(sigma_s)
    h = (torch.log(alpha_t) - torch.log(sigma_t)) - (torch.log(alpha_s) - torch.log(sigma_s))
    return sigma_t * torch.sqrt(1.0 - torch.exp(-2.0 * h))


def _sde_step(scheduler, output: torch.Tensor, i: int, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    scheduler.noise_sampler.noise = noise
    return scheduler.step(output, scheduler.timesteps[i], x).prev_sample


def _rows(sigma: torch.Tensor, batch: int, device) -> torch.Tensor:
    return sigma.to(device=device, dtype=torch.float32).reshape(1).expand(batch)


def _evaluate_all(model_fn: ModelFn, xs: list[torch.Tensor], sigmas: list[torch.Tensor]) -> list[torch.Tensor]:
    """The model at every (x_i, sigma_i) in one call: the latents stacked timestep-major [N * B, ...] with their
    per-row noise levels (``model_fn`` splits them into forwards of its batch size). Returns one output per step."""
    if not xs:
        return []
    batch = xs[0].shape[0]
    levels = torch.cat([_rows(s, batch, xs[0].device) for s in sigmas])
    return list(model_fn(torch.cat(xs), levels).split(batch))


def auxiliary_noise(shape: tuple[int, ...], steps: int, seed: int) -> list[torch.Tensor]:
    """The edit-friendly inversions' noise: one ``torch.randn(shape)`` per timestep, in sampling order (the first
    entry belongs to the highest noise level). Drawn on the CPU from ``seed``: the same on every machine."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return [torch.randn(shape, generator=generator) for _ in range(steps)]


# -- Stable Audio Open: DPM-Solver++ (SDE) --------------------------------------------------------------------

def sde_edit_friendly_invert(
    scheduler, x0: torch.Tensor, model_fn: ModelFn, noise: list[torch.Tensor], zero_last: bool = True,
    on_step: OnStep | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Edit-friendly inversion of ``x0`` [B, ...] for the SDE DPM-Solver++ sampler of ``scheduler``
    (see :func:`sde_scheduler`). Returns (x_top, z, residual).

    x_i = x0 + sigma_i noise[i] for every step i (sigma_0 the highest); z_i is the solver noise that takes step i
    from x_i to x_{i+1}. The last step ends at sigma = 0, where the solver adds no noise and lands on the denoiser's
    estimate D(x_{N-1}); ``residual`` = x0 - D(x_{N-1}) closes that gap. With ``zero_last`` (default, as the DDPM
    inversion's z_1 = 0) the residual is zero and the reverse pass ends on the model's own estimate for c_rev.
    """
    _restart(scheduler)
    sigmas = scheduler.sigmas
    count = len(scheduler.timesteps)
    if len(noise) != count:
        raise ValueError(f"need one noise tensor per step ({count}), got {len(noise)}")
    noisy = [x0 + sigmas[i].to(x0.device) * noise[i].to(x0.device, x0.dtype) for i in range(count)]
    # With zero_last the last step's output is never used: count - 1 evaluations.
    needed = count - 1 if zero_last else count
    outputs = _evaluate_all(model_fn, noisy[:needed], [sigmas[i] for i in range(needed)])
    if on_step is not None:
        for _ in range(count):
            on_step()
    # Walk the solver over the drawn latents (its multistep history then holds D at x_{i-1}, as in the reverse
    # pass) with zero noise: the deterministic part of each step. The noise makes up the rest.
    zs: list[torch.Tensor] = []
    residual = torch.zeros_like(x0)
    for i in range(count):
        if i == needed:
            zs.append(torch.zeros_like(x0))
            break
        mean = _sde_step(scheduler, outputs[i], i, noisy[i], torch.zeros_like(x0))
        scale = _sde_noise_scale(scheduler, i)
        if i < count - 1:
            zs.append((noisy[i + 1] - mean) / scale.to(x0.device))
        else:
            zs.append(torch.zeros_like(x0))  # scale is 0 at sigma = 0: the noise cannot matter
            if not zero_last:
                residual = x0 - mean
    return noisy[0], zs, residual


def sde_reverse(
    scheduler, x_top: torch.Tensor, model_fn: ModelFn, zs: list[torch.Tensor],
    residual: torch.Tensor | None = None, on_step: OnStep | None = None,
) -> torch.Tensor:
    """The SDE DPM-Solver++ sampling loop from ``x_top`` with the solver noise ``zs[i]`` at step i (as diffusers'
    ``StableAudioPipeline`` runs it, whose noise comes from a Brownian tree), plus ``residual`` at the end."""
    _restart(scheduler)
    x = x_top
    for i in range(len(scheduler.timesteps)):
        output = model_fn(x, _rows(scheduler.sigmas[i], x.shape[0], x.device))
        x = _sde_step(scheduler, output, i, x, zs[i].to(x.device, x.dtype))
        if on_step is not None:
            on_step()
    return x if residual is None else x + residual


def _eps(scheduler, x: torch.Tensor, output: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's direction dx/dsigma = (x - D(x, sigma)) / sigma, D from the scheduler's own
    EDM output preconditioning of the v-prediction."""
    sigma = sigma.to(x.device)
    return (x - scheduler.precondition_outputs(x, output, sigma)) / sigma


FIRST_STEP_ITERATIONS = 2  # fixed-point refinements of the inversion's first step (from sigma = 0), see below


def sde_ode_invert(scheduler, x0: torch.Tensor, model_fn: ModelFn, on_step: OnStep | None = None) -> torch.Tensor:
    """Deterministic inversion for Stable Audio Open: Euler steps of the probability-flow ODE in sigma (DDIM in
    the variance-exploding parametrisation), from x0 up through the sampler's noise levels, each step using the
    direction at its lower end (as DDIM inversion does). Returns x at the highest noise level.

    The first step, from sigma = 0 to sigma_min (0.3 for the real model, an infinite step in log-sigma), is where
    that approximation is worst: the reverse pass's last step lands on D(x_min, sigma_min), so x_min is solved
    for D(x_min) = x0 by :data:`FIRST_STEP_ITERATIONS` fixed-point steps x <- x + x0 - D(x) (one model call each).
    """
    sigmas = scheduler.sigmas  # descending, ending at 0
    count = len(scheduler.timesteps)
    lowest = sigmas[count - 1]
    x = x0 + lowest.to(x0.device) * _eps(scheduler, x0, model_fn(x0, _rows(lowest, x0.shape[0], x0.device)), lowest)
    for _ in range(FIRST_STEP_ITERATIONS):
        output = model_fn(x, _rows(lowest, x.shape[0], x.device))
        x = x + x0 - scheduler.precondition_outputs(x, output, lowest.to(x.device))
    if on_step is not None:
        on_step()
    for i in range(count - 2, -1, -1):
        output = model_fn(x, _rows(sigmas[i + 1], x.shape[0], x.device))
        x = x + (sigmas[i] - sigmas[i + 1]).to(x.device) * _eps(scheduler, x, output, sigmas[i + 1])
        if on_step is not None:
            on_step()
    return x


def sde_ode_reverse(scheduler, x_top: torch.Tensor, model_fn: ModelFn, on_step: OnStep | None = None) -> torch.Tensor:
    """Euler steps of the probability-flow ODE down the sampler's noise levels (the last one, to sigma = 0, lands
    on the denoiser's estimate): the deterministic counterpart of :func:`sde_ode_invert`."""
    sigmas = scheduler.sigmas
    x = x_top
    for i in range(len(scheduler.timesteps)):
        output = model_fn(x, _rows(sigmas[i], x.shape[0], x.device))
        x = x + (sigmas[i + 1] - sigmas[i]).to(x.device) * _eps(scheduler, x, output, sigmas[i])
        if on_step is not None:
            on_step()
    return x


# -- Stable Audio 3: rectified flow, Euler ---------------------------------------------------------------------

def flow_scheduler(config, steps: int, logsnr_min: float = -6.2, logsnr_max: float = 2.0,
                   device: torch.device | str = "cpu"):
    """Stable Audio 3's ``FlowMatchEulerDiscreteScheduler`` on the pipeline's log-SNR sigma schedule, always the
    deterministic Euler step (the distilled checkpoint's ping-pong re-noising cannot be inverted)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.stable_audio_3.pipeline_stable_audio_3 import logsnr_sigma_schedule

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config, stochastic_sampling=False)
    scheduler.set_timesteps(sigmas=logsnr_sigma_schedule(steps, logsnr_min, logsnr_max), device=device)
    return scheduler


def _flow_step(scheduler, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
    scheduler._step_index = i  # each call names its step: inversion and reverse walk the same schedule
    return scheduler.step(velocity, scheduler.timesteps[i], x).prev_sample


def flow_edit_friendly_invert(
    scheduler, x0: torch.Tensor, model_fn: ModelFn, noise: list[torch.Tensor], zero_last: bool = True,
    on_step: OnStep | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Edit-friendly inversion for the rectified flow: x_i = (1 - t_i) x0 + t_i noise[i] for every step, and
    z_i = x_{i+1} - Euler(x_i) the residual the reverse step re-injects (x_N = x0). Returns (x_top, z).
    With ``zero_last`` (default) z is 0 at the last step, so the reverse pass ends on the model's own estimate."""
    sigmas = scheduler.sigmas
    count = len(scheduler.timesteps)
    if len(noise) != count:
        raise ValueError(f"need one noise tensor per step ({count}), got {len(noise)}")
    noisy = [(1 - sigmas[i].to(x0.device)) * x0 + sigmas[i].to(x0.device) * noise[i].to(x0.device, x0.dtype)
             for i in range(count)] + [x0]
    needed = count - 1 if zero_last else count  # the last step's velocity is unused with zero_last
    velocities = _evaluate_all(model_fn, noisy[:needed], [sigmas[i] for i in range(needed)])
    if on_step is not None:
        for _ in range(count):
            on_step()
    zs = []
    for i in range(count):
        if i == needed:
            zs.append(torch.zeros_like(x0))
        else:
            zs.append(noisy[i + 1] - _flow_step(scheduler, velocities[i], i, noisy[i]))
    return noisy[0], zs


def flow_ode_invert(scheduler, x0: torch.Tensor, model_fn: ModelFn, on_step: OnStep | None = None) -> torch.Tensor:
    """Deterministic Euler inversion of the flow ODE: from x0 (t = 0) up through the schedule to t_0, each step
    with the velocity at its lower end. Returns x at the top of the schedule."""
    sigmas = scheduler.sigmas  # descending, ending at 0
    x = x0
    for i in range(len(scheduler.timesteps) - 1, -1, -1):
        velocity = model_fn(x, _rows(sigmas[i + 1], x.shape[0], x.device))
        x = x + (sigmas[i] - sigmas[i + 1]).to(x.device) * velocity
        if on_step is not None:
            on_step()
    return x


def flow_reverse(scheduler, x_top: torch.Tensor, model_fn: ModelFn, zs: list[torch.Tensor] | None = None,
                 on_step: OnStep | None = None) -> torch.Tensor:
    """Euler sampling from ``x_top`` as diffusers' ``StableAudio3Pipeline`` runs it (base checkpoint), plus the
    edit-friendly residual ``zs[i]`` after step i when given."""
    x = x_top
    for i in range(len(scheduler.timesteps)):
        velocity = model_fn(x, _rows(scheduler.sigmas[i], x.shape[0], x.device))
        x = _flow_step(scheduler, velocity, i, x)
        if zs is not None:
            x = x + zs[i].to(x.device, x.dtype)
        if on_step is not None:
            on_step()
    return x
