"""Beta schedules and the NoiseSchedule holding every quantity derived from them.

Conventions (used across ``diffusion_lit.diffusion``):

* ``T = num_timesteps``; timestep *indices* are zero-based, ``t in {0, ..., T-1}``, and index
  ``t`` is the paper's step ``t + 1`` (Ho et al. 2020 count 1..T).
* ``alphas = 1 - betas``, ``alphas_bar[t] = prod_{k<=t} alphas[k]`` (the practical's
  ``tilde-alpha``), ``alphas_bar_prev[t] = alphas_bar[t-1]`` with ``alphas_bar_prev[0] = 1``.
* Each ``*_betas`` function is a pure float64 function returning an array of shape (T,),
  every entry in the open interval (0, 1). The Hydra configs in ``conf/schedule/`` point at
  them; :class:`NoiseSchedule` turns the betas into buffers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from diffusion_lit.utils.errors import UserError


def _check_num_timesteps(num_timesteps: int) -> None:
    if int(num_timesteps) != num_timesteps or num_timesteps < 1:
        raise UserError(
            f"schedule.num_timesteps must be an integer >= 1, got {num_timesteps!r} "
            "(typical values: 200 as in the MNIST practical, 300, or 1000 as in DDPM)."
        )


def _check_beta_range(beta_start: float, beta_end: float) -> None:
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0.0 < value < 1.0:
            raise UserError(
                f"schedule.{name} must lie in the open interval (0, 1), got {value!r} "
                "(DDPM uses beta_start=1e-4, beta_end=0.02)."
            )


def _ramp(num_timesteps: int) -> np.ndarray:
    """u_t = t / (T - 1) in [0, 1] for t = 0..T-1 (a single step sits at u = 0)."""
    if num_timesteps == 1:
        return np.zeros(1, dtype=np.float64)
    return np.linspace(0.0, 1.0, num_timesteps, dtype=np.float64)


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Linear schedule of Ho et al. 2020: beta_t = beta_start + (beta_end - beta_start) u_t."""
    _check_num_timesteps(num_timesteps)
    _check_beta_range(beta_start, beta_end)
    return beta_start + (beta_end - beta_start) * _ramp(num_timesteps)


def sine_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """The thesis' "sine wave" schedule (seed 001, section 5.1; it gives no formula).

    Defined here as half a period of a sine wave rising from beta_start to beta_end:

        beta_t = beta_start + (beta_end - beta_start) * (1 - cos(pi u_t)) / 2,

    i.e. flat at both ends and steepest in the middle, with u_t = t / (T - 1).
    """
    _check_num_timesteps(num_timesteps)
    _check_beta_range(beta_start, beta_end)
    wave = 0.5 * (1.0 - np.cos(math.pi * _ramp(num_timesteps)))
    return beta_start + (beta_end - beta_start) * wave


def power_betas(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, power: float = 2.0
) -> np.ndarray:
    """The thesis' power schedules (p = 1.5, 2, 10; seed 001, section 5.1; no formula given).

    Defined here as beta_t = beta_start + (beta_end - beta_start) * u_t ** p with
    u_t = t / (T - 1): p = 1 is the linear schedule; a large p keeps beta near beta_start for
    most steps, so little noise is added and x_T is far from N(0, I) (why power 10 fails).
    """
    _check_num_timesteps(num_timesteps)
    _check_beta_range(beta_start, beta_end)
    if not power > 0:
        raise UserError(f"schedule.power must be > 0, got {power!r} (the thesis uses 1.5, 2 and 10).")
    return beta_start + (beta_end - beta_start) * _ramp(num_timesteps) ** power


def _betas_from_alphas_bar(alphas_bar: np.ndarray, max_beta: float) -> np.ndarray:
    """beta_t = 1 - alphas_bar[t] / alphas_bar[t-1] (alphas_bar[-1] := 1), clipped at max_beta."""
    previous = np.concatenate([[1.0], alphas_bar[:-1]])
    return np.clip(1.0 - alphas_bar / previous, 1e-12, max_beta)


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule of Nichol & Dhariwal 2021 (Improved DDPM, eq. 17).

    alphas_bar(t) = f(t) / f(0) with f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2) for paper
    steps t = 1..T, and betas clipped at ``max_beta`` (0.999 in the paper) to avoid the
    singularity at t = T.
    """
    _check_num_timesteps(num_timesteps)
    if not 0.0 < max_beta < 1.0:
        raise UserError(f"schedule.max_beta must lie in (0, 1), got {max_beta!r} (the paper uses 0.999).")
    if s < 0:
        raise UserError(f"schedule.s must be >= 0, got {s!r} (the paper uses 0.008).")
    steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    f = np.cos((steps + s) / (1.0 + s) * math.pi / 2.0) ** 2
    return _betas_from_alphas_bar(f[1:] / f[0], max_beta)


def sigmoid_betas(
    num_timesteps: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> np.ndarray:
    """Sigmoid schedule of Chen 2023 ("On the importance of noise scheduling", Algorithm 1).

    alphas_bar(t) = (sigmoid(end / tau) - sigmoid((t (end - start) + start) / tau))
                    / (sigmoid(end / tau) - sigmoid(start / tau)),   t = paper step / T,
    betas derived from consecutive ratios and clipped at ``max_beta``.
    """
    _check_num_timesteps(num_timesteps)
    if not end > start:
        raise UserError(f"schedule.end must exceed schedule.start, got start={start!r}, end={end!r}.")
    if not tau > 0:
        raise UserError(f"schedule.tau must be > 0, got {tau!r}.")
    if not 0.0 < max_beta < 1.0:
        raise UserError(f"schedule.max_beta must lie in (0, 1), got {max_beta!r}.")

    def sigmoid(x: np.ndarray | float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))

    v_start, v_end = sigmoid(start / tau), sigmoid(end / tau)
    steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    gamma = (v_end - sigmoid((steps * (end - start) + start) / tau)) / (v_end - v_start)
    return _betas_from_alphas_bar(gamma[1:] / gamma[0], max_beta)


def edm_betas(num_timesteps: int = 1000, sigma_min: float = 0.002, sigma_max: float = 80.0) -> np.ndarray:
    """The noise levels of the EDM formulation (Karras et al. 2022) as a discrete table.

    EDM writes x = x_0 + sigma eps with sigma in [sigma_min, sigma_max] (0.002 and 80 in the
    paper, sec. 5 and Table 1). Dividing by sqrt(1 + sigma^2) gives the VP form used everywhere
    here, x_t = sqrt(alphas_bar) x_0 + sqrt(1 - alphas_bar) eps with alphas_bar = 1 / (1 + sigma^2),
    so every sampler, edit task and metric runs on an EDM model unchanged. The T levels are spaced
    evenly in log sigma (1.06% apart for the defaults): the table is only where samplers look
    noise levels up; EDM trains on continuous sigma (:class:`~diffusion_lit.diffusion.formulations.EDM`).
    """
    _check_num_timesteps(num_timesteps)
    if not 0.0 < sigma_min < sigma_max:
        raise UserError(
            f"schedule.sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max, got {sigma_min!r} and "
            f"{sigma_max!r} (EDM uses 0.002 and 80)."
        )
    sigmas = np.exp(np.linspace(math.log(sigma_min), math.log(sigma_max), num_timesteps, dtype=np.float64))
    return _betas_from_alphas_bar(1.0 / (1.0 + sigmas**2), max_beta=1.0 - 1e-12)


def flow_betas(num_timesteps: int = 1000, t_min: float = 1e-3, t_max: float = 0.999) -> np.ndarray:
    """The levels of the rectified-flow formulation as a discrete table (see
    :class:`~diffusion_lit.diffusion.formulations.Flow`).

    A flow interpolates x = (1 - t) x_0 + t eps, which is the VP form divided by
    sqrt((1 - t)^2 + t^2), at noise level sigma = t / (1 - t): log sigma = logit(t). The T levels
    are even in logit(t) from ``t_min`` to ``t_max`` (so the table is EDM's with
    sigma_min = t_min / (1 - t_min), sigma_max = t_max / (1 - t_max)), and being even in log
    sigma the table is a continuum: a fractional index is an exact level
    (:meth:`NoiseSchedule.sigma_at`). The flow trains on continuous t in (0, 1).
    """
    _check_num_timesteps(num_timesteps)
    if not 0.0 < t_min < t_max < 1.0:
        raise UserError(
            f"schedule.t_min and t_max must satisfy 0 < t_min < t_max < 1, got {t_min!r} and {t_max!r} "
            "(defaults 0.001 and 0.999)."
        )
    return edm_betas(num_timesteps, t_min / (1.0 - t_min), t_max / (1.0 - t_max))


class NoiseSchedule(nn.Module):
    """Every quantity of the forward process derived once from the betas.

    Computed in float64 and stored as float32 non-persistent buffers (they are a function of
    the schedule config, which checkpoints keep), so they follow the module's device. Buffer
    names follow the formulas; all have shape (T,):

    ==========================  ==================================================
    ``betas``                   beta_t
    ``alphas``                  alpha_t = 1 - beta_t
    ``alphas_bar``              prod_{k<=t} alpha_k
    ``alphas_bar_prev``         alphas_bar at t-1 (1 at t = 0)
    ``sqrt_alphas_bar``         sqrt(alphas_bar)
    ``sqrt_one_minus_alphas_bar``  sqrt(1 - alphas_bar)
    ``posterior_variance``      beta-tilde_t = beta_t (1 - alphas_bar_prev) / (1 - alphas_bar)
    ``posterior_log_variance``  log beta-tilde_t, with t = 0 (where beta-tilde is 0) set to t = 1
    ``posterior_mean_coef_x0``  sqrt(alphas_bar_prev) beta_t / (1 - alphas_bar)
    ``posterior_mean_coef_xt``  sqrt(alpha_t) (1 - alphas_bar_prev) / (1 - alphas_bar)
    ``log_snr``                 log(alphas_bar / (1 - alphas_bar))
    ``sigmas``                  sqrt((1 - alphas_bar) / alphas_bar): the noise level of
                                x_t / sqrt(alphas_bar) = x_0 + sigma eps (Karras et al. 2022)
    ==========================  ==================================================

    The posterior coefficients are eqs. 6-7 of Ho et al. 2020 (eqs. 4 and 6 of the practical).
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_bar: torch.Tensor
    alphas_bar_prev: torch.Tensor
    sqrt_alphas_bar: torch.Tensor
    sqrt_one_minus_alphas_bar: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor
    log_snr: torch.Tensor
    sigmas: torch.Tensor

    def __init__(self, betas: np.ndarray | torch.Tensor | list[float]) -> None:
        super().__init__()
        betas64 = np.asarray(betas.cpu() if isinstance(betas, torch.Tensor) else betas, dtype=np.float64)
        if betas64.ndim != 1 or betas64.size < 1:
            raise UserError(f"a noise schedule needs a 1-D array of at least one beta, got shape {betas64.shape}.")
        bad = np.flatnonzero(~np.isfinite(betas64) | (betas64 <= 0.0) | (betas64 >= 1.0))
        if bad.size:
            first = int(bad[0])
            raise UserError(
                f"every beta must lie in the open interval (0, 1); beta[{first}] = {betas64[first]!r} "
                f"({bad.size} of {betas64.size} values out of range). Check schedule.beta_start/beta_end."
            )
        alphas = 1.0 - betas64
        alphas_bar = np.cumprod(alphas)
        alphas_bar_prev = np.concatenate([[1.0], alphas_bar[:-1]])
        posterior_variance = betas64 * (1.0 - alphas_bar_prev) / (1.0 - alphas_bar)
        # beta-tilde_0 = 0: log-variance takes the t = 1 value, as in Ho et al.'s code.
        log_source = np.concatenate([posterior_variance[1:2], posterior_variance[1:]]) if betas64.size > 1 else betas64
        derived = {
            "betas": betas64,
            "alphas": alphas,
            "alphas_bar": alphas_bar,
            "alphas_bar_prev": alphas_bar_prev,
            "sqrt_alphas_bar": np.sqrt(alphas_bar),
            "sqrt_one_minus_alphas_bar": np.sqrt(1.0 - alphas_bar),
            "posterior_variance": posterior_variance,
            "posterior_log_variance": np.log(log_source),
            "posterior_mean_coef_x0": np.sqrt(alphas_bar_prev) * betas64 / (1.0 - alphas_bar),
            "posterior_mean_coef_xt": np.sqrt(alphas) * (1.0 - alphas_bar_prev) / (1.0 - alphas_bar),
            "log_snr": np.log(alphas_bar) - np.log1p(-alphas_bar),
            "sigmas": np.sqrt((1.0 - alphas_bar) / alphas_bar),
        }
        for name, values in derived.items():
            self.register_buffer(name, torch.from_numpy(values).float(), persistent=False)
        # A table even in log sigma (EDM's, the flow's) is a continuum of levels: index i + f is
        # the level with log sigma = first + (i + f) step, exactly (sigma_at).
        log_sigmas = np.log(derived["sigmas"])
        steps = np.diff(log_sigmas)
        self.log_sigma_first = float(log_sigmas[0])
        self.log_sigma_step = float(steps[0]) if steps.size else 0.0
        self.continuous = bool(steps.size and np.allclose(steps, steps[0], rtol=1e-4, atol=0.0))

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def sigma_at(self, t: torch.Tensor) -> torch.Tensor:
        """sigma at timestep indices ``t`` (B,): integer indices look the table up; fractional
        ones (floating point) are levels between two, for a :attr:`continuous` table only."""
        if not t.is_floating_point():
            return self.sigmas[t]
        if not self.continuous:
            raise ValueError("fractional timesteps need a table even in log sigma (schedule=edm or flow)")
        return torch.exp(self.log_sigma_first + self.log_sigma_step * t.double()).to(self.sigmas.dtype)

    def index_of_sigma(self, sigma: float) -> float:
        """The (fractional) index of noise level ``sigma`` in a :attr:`continuous` table."""
        if not self.continuous:
            raise ValueError("fractional timesteps need a table even in log sigma (schedule=edm or flow)")
        return (math.log(sigma) - self.log_sigma_first) / self.log_sigma_step

    @property
    def terminal_signal_std(self) -> float:
        """sqrt(alphas_bar_T): how much of x_0 survives at the last step (should be ~0)."""
        return float(self.sqrt_alphas_bar[-1])

    def extra_repr(self) -> str:
        return (
            f"T={self.num_timesteps}, beta_1={float(self.betas[0]):.3g}, beta_T={float(self.betas[-1]):.3g}, "
            f"sqrt(alphas_bar_T)={self.terminal_signal_std:.3g}"
        )
