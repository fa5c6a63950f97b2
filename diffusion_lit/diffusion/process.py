"""The forward process q(x_t | x_0) and the posterior q(x_{t-1} | x_t, x_0) in closed form.

All functions take timestep indices ``t`` of shape (B,) (zero-based, see ``schedules``) and
images of shape (B, ...); per-timestep coefficients are broadcast over the image dimensions.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.utils.errors import check_choice


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


# -- parameterizations: what the network predicts --------------------------------------------
#
# With alpha_t = sqrt(ab_t) and sigma_t = sqrt(1 - ab_t) (so alpha^2 + sigma^2 = 1) and
# x_t = alpha_t x_0 + sigma_t eps, the three common targets determine each other given x_t:
#   eps  (Ho et al. 2020)
#   x0   (the clean image)
#   v  = alpha_t eps - sigma_t x_0   (Salimans & Ho 2022, sec. 4 and appendix D), whence
#        x_0 = alpha_t x_t - sigma_t v   and   eps = sigma_t x_t + alpha_t v.

Prediction = Literal["eps", "x0", "v"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


def check_prediction(prediction: str) -> Prediction:
    return check_choice("model.prediction", prediction, PREDICTIONS)  # type: ignore[return-value]


def v_from_x0_eps(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = sqrt(ab_t) eps - sqrt(1 - ab_t) x_0 (Salimans & Ho 2022)."""
    return (
        extract(schedule.sqrt_alphas_bar, t, x0.ndim) * eps
        - extract(schedule.sqrt_one_minus_alphas_bar, t, x0.ndim) * x0
    )


def prediction_target(
    prediction: str, schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """What a network with parameterization ``prediction`` is trained to output for (x_0, eps, t)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return v_from_x0_eps(schedule, x0, eps, t)


def x0_and_eps(
    prediction: str, schedule: NoiseSchedule, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) implied by a network ``output`` of kind ``prediction`` at (x_t, t); exact inverses
    of :func:`prediction_target` (up to floating-point rounding)."""
    if prediction == "eps":
        return predict_x0_from_eps(schedule, xt, t, output), output
    if prediction == "x0":
        return output, predict_eps_from_x0(schedule, xt, t, output)
    alpha = extract(schedule.sqrt_alphas_bar, t, xt.ndim)
    sigma = extract(schedule.sqrt_one_minus_alphas_bar, t, xt.ndim)
    return alpha * xt - sigma * output, sigma * xt + alpha * output


def min_snr_weight(prediction: str, schedule: NoiseSchedule, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-gamma (Hang et al. 2023, eq. 9 and sec. 3.4), shape (B,).

    Min-SNR weights the x_0-MSE by min(SNR_t, gamma); expressed as weights on the MSE of the
    network's own target this is, with SNR_t = ab_t / (1 - ab_t):
      x0: min(SNR, gamma);   eps: min(SNR, gamma) / SNR;   v: min(SNR, gamma) / (SNR + 1)
    (||eps - eps_hat||^2 = SNR ||x0 - x0_hat||^2 and ||v - v_hat||^2 = (SNR + 1) ||x0 - x0_hat||^2).
    """
    snr = schedule.alphas_bar[t] / (1.0 - schedule.alphas_bar[t])
    clipped = snr.clamp(max=gamma)
    if prediction == "x0":
        return clipped
    if prediction == "eps":
        return clipped / snr
    return clipped / (snr + 1.0)
