"""Classifier-free guidance that evaluates only the branches the weight needs (ZeroSep eq. 6).

eps = eps(x, "") + w (eps(x, c) - eps(x, "")). At w = 1 the unconditional term cancels, so it is never computed;
at w = 0 the conditional term vanishes. Otherwise both branches go through the UNet in one batched forward (split
into chunks of ``batch_size`` samples when a bound is set). A sample whose prompt is already the empty prompt
needs a single evaluation at any w. ``timestep`` is one value for the batch, or one per sample ([B], e.g. a
batched inversion evaluating all its timesteps at once); each chunk gets its samples' timesteps.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

UNCONDITIONAL = ""

# predict(latents [B, ...], t, prompts [B]) -> eps [B, ...] (float32): one UNet forward; t is one timestep (0-d)
# or one per sample [B].
Predict = Callable[[torch.Tensor, torch.Tensor, list[str]], torch.Tensor]


class GuidedNoise:
    """Callable ``(latents, t, prompts) -> eps`` applying guidance weight ``guidance`` through ``predict``."""

    def __init__(self, predict: Predict, guidance: float, batch_size: int | None = None):
        self.predict = predict
        self.guidance = float(guidance)
        self.batch_size = batch_size
        self.conditional_evaluations = 0  # samples evaluated for the conditional branch (or c == "" at w = 1)
        self.unconditional_evaluations = 0  # samples evaluated for the unconditional branch

    def branch_counts(self, prompt: str) -> tuple[int, int]:
        """(conditional, unconditional) sample-evaluations one latent with ``prompt`` costs at this weight,
        counted as :meth:`__call__` counts them."""
        w = self.guidance
        branches = {prompt} if w == 1 else {UNCONDITIONAL} if w == 0 else {prompt, UNCONDITIONAL}
        unconditional = int(UNCONDITIONAL in branches and w != 1)
        return len(branches) - unconditional, unconditional

    def evaluations(self, prompt: str) -> int:
        """UNet sample-evaluations one latent with ``prompt`` costs at this weight (1, or 2 for both branches)."""
        return sum(self.branch_counts(prompt))

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        w = self.guidance
        if len(prompts) != latents.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for a batch of {latents.shape[0]} latents")
        # Each (sample, prompt) evaluation the weight requires, once.
        requests: list[tuple[int, str]] = []
        position: dict[tuple[int, str], int] = {}
        for i, prompt in enumerate(prompts):
            branches = ([prompt] if w != 0 else []) + ([UNCONDITIONAL] if w != 1 else [])
            for branch in branches:
                if (i, branch) not in position:
                    position[(i, branch)] = len(requests)
                    requests.append((i, branch))
        for _, branch in requests:
            if branch == UNCONDITIONAL and w != 1:
                self.unconditional_evaluations += 1
            else:
                self.conditional_evaluations += 1
        per_sample = timestep.ndim == 1 and timestep.shape[0] == latents.shape[0]
        chunk = self.batch_size or len(requests)
        outputs: list[torch.Tensor] = []
        for start in range(0, len(requests), chunk):
            part = requests[start:start + chunk]
            rows = torch.tensor([i for i, _ in part], device=latents.device)
            step = timestep.index_select(0, rows.to(timestep.device)) if per_sample else timestep
            outputs.append(self.predict(latents.index_select(0, rows), step, [b for _, b in part]))
        eps_all = torch.cat(outputs)

        guided = []
        for i, prompt in enumerate(prompts):
            if w == 1:
                guided.append(eps_all[position[(i, prompt)]])
            elif w == 0:
                guided.append(eps_all[position[(i, UNCONDITIONAL)]])
            else:
                uncond = eps_all[position[(i, UNCONDITIONAL)]]
                cond = eps_all[position[(i, prompt)]]
                guided.append(uncond + w * (cond - uncond))
        return torch.stack(guided)
