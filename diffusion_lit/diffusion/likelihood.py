"""The variational bound on the negative log-likelihood, term by term (Ho et al. 2020, eq. 5;
seed 001, chapter 3):

    -log p(x_0) <= L_T + sum_{t=2..T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                                   (prior term)
    L_{t-1} = E_q KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))             (diffusion terms)
    L_0     = E_q -log p(x_0 | x_1)                                          (decoder term)

in Ho et al.'s 1-based time (x_1 is the least noisy latent, our timestep index 0). The reverse
transitions p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) take mu_theta from the posterior
mean with x_0 predicted from eps (eq. 11) and the fixed variance sigma_t^2 = beta-tilde_t or
beta_t (sec. 3.2). The decoder is the discretised Gaussian of sec. 3.3 for 8-bit images scaled
to [-1, 1] (bins of width 2/255, the outermost ones open-ended), or a plain Gaussian density for
continuous data (used by the tests). Its variance is beta_1 with the beta choice and, since
beta-tilde_1 = 0, beta-tilde_2 with the beta-tilde choice (as in Ho et al.'s code).

Exact check (tests/test_likelihood.py): for Gaussian data and the exact noise predictor, the
bound with sigma_t^2 = beta_t converges to the data's differential entropy as T grows, because
near t = 0 the true reverse variance is beta_t, not beta-tilde_t (for x_t much less noisy than
the data's spread, Var(x_{t-1} | x_t) = beta-tilde_t + coef_x0^2 Var(x_0 | x_t) ~ beta_t); with
beta-tilde the first few steps keep a gap of a fixed size however large T is.

Each expectation over q(x_t | x_0) is estimated with one draw of x_t per image and timestep.
``timesteps=None`` sums all T - 1 diffusion terms (T network calls per image); an integer K
draws K timesteps per image uniformly and scales their mean by T - 1 (an unbiased estimate
for a fraction of the cost). Results are in nats per image; :meth:`BoundTerms.bits_per_dim`
converts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from diffusion_lit.diffusion.samplers import ModelFn
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.utils.errors import UserError, check_choice

ReverseVariance = Literal["beta_tilde", "beta"]
Decoder = Literal["discretized", "gaussian"]  # 8-bit images | continuous data


@dataclass
class BoundTerms:
    """Terms of the bound, each (B,) in nats per image (summed over pixels)."""

    prior: torch.Tensor
    diffusion: torch.Tensor
    decoder: torch.Tensor
    num_dims: int

    @property
    def total(self) -> torch.Tensor:
        return self.prior + self.diffusion + self.decoder

    def bits_per_dim(self) -> dict[str, float]:
        """Batch means of every term and the total in bits per dimension."""
        scale = 1.0 / (self.num_dims * math.log(2.0))
        return {
            "nll_bpd": float(self.total.mean()) * scale,
            "prior_bpd": float(self.prior.mean()) * scale,
            "diffusion_bpd": float(self.diffusion.mean()) * scale,
            "decoder_bpd": float(self.decoder.mean()) * scale,
        }


def gaussian_kl(mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_nll(x0: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, bins: int = 255) -> torch.Tensor:
    """-log P(bin of x0) under N(mean, var), elementwise, for x0 on the grid of ``bins`` + 1
    levels in [-1, 1] (Ho et al. 2020, eq. 13, for 8-bit images: 255): the bin is
    [x0 - 1/bins, x0 + 1/bins], open towards -inf at -1 and towards +inf at +1."""
    std = var.sqrt()
    half = 1.0 / bins
    edge = 1.0 - half / 2.0
    upper = torch.where(x0 > edge, torch.ones_like(x0), _standard_normal_cdf((x0 + half - mean) / std))
    lower = torch.where(x0 < -edge, torch.zeros_like(x0), _standard_normal_cdf((x0 - half - mean) / std))
    return -torch.log((upper - lower).clamp_min(1e-12))


def gaussian_nll(x0: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """-log N(x0; mean, var) elementwise (continuous data)."""
    return 0.5 * (torch.log(2.0 * math.pi * var) + (x0 - mean) ** 2 / var)


@torch.no_grad()
def variational_bound(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    timesteps: int | None = None,
    variance: ReverseVariance = "beta_tilde",
    decoder: Decoder = "discretized",
    generator: torch.Generator | None = None,
    bins: int = 255,
) -> BoundTerms:
    """The bound's terms for a batch of images ``x0`` (B, C, H, W) in [-1, 1].

    Args:
        model_fn: the eps predictor ``model_fn(x_t, t) -> eps`` (as samplers receive it).
        schedule: the model's noise schedule.
        x0: data (B, ...); on the 8-bit grid for the discretised decoder.
        timesteps: None sums every diffusion term; K > 0 estimates the sum from K random
            timesteps per image.
        variance: the reverse-process variance, ``"beta_tilde"`` or ``"beta"``.
        decoder: ``"discretized"`` (8-bit images) or ``"gaussian"`` (continuous data).
        bins: the discretised decoder's grid: ``bins`` + 1 levels in [-1, 1] (255 for 8-bit
            images; count_max for count images 2 n / c - 1, :mod:`diffusion_lit.data.counts`).
        generator: the source of the noise draws (and of the timestep draws).
    """
    check_choice("variance", variance, get_args(ReverseVariance))
    check_choice("decoder", decoder, get_args(Decoder))
    if timesteps is not None and (isinstance(timesteps, bool) or int(timesteps) != timesteps or timesteps < 1):
        raise UserError(f"timesteps must be an integer >= 1 or null (all), got {timesteps!r}.")
    num_timesteps = schedule.num_timesteps
    if num_timesteps < 2:
        raise UserError("the bound needs a schedule with at least 2 timesteps.")
    device, batch = x0.device, x0.shape[0]
    x0 = x0.double()
    betas = schedule.betas.double().to(device)
    alphas_bar = torch.cumprod(1.0 - betas, dim=0)
    alphas_bar_prev = torch.cat([alphas_bar.new_ones(1), alphas_bar[:-1]])
    posterior_var = betas * (1.0 - alphas_bar_prev) / (1.0 - alphas_bar)
    coef_x0 = alphas_bar_prev.sqrt() * betas / (1.0 - alphas_bar)
    coef_xt = (1.0 - betas).sqrt() * (1.0 - alphas_bar_prev) / (1.0 - alphas_bar)
    if variance == "beta":
        reverse_var = betas
    else:  # beta-tilde_1 = 0, so the decoder takes beta-tilde_2, as in Ho et al.'s code
        reverse_var = torch.cat([posterior_var[1:2], posterior_var[1:]])

    def per_image(values: torch.Tensor) -> torch.Tensor:
        return values.flatten(1).sum(dim=1)

    def noisy(t: torch.Tensor) -> torch.Tensor:
        shape = (batch, *([1] * (x0.ndim - 1)))
        noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator else device)
        alpha_bar = alphas_bar[t].reshape(shape)
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise.to(device, torch.float64)

    def model_mean(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shape = (batch, *([1] * (x0.ndim - 1)))
        alpha_bar = alphas_bar[t].reshape(shape)
        eps = model_fn(xt.float(), t).double()
        x0_pred = (xt - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
        if decoder == "discretized":  # images live in [-1, 1]
            x0_pred = x0_pred.clamp(-1.0, 1.0)
        return coef_x0[t].reshape(shape) * x0_pred + coef_xt[t].reshape(shape) * xt

    def diffusion_term(t: torch.Tensor) -> torch.Tensor:
        shape = (batch, *([1] * (x0.ndim - 1)))
        xt = noisy(t)
        true_mean = coef_x0[t].reshape(shape) * x0 + coef_xt[t].reshape(shape) * xt
        return per_image(
            gaussian_kl(true_mean, posterior_var[t].reshape(shape), model_mean(xt, t), reverse_var[t].reshape(shape))
        )

    # L_T: q(x_T | x_0) = N(sqrt(alpha_bar_T) x_0, (1 - alpha_bar_T) I) against N(0, I).
    alpha_bar_last = alphas_bar[-1]
    prior = per_image(gaussian_kl(alpha_bar_last.sqrt() * x0, (1.0 - alpha_bar_last).expand_as(x0),
                                  torch.zeros_like(x0), torch.ones_like(x0)))  # fmt: skip

    # L_0: -log p(x_0 | x_1) at timestep index 0.
    t0 = torch.zeros(batch, dtype=torch.long, device=device)
    mean0 = model_mean(noisy(t0), t0)
    if decoder == "discretized":
        decoder_term = per_image(discretized_gaussian_nll(x0, mean0, reverse_var[0].expand_as(x0), bins))
    else:
        decoder_term = per_image(gaussian_nll(x0, mean0, reverse_var[0].expand_as(x0)))

    # sum_{t=2..T} L_{t-1}: timestep indices 1..T-1.
    if timesteps is None:
        diffusion = torch.zeros(batch, dtype=torch.float64, device=device)
        for index in range(1, num_timesteps):
            diffusion += diffusion_term(torch.full((batch,), index, dtype=torch.long, device=device))
    else:
        draws = []
        for _ in range(int(timesteps)):
            t = torch.randint(1, num_timesteps, (batch,), generator=generator,
                              device=generator.device if generator else device).to(device)  # fmt: skip
            draws.append(diffusion_term(t))
        diffusion = torch.stack(draws).mean(dim=0) * (num_timesteps - 1)
    return BoundTerms(prior=prior, diffusion=diffusion, decoder=decoder_term, num_dims=x0[0].numel())
