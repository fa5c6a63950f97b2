"""Samplers in sigma space (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", EDM): Heun with churn (Algorithm 2), Euler, and Euler-ancestral.

They keep the one signature of :mod:`diffusion_lit.diffusion.samplers`,
``sampler(model_fn, schedule, noise, steps, generator, callback, **options)``, and run on any
checkpoint: the model is wrapped as a denoiser in the variable x = x_t / sqrt(alpha_bar_t) =
x_0 + sigma_t eps, sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t),

    D(x; sigma_t) = x - sigma_t eps(x / sqrt(1 + sigma_t^2), t),

at the schedule's discrete levels t: a VP model's timesteps, or an EDM model's table of sigmas
(``schedule=edm``). Where EDM asks for a level between two (churn's raised sigma), the nearest
one in log sigma is taken, so the net is only ever asked at a level it knows. The probability-
flow ODE in x is dx / dsigma = (x - D(x; sigma)) / sigma (EDM eq. 4 with s = 1, sigma(t) = t).

The levels are :func:`~diffusion_lit.diffusion.samplers.timestep_subsequence`'s, Karras spacing
by default (EDM eq. 5, rho = 7): ``steps`` levels from sigma_max = 80 (or the schedule's largest,
if smaller) down to the smallest, then a last step to sigma = 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffusion_lit.diffusion.samplers import (
    KARRAS_SIGMA_MAX,
    Edit,
    ModelFn,
    SamplerCallback,
    Spacing,
    Trajectory,
    check_single_step,
    randn_like,
    report_step,
)
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.utils.errors import UserError

# Above this noise level a step is taken by Euler only (EDM's sigma_max, with room for rounding).
_HEUN_SIGMA_LIMIT = KARRAS_SIGMA_MAX * 1.001


class _SigmaPath:
    """A :class:`Trajectory` read as noise levels, with the denoiser at any of them."""

    def __init__(
        self,
        model_fn: ModelFn,
        schedule: NoiseSchedule,
        noise: torch.Tensor,
        steps: int | None,
        spacing: Spacing,
        rho: float,
        edit: Edit | None,
        clip_x0: bool,
        name: str,
    ) -> None:
        check_single_step(edit, name)
        self.path = Trajectory(schedule, steps, noise.shape[0], noise.device, spacing=spacing, rho=rho, edit=edit)
        self.log_sigmas = np.log(schedule.sigmas.double().cpu().numpy())
        self.model_fn = model_fn
        self.clip_x0 = clip_x0
        self.project = edit.project if edit is not None else None

    def sigma(self, t: int | None) -> float:
        return 0.0 if t is None else math.exp(self.log_sigmas[t])

    def scale(self, t: int | None) -> float:
        """sqrt(alpha_bar_t) = 1 / sqrt(1 + sigma_t^2): x_t = scale * x."""
        return 1.0 / math.sqrt(1.0 + self.sigma(t) ** 2)

    def level_at_least(self, t: int, sigma: float) -> int:
        """The level nearest to ``sigma`` in log sigma, and not below ``t``."""
        return max(t, int(np.abs(self.log_sigmas - math.log(sigma)).argmin()))

    def denoise(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """D(x; sigma_t), clipped to the data range [-1, 1] with ``clip_x0``."""
        sigma = self.sigma(t)
        eps = self.model_fn(x * self.scale(t), self.path.t_batch(t)).to(x.dtype)
        x0 = x - sigma * eps
        return x0.clamp(-1.0, 1.0) if self.clip_x0 else x0

    def start(self, noise: torch.Tensor) -> torch.Tensor:
        """x at the first level from ``noise`` = x_t there (N(0, I) when sampling from scratch)."""
        return noise / self.scale(self.path.timesteps[-1])

    def finish_step(
        self, index: int, t: int, s: int | None, x: torch.Tensor, x0: torch.Tensor, callback: SamplerCallback | None
    ) -> torch.Tensor:
        """The editing projection at level s (on x_s, as every sampler applies it), then the report."""
        scale = self.scale(s)
        if self.project is not None:
            x = self.project(x * scale, s) / scale
        report_step(callback, index, len(self.path), t, x * scale, x0)
        return x


def _churn(s_churn: float, s_tmin: float, s_tmax: float, s_noise: float, steps: int) -> float:
    """EDM Algorithm 2's gamma_max = min(S_churn / N, sqrt(2) - 1), after checking the options."""
    for key, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UserError(f"sampler.{key} must be a number >= 0, got {value!r}.")
    if isinstance(s_tmax, bool) or not isinstance(s_tmax, (int, float)) or s_tmax < s_tmin:
        raise UserError(f"sampler.s_tmax must be a number >= s_tmin ({s_tmin}), got {s_tmax!r}.")
    return min(s_churn / max(steps, 1), math.sqrt(2.0) - 1.0)


def _edm_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None,
    generator: torch.Generator | None,
    callback: SamplerCallback | None,
    edit: Edit | None,
    second_order: bool,
    churn: tuple[float, float, float, float],
    clip_x0: bool,
    spacing: Spacing,
    rho: float,
) -> torch.Tensor:
    """EDM Algorithm 2; with ``second_order=False`` its Euler steps alone."""
    name = "heun" if second_order else "euler"
    levels = _SigmaPath(model_fn, schedule, noise, steps, spacing, rho, edit, clip_x0, name)
    s_churn, s_tmin, s_tmax, s_noise = churn
    gamma_max = _churn(s_churn, s_tmin, s_tmax, s_noise, len(levels.path))
    x = levels.start(noise)
    for index, (t, s) in enumerate(levels.path.pairs()):
        sigma_t, sigma_s = levels.sigma(t), levels.sigma(s)
        # Churn (lines 4-6): raise the noise to sigma_hat = (1 + gamma) sigma_t with fresh noise.
        t_hat = t
        if gamma_max > 0 and s_tmin <= sigma_t <= s_tmax:
            t_hat = levels.level_at_least(t, (1.0 + gamma_max) * sigma_t)
        sigma_hat = levels.sigma(t_hat)
        if t_hat != t:
            x = x + math.sqrt(sigma_hat**2 - sigma_t**2) * s_noise * randn_like(x, generator)
        x0 = levels.denoise(x, t_hat)
        slope = (x - x0) / sigma_hat  # line 7: dx/dsigma at sigma_hat
        x_next = x + (sigma_s - sigma_hat) * slope  # line 8: Euler
        # Lines 9-11: Heun's correction, except to sigma = 0 and from above EDM's sigma_max: a VP
        # schedule's top level (sigma ~ 2e4 for cosine) is pure noise, and there the correction
        # multiplies the model's error by the step size (measured: 0.13 valid triangles at 18
        # log-SNR steps with it, see experiments/formulations; ode_sample skips it there too).
        if second_order and s is not None and sigma_hat <= _HEUN_SIGMA_LIMIT:
            slope_s = (x_next - levels.denoise(x_next, s)) / sigma_s
            x_next = x + (sigma_s - sigma_hat) * 0.5 * (slope + slope_s)
        x = levels.finish_step(index, t, s, x_next, x0, callback)
    return x


@torch.inference_mode()
def heun_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 18,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    clip_x0: bool = True,
    spacing: Spacing = "karras",
    rho: float = 7.0,
) -> torch.Tensor:
    """EDM's sampler (Karras et al. 2022, Algorithm 2): Heun's method (2nd order) on the
    probability-flow ODE, with optional churn. ``steps`` = N noise levels, 2 N - 1 network
    calls (the last step, to sigma = 0, is an Euler step); EDM's N = 18 is 35 calls. A step
    from above sigma = 80 (a VP schedule's top level, with ``spacing`` time or logsnr) is an
    Euler step too, one call fewer.

    Churn: at levels with S_tmin <= sigma <= S_tmax the noise is first raised to
    sigma_hat = (1 + gamma) sigma with gamma = min(S_churn / N, sqrt(2) - 1) by adding fresh
    noise of std S_noise sqrt(sigma_hat^2 - sigma^2); S_churn = 0 (default) is deterministic.
    EDM's ImageNet-64 settings: S_churn 40-80, S_tmin 0.05, S_tmax 50, S_noise 1.003.
    """
    churn = (s_churn, s_tmin, s_tmax, s_noise)
    return _edm_sample(model_fn, schedule, noise, steps, generator, callback, edit, True, churn, clip_x0, spacing, rho)


@torch.inference_mode()
def euler_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 50,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    clip_x0: bool = True,
    spacing: Spacing = "karras",
    rho: float = 7.0,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE in sigma (EDM Algorithm 2 without lines 9-11;
    without churn it equals deterministic DDIM on the same levels, Karras et al. sec. 3). One
    network call per level; first order, so it wants more levels than Heun (30-100)."""
    churn = (s_churn, s_tmin, s_tmax, s_noise)
    return _edm_sample(model_fn, schedule, noise, steps, generator, callback, edit, False, churn, clip_x0, spacing, rho)


@torch.inference_mode()
def euler_ancestral_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 50,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    clip_x0: bool = True,
    spacing: Spacing = "karras",
    rho: float = 7.0,
) -> torch.Tensor:
    """Ancestral sampling in sigma space: each step from sigma_t to sigma_s splits sigma_s into a
    deterministic part and fresh noise,

        sigma_up = min(sigma_s, eta sigma_s sqrt(1 - sigma_s^2 / sigma_t^2)),
        sigma_down = sqrt(sigma_s^2 - sigma_up^2),
        x_s = x_t + (sigma_down - sigma_t) (x_t - D(x_t; sigma_t)) / sigma_t + s_noise sigma_up z.

    With eta = 1 the injected variance is DDPM's posterior variance in this variable (Ho et al.
    2020 eq. 7, as DDIM's eta = 1); eta = 0 is Euler. One network call per level (30-100 levels).
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise UserError(f"sampler.eta must lie in [0, 1] (0 = Euler, 1 = ancestral), got {eta!r}.")
    levels = _SigmaPath(model_fn, schedule, noise, steps, spacing, rho, edit, clip_x0, "euler_ancestral")
    x = levels.start(noise)
    for index, (t, s) in enumerate(levels.path.pairs()):
        sigma_t, sigma_s = levels.sigma(t), levels.sigma(s)
        x0 = levels.denoise(x, t)
        sigma_up = min(sigma_s, eta * sigma_s * math.sqrt(max(1.0 - sigma_s**2 / sigma_t**2, 0.0)))
        sigma_down = math.sqrt(sigma_s**2 - sigma_up**2)
        x_next = x + (sigma_down - sigma_t) * (x - x0) / sigma_t
        if sigma_up > 0:
            x_next = x_next + s_noise * sigma_up * randn_like(x, generator)
        x = levels.finish_step(index, t, s, x_next, x0, callback)
    return x
