"""The forward process q(x_t | x_0) and the posterior q(x_{t-1} | x_t, x_0) in closed form.

All functions take timestep indices ``t`` of shape (B,) (zero-based, see ``schedules``) and
images of shape (B, ...); per-timestep coefficients are broadcast over the image dimensions.
"""

from __future__ import annotations

import torch

from diffusion_lit.diffusion.schedules import NoiseSchedule


def extract(buffer: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """buffer[t] reshaped to (B, 1, ..., 1) so that it broadcasts over a tensor of ``ndim`` dims."""
    return buffer[t].reshape(t.shape[0], *([1] * (ndim - 1)))


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alphas_bar_t) x_0 + sqrt(1 - alphas_bar_t) eps  (Ho et al. 2020, eq. 4)."""
    return (
        extract(schedule.sqrt_alphas_bar, t, x0.ndim) * x0
        + extract(schedule.sqrt_one_minus_alphas_bar, t, x0.ndim) * noise
    )


def q_posterior_mean_variance(
    schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eqs. 6-7).

    mean = sqrt(alphas_bar_prev) beta_t / (1 - alphas_bar_t) x_0
           + sqrt(alpha_t) (1 - alphas_bar_prev) / (1 - alphas_bar_t) x_t
    variance = beta-tilde_t = beta_t (1 - alphas_bar_prev) / (1 - alphas_bar_t), shape (B, 1, ..., 1)
    """
    mean = (
        extract(schedule.posterior_mean_coef_x0, t, xt.ndim) * x0
        + extract(schedule.posterior_mean_coef_xt, t, xt.ndim) * xt
    )
    return mean, extract(schedule.posterior_variance, t, xt.ndim)


def predict_x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert eq. 4: x_0 = (x_t - sqrt(1 - alphas_bar_t) eps) / sqrt(alphas_bar_t)."""
    return (xt - extract(schedule.sqrt_one_minus_alphas_bar, t, xt.ndim) * eps) / extract(
        schedule.sqrt_alphas_bar, t, xt.ndim
    )


def predict_eps_from_x0(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Invert eq. 4 for the noise: eps = (x_t - sqrt(alphas_bar_t) x_0) / sqrt(1 - alphas_bar_t)."""
    return (xt - extract(schedule.sqrt_alphas_bar, t, xt.ndim) * x0) / extract(
        schedule.sqrt_one_minus_alphas_bar, t, xt.ndim
    )
