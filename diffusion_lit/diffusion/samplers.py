"""Samplers: stateless functions from starting noise to samples, all with ONE signature.

    sampler(model_fn, schedule, noise, num_steps=None, generator=None, callback=None, **options)

* ``model_fn(x_t, t) -> eps``: the noise prediction for images (B, C, H, W) at timestep
  indices t (B,) (wrap conditioning or guidance into it; see ``guidance``).
* ``schedule``: the :class:`NoiseSchedule` the model was trained with.
* ``noise``: x_T, the starting point (B, C, H, W), usually standard normal.
* ``num_steps``: how many denoising steps; ``None`` means every one of the T steps.
* ``generator``: the only source of randomness, so a seed reproduces a sample exactly.
* ``callback(step)``: called after every step with a :class:`SamplerStep`, e.g. to record the
  trajectory for a denoising strip or to drive a progress bar.

Hydra configs in ``conf/sampler/`` bind the options with ``_partial_: true``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.errors import UserError

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SamplerStep:
    """What a sampler reports after denoising timestep ``t`` (step ``index`` of ``num_steps``)."""

    index: int
    num_steps: int
    t: int
    x: torch.Tensor
    x0_pred: torch.Tensor


SamplerCallback = Callable[[SamplerStep], None]


def timestep_subsequence(num_timesteps: int, num_steps: int | None) -> list[int]:
    """Evenly spaced timestep indices, ascending, always containing 0 and T - 1.

    ``num_steps=None`` (or T) gives every timestep.
    """
    if num_steps is None or num_steps == num_timesteps:
        return list(range(num_timesteps))
    if int(num_steps) != num_steps or not 1 <= num_steps <= num_timesteps:
        raise UserError(
            f"sampler.steps must be an integer between 1 and the schedule's T={num_timesteps}, got {num_steps!r}."
        )
    if num_steps == 1:
        return [num_timesteps - 1]
    return sorted({int(round(v)) for v in np.linspace(0, num_timesteps - 1, int(num_steps))})


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` on the generator's device."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


@torch.no_grad()
def ddpm_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    num_steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    variance: Literal["beta", "beta_tilde"] = "beta_tilde",
    clip_x0: bool = True,
) -> torch.Tensor:
    """Ancestral sampling of Ho et al. 2020 (Algorithm 2), optionally on fewer steps.

    With ``num_steps < T`` the chain runs on an evenly spaced subsequence of timesteps with
    the betas recomputed from the retained alphas_bar, as in Nichol & Dhariwal 2021 (sec. 4);
    with ``num_steps=None`` it is exactly Algorithm 2.

    Each step from t to its predecessor s (alphas_bar_s = 1 past the last step):

    1. eps = model_fn(x_t, t);  x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), clipped to
       [-1, 1] if ``clip_x0`` (the data range; it stabilises the early, noisy steps).
    2. beta = 1 - ab_t / ab_s;  mean = sqrt(ab_s) beta / (1 - ab_t) x0
                                       + sqrt(1 - beta) (1 - ab_s) / (1 - ab_t) x_t  (eq. 7).
    3. x_s = mean + sigma z with sigma^2 = beta-tilde = beta (1 - ab_s) / (1 - ab_t) or
       sigma^2 = beta (``variance``, the two choices of Ho et al. sec. 3.2); no noise on the
       final step.

    Returns x_0 samples shaped like ``noise``.
    """
    if variance not in ("beta", "beta_tilde"):
        raise UserError(f"sampler.variance must be 'beta' or 'beta_tilde', got {variance!r}.")
    timesteps = timestep_subsequence(schedule.num_timesteps, num_steps)
    alphas_bar = schedule.alphas_bar.double().cpu().numpy()
    x = noise
    batch = noise.shape[0]
    for index, t in enumerate(reversed(timesteps)):
        position = len(timesteps) - 1 - index
        ab_t = float(alphas_bar[t])
        ab_s = float(alphas_bar[timesteps[position - 1]]) if position > 0 else 1.0
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)

        eps = model_fn(x, t_batch).to(x.dtype)
        x0 = (x - (1.0 - ab_t) ** 0.5 * eps) / ab_t**0.5
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)

        beta = 1.0 - ab_t / ab_s
        coef_x0 = ab_s**0.5 * beta / (1.0 - ab_t)
        coef_xt = (1.0 - beta) ** 0.5 * (1.0 - ab_s) / (1.0 - ab_t)
        x = coef_x0 * x0 + coef_xt * x
        if position > 0:
            sigma2 = beta * (1.0 - ab_s) / (1.0 - ab_t) if variance == "beta_tilde" else beta
            x = x + sigma2**0.5 * randn_like(x, generator)
        if callback is not None:
            callback(SamplerStep(index=index, num_steps=len(timesteps), t=t, x=x, x0_pred=x0))
    return x
