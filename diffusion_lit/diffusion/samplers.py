"""Samplers: stateless functions from starting noise to samples, all with ONE signature.

    sampler(model_fn, schedule, noise, steps=None, generator=None, callback=None, **options)

* ``model_fn(x_t, t) -> eps``: the noise prediction for images (B, C, H, W) at timestep
  indices t (B,). Networks trained for x0 or v are wrapped into an eps predictor by the
  LightningModule (:func:`diffusion_lit.diffusion.process.x0_and_eps`), and so is
  classifier-free guidance (:mod:`diffusion_lit.diffusion.guidance`).
* ``schedule``: the :class:`NoiseSchedule` the model was trained with.
* ``noise``: x_T, the starting point (B, C, H, W), usually standard normal.
* ``steps``: how many network evaluations to spend, roughly (each sampler says exactly);
  ``None`` means every one of the T timesteps.
* ``generator``: the only source of randomness, so a seed reproduces a sample exactly.
* ``callback(step)``: called after every step with a :class:`SamplerStep`, e.g. to record the
  trajectory for a denoising strip or to drive a progress bar.
* ``spacing`` (keyword): how the ``steps`` timesteps are chosen, ``"time"`` or ``"logsnr"``
  (:func:`timestep_subsequence`); each sampler defaults to what its paper recommends.
* ``edit`` (keyword): an :class:`Edit`, the editing tasks' hooks (start timestep, projection
  after each step, RePaint resampling), applied by the loop all samplers share.

Notation: alpha_bar_t = alphas_bar[t], alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t),
x_t = alpha_t x_0 + sigma_t eps. Every sampler runs on an ascending timestep subsequence
t_0 = 0 < ... < t_{n-1} = T - 1 (:func:`timestep_subsequence`), from t_{n-1} down to t_0 and
then one last step from t_0 to the clean image (alpha_bar = 1).

Hydra configs in ``conf/sampler/`` bind the options with ``_partial_: true``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError, check_choice

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


@dataclass(frozen=True)
class Edit:
    """How an editing task changes a sampling run, the same way for every sampler (the
    ``edit=`` keyword); see :mod:`diffusion_lit.editing`.

    Attributes:
        t_start: start at this timestep instead of T - 1, with the sampler's ``noise`` argument
            being x_{t_start} (SDEdit, Meng et al. 2022; iterative denoising of a noisy image).
            The timesteps are the sampler's usual ones below ``t_start``, so ``steps`` keeps
            its density.
        project: after every step to timestep s, x_s <- project(x_s, s), with s = None for the
            clean image (inpainting puts the known pixels back, noised to level s).
        resample: take every step this many times, going back from s to t through the forward
            process q(x_t | x_s) in between (RePaint, Lugmayr et al. 2022, with jump length 1):
            it lets the generated region agree with the known one. Single-step samplers only.
    """

    t_start: int | None = None
    project: Callable[[torch.Tensor, int | None], torch.Tensor] | None = None
    resample: int = 1


# Where the respaced timesteps go: evenly in t, evenly in the half log-SNR (Lu et al. 2022), or
# on Karras et al. 2022's rho-schedule of noise levels (EDM eq. 5).
Spacing = Literal["time", "logsnr", "karras"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
# The reverse variance of the DDPM step (Ho et al. sec. 3.2).
Variance = Literal["beta", "beta_tilde"]
_LOWEST_HALF_LOG_SNR = -5.0
# The noisy end of Karras spacing (EDM's sigma_max): x_t there is N(0, I) to within 4e-5 in variance.
KARRAS_SIGMA_MAX = 80.0


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """EDM eq. 5: sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0..N-1, descending from sigma_max to sigma_min; rho = 7 puts most levels at low noise
    (rho = 1 is even in sigma, rho -> inf even in log sigma)."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0:
        raise UserError(f"sampler.rho must be a number > 0 (EDM: 7), got {rho!r}.")
    ramp = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    inverse_rho = 1.0 / rho
    return (sigma_max**inverse_rho + ramp * (sigma_min**inverse_rho - sigma_max**inverse_rho)) ** rho


def timestep_subsequence(
    num_timesteps: int,
    steps: int | None,
    spacing: Spacing = "time",
    alphas_bar: torch.Tensor | None = None,
    rho: float = 7.0,
) -> list[int]:
    """``steps`` timestep indices, ascending, always containing 0 and the start level: T - 1,
    or for Karras spacing the level of sigma_max.

    ``spacing="time"`` spaces them evenly in t (DDPM respacing, DDIM); ``"logsnr"`` evenly in
    the half log-SNR lambda_t = log(alpha_t / sigma_t) (needs ``alphas_bar``), which DPM-Solver
    recommends for low-resolution images (Lu et al. 2022, sec. 3.3): it puts more steps at low
    noise, where small images get their detail. ``"karras"`` takes the timesteps nearest (in
    log sigma, sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)) to :func:`karras_sigmas` from
    min(sigma_{T-1}, 80) down to sigma_0 (EDM sec. 3); a sampling run then starts at that level,
    where x_t is noise to within 4e-5 in variance, instead of at T - 1. Indices that would
    coincide are pushed apart, so there are always exactly ``steps`` of them. ``steps=None``
    (or T, or more than T) gives every timestep.
    """
    check_choice("sampler.spacing", spacing, SPACINGS)
    if steps is None:
        return list(range(num_timesteps))
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise UserError(f"sampler.steps must be an integer >= 1 or null (all T={num_timesteps} steps), got {steps!r}.")
    if steps >= num_timesteps:
        return list(range(num_timesteps))
    steps = int(steps)
    top = num_timesteps - 1
    if spacing != "time":
        if alphas_bar is None:
            raise ValueError(f"{spacing} spacing needs the schedule's alphas_bar")
        alpha_bar = alphas_bar.double().cpu().numpy()
        log_sigmas = 0.5 * (np.log1p(-alpha_bar) - np.log(alpha_bar))  # = -lambda_t, increasing in t
    if spacing == "time":
        positions = np.linspace(0, num_timesteps - 1, steps)
    elif spacing == "logsnr":
        half_log_snr = -log_sigmas  # decreasing in t
        # The noisy end is capped at lambda = -5 (SNR 4.5e-5: x_t is noise to within 0.7%);
        # schedules with clipped final betas (cosine) would otherwise spend steps on pure noise.
        lowest = max(half_log_snr[-1], _LOWEST_HALF_LOG_SNR)
        targets = np.linspace(lowest, half_log_snr[0], steps)[::-1]  # ascending t
        # Fractional timestep of each target by linear interpolation (np.interp needs increasing x).
        positions = np.interp(targets, half_log_snr[::-1], np.arange(num_timesteps)[::-1])
    else:  # karras
        sigma_max = min(math.exp(log_sigmas[-1]), KARRAS_SIGMA_MAX)
        targets = karras_sigmas(steps, math.exp(log_sigmas[0]), sigma_max, rho)[::-1]  # ascending
        positions = np.interp(np.log(targets), log_sigmas, np.arange(num_timesteps))
        top = max(int(np.rint(positions[-1])), steps - 1)
    if steps == 1:
        return [top]
    indices = np.rint(positions).astype(np.int64)
    indices[0], indices[-1] = 0, top
    for i in range(1, steps):  # strictly increasing, upwards ...
        indices[i] = max(indices[i], indices[i - 1] + 1)
    indices[-1] = top
    for i in range(steps - 2, -1, -1):  # ... and at most the start level, downwards
        indices[i] = min(indices[i], indices[i + 1] - 1)
    return indices.tolist()


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` on the generator's device."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class Trajectory:
    """The pairs (t, s) of one sampling run, from T - 1 down to the clean image, with float64
    schedule values; s = None stands for the clean image (alpha_bar = 1)."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int | None,
        batch: int,
        device: torch.device,
        timesteps: list[int] | None = None,
        spacing: Spacing = "time",
        rho: float = 7.0,
        edit: Edit | None = None,
    ) -> None:
        if timesteps is None:
            timesteps = timestep_subsequence(schedule.num_timesteps, steps, spacing, schedule.alphas_bar, rho)
        if edit is not None and edit.t_start is not None:
            t_start = edit.t_start
            if isinstance(t_start, bool) or int(t_start) != t_start or not 0 <= t_start < schedule.num_timesteps:
                raise UserError(
                    f"the start timestep must be an integer in [0, {schedule.num_timesteps - 1}], got {t_start!r}."
                )
            timesteps = [t for t in timesteps if t < t_start] + [int(t_start)]
        self.timesteps = timesteps
        self.alphas_bar = schedule.alphas_bar.double().cpu().numpy()
        self.batch = batch
        self.device = device

    def __len__(self) -> int:
        return len(self.timesteps)

    def pairs(self) -> list[tuple[int, int | None]]:
        descending = self.timesteps[::-1]
        return list(zip(descending, [*descending[1:], None], strict=True))

    def alpha_bar(self, t: int | None) -> float:
        return 1.0 if t is None else float(self.alphas_bar[t])

    def t_batch(self, t: int) -> torch.Tensor:
        return torch.full((self.batch,), t, device=self.device, dtype=torch.long)


def _denoise(
    model_fn: ModelFn, x: torch.Tensor, t: torch.Tensor, alpha_bar_t: float, clip_x0: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) at (x_t, t). With ``clip_x0`` the clean-image estimate is clipped to
    the data range [-1, 1] and eps re-derived from it, so that the two stay consistent."""
    eps = model_fn(x, t).to(x.dtype)
    x0 = (x - math.sqrt(1.0 - alpha_bar_t) * eps) / math.sqrt(alpha_bar_t)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x - math.sqrt(alpha_bar_t) * x0) / math.sqrt(1.0 - alpha_bar_t)
    return x0, eps


def report_step(callback: SamplerCallback | None, index: int, total: int, t: int, x: torch.Tensor, x0: torch.Tensor):
    if callback is not None:
        callback(SamplerStep(index=index, num_steps=total, t=t, x=x, x0_pred=x0))


# One step of a sampler from timestep t down to s: (x_t, x0_hat, eps_hat, t, s) -> x_s.
StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, int], torch.Tensor]


def _run(
    model_fn: ModelFn,
    path: Trajectory,
    noise: torch.Tensor,
    clip_x0: bool,
    callback: SamplerCallback | None,
    step: StepFn,
    edit: Edit | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The loop every sampler shares: denoise at t, move to s with ``step``; the last step (to
    the clean image, alpha_bar = 1) returns x0_hat, which is where every update rule here lands.
    ``edit`` adds the editing hooks (:class:`Edit`): projection after each step, resampling."""
    project = edit.project if edit is not None else None
    resample = edit.resample if edit is not None else 1
    x = noise
    for index, (t, s) in enumerate(path.pairs()):
        for attempt in range(resample):
            x0, eps = _denoise(model_fn, x, path.t_batch(t), path.alpha_bar(t), clip_x0)
            x_s = x0 if s is None else step(x, x0, eps, t, s)
            if project is not None:
                x_s = project(x_s, s)
            if s is None or attempt == resample - 1:
                break
            # RePaint: back from s to t with q(x_t | x_s) = N(sqrt(r) x_s, (1 - r) I), r = alpha_bar_t / alpha_bar_s.
            ratio = path.alpha_bar(t) / path.alpha_bar(s)
            x = math.sqrt(ratio) * x_s + math.sqrt(1.0 - ratio) * randn_like(x_s, generator)
        x = x_s
        report_step(callback, index, len(path), t, x, x0)
    return x


def check_single_step(edit: Edit | None, sampler: str) -> None:
    if edit is not None and edit.resample > 1:
        raise UserError(
            f"RePaint resampling (resample > 1) needs a single-step sampler (ddpm, ddim, strided, sde); "
            f"{sampler} carries state from step to step."
        )


@torch.inference_mode()
def ddpm_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    variance: Variance = "beta_tilde",
    clip_x0: bool = True,
    spacing: Spacing = "time",
    rho: float = 7.0,
) -> torch.Tensor:
    """Ancestral sampling of Ho et al. 2020 (Algorithm 2), optionally on fewer steps.

    With ``steps < T`` the chain runs on an evenly spaced subsequence of timesteps with the
    betas recomputed from the retained alphas_bar, as in Nichol & Dhariwal 2021 (sec. 4);
    with ``steps=None`` it is exactly Algorithm 2. One network evaluation per step.

    Each step from t to its predecessor s:

    1. eps = model_fn(x_t, t);  x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), clipped to
       [-1, 1] if ``clip_x0`` (the data range; it stabilises the early, noisy steps).
    2. beta = 1 - alpha_bar_t / alpha_bar_s;  mean = sqrt(alpha_bar_s) beta / (1 - alpha_bar_t) x0
                                       + sqrt(1 - beta) (1 - alpha_bar_s) / (1 - alpha_bar_t) x_t  (eq. 7).
    3. x_s = mean + sigma z with sigma^2 = beta-tilde = beta (1 - alpha_bar_s) / (1 - alpha_bar_t) or
       sigma^2 = beta (``variance``, the two choices of Ho et al. sec. 3.2); no noise on the
       final step.
    """
    check_choice("sampler.variance", variance, get_args(Variance))
    path = Trajectory(schedule, steps, noise.shape[0], noise.device, spacing=spacing, rho=rho, edit=edit)

    def step(x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, s: int) -> torch.Tensor:
        alpha_bar_t, alpha_bar_s = path.alpha_bar(t), path.alpha_bar(s)
        beta = 1.0 - alpha_bar_t / alpha_bar_s
        mean = (
            alpha_bar_s**0.5 * beta / (1.0 - alpha_bar_t) * x0
            + (1.0 - beta) ** 0.5 * (1.0 - alpha_bar_s) / (1.0 - alpha_bar_t) * x
        )
        sigma2 = beta * (1.0 - alpha_bar_s) / (1.0 - alpha_bar_t) if variance == "beta_tilde" else beta
        return mean + sigma2**0.5 * randn_like(x, generator)

    return _run(model_fn, path, noise, clip_x0, callback, step, edit, generator)


@torch.inference_mode()
def ddim_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 50,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    eta: float = 0.0,
    clip_x0: bool = True,
    spacing: Spacing = "time",
    rho: float = 7.0,
) -> torch.Tensor:
    """DDIM (Song, Meng and Ermon 2021), one network evaluation per step.

    ``eta=0`` is deterministic (the probability-flow map, first order); ``eta=1`` has the
    DDPM posterior variance beta-tilde and equals :func:`ddpm_sample` on the same steps.
    """
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"sampler.eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM), got {eta!r}.")
    path = Trajectory(schedule, steps, noise.shape[0], noise.device, spacing=spacing, rho=rho, edit=edit)
    return _ddim_loop(model_fn, path, noise, eta, clip_x0, generator, callback, edit)


def _ddim_loop(
    model_fn: ModelFn,
    path: Trajectory,
    noise: torch.Tensor,
    eta: float,
    clip_x0: bool,
    generator: torch.Generator | None,
    callback: SamplerCallback | None,
    edit: Edit | None = None,
) -> torch.Tensor:
    """Song et al. 2021, eq. 12, from t to s: x_s = sqrt(alpha_bar_s) x0 + sqrt(1 - alpha_bar_s - sigma^2) eps
    + sigma z with sigma = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s)."""

    def step(x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, s: int) -> torch.Tensor:
        alpha_bar_t, alpha_bar_s = path.alpha_bar(t), path.alpha_bar(s)
        sigma = eta * math.sqrt((1.0 - alpha_bar_s) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_s))
        x = math.sqrt(alpha_bar_s) * x0 + math.sqrt(max(1.0 - alpha_bar_s - sigma**2, 0.0)) * eps
        return x + sigma * randn_like(x, generator) if sigma > 0 else x

    return _run(model_fn, path, noise, clip_x0, callback, step, edit, generator)


@torch.inference_mode()
def ddim_invert(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    steps: int | None = 50,
    spacing: Spacing = "time",
    rho: float = 7.0,
) -> torch.Tensor:
    """Run deterministic DDIM backwards, from clean images to the noise x_T that
    :func:`ddim_sample` (``eta=0, clip_x0=False``, same ``steps``) maps back to them.

    Each step from s up to t re-uses eps predicted at the lower level s (the usual
    approximation of DDIM inversion, exact as the steps shrink): the first step from the
    clean image uses eps at t_0, the smallest timestep.
    """
    path = Trajectory(schedule, steps, x0.shape[0], x0.device, spacing=spacing, rho=rho)
    x = x0
    for t, s in reversed(path.pairs()):
        alpha_bar_t, alpha_bar_s = path.alpha_bar(t), path.alpha_bar(s)
        eps = model_fn(x, path.t_batch(s if s is not None else t)).to(x.dtype)
        x0_pred = (x - math.sqrt(1.0 - alpha_bar_s) * eps) / math.sqrt(alpha_bar_s)
        x = math.sqrt(alpha_bar_t) * x0_pred + math.sqrt(1.0 - alpha_bar_t) * eps
    return x


@torch.inference_mode()
def strided_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    stride: int = 30,
    clip_x0: bool = False,
) -> torch.Tensor:
    """Iterative denoising on strided timesteps (seed 004, sections 1.4-1.5).

    Timesteps T-1, T-1-stride, T-1-2 stride, ... down to 0 (or ``steps`` evenly spaced ones
    when ``steps`` is given). At each t, with t' the next timestep:

        x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_est) / sqrt(alpha_bar_t)
        x_t'   = sqrt(alpha_bar_t') x0_hat + sqrt(1 - alpha_bar_t') eps_est

    i.e. predict the clean image and re-noise it to t' with the estimated noise. This is DDIM
    with eta = 0 on the strided timesteps (the tests check that they agree exactly).
    """
    if steps is not None:
        timesteps = timestep_subsequence(schedule.num_timesteps, steps)
    elif isinstance(stride, bool) or int(stride) != stride or stride < 1:
        raise UserError(f"sampler.stride must be an integer >= 1, got {stride!r}.")
    else:
        timesteps = sorted({*range(schedule.num_timesteps - 1, -1, -int(stride)), 0})
    path = Trajectory(schedule, None, noise.shape[0], noise.device, timesteps=timesteps, edit=edit)
    return _ddim_loop(model_fn, path, noise, 0.0, clip_x0, generator, callback, edit)


@torch.inference_mode()
def dpm_solver_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 20,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    clip_x0: bool = True,
    spacing: Spacing = "logsnr",
    rho: float = 7.0,
    stochastic: bool = False,
    order: int = 2,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2) and its 3rd-order multistep
    form, one network evaluation per step; meant for 10-25 steps (SDE variants: 20-50).
    Deterministic, or with ``stochastic=True`` the SDE variants (see below).

    With lambda_t = log(alpha_t / sigma_t), step size h_i = lambda_{t_i} - lambda_{t_{i-1}}
    and the data prediction x0_i at step i, the update is the exponential integrator

        x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (exp(-h_i) - 1) D_i

    with D_i = x0_{i-1} on the first step (first order) and
    D_i = (1 + 1/(2 r)) x0_{i-1} - 1/(2 r) x0_{i-2}, r = h_{i-1} / h_i, afterwards (second
    order multistep). The last step, to the clean image (sigma = 0, lambda = inf), is first
    order and returns the data prediction itself.

    ``stochastic=True`` solves the reverse SDE instead (SDE-DPM-Solver++(2M), the variant in
    the DPM-Solver++ paper's follow-up code): with the same D_i,

        x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) exp(-h_i) x_{t_{i-1}}
                  + alpha_{t_i} (1 - exp(-2 h_i)) D_i + sigma_{t_i} sqrt(1 - exp(-2 h_i)) z,

    which, like ancestral DDPM, injects fresh noise that corrects the model's errors.

    ``order=3`` (DPM-Solver++(3M), with ``stochastic=True`` the 3M-SDE sampler of k-diffusion)
    expands the data prediction to second order in lambda from the last three predictions:
    with eta = 1 (SDE) or 0, g = (1 + eta) h, phi_2 = (exp(-g) - 1) / g + 1, phi_3 = phi_2 / g - 1/2,
    r0 = h_{i-1} / h_i, r1 = h_{i-2} / h_i, d0 = (x0_{i-1} - x0_{i-2}) / r0, d1 = (x0_{i-2} - x0_{i-3}) / r1:

        x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) exp(-eta h) x_{t_{i-1}} + alpha_{t_i} (1 - exp(-g)) x0_{i-1}
                  + alpha_{t_i} (phi_2 (d0 + (d0 - d1) r0 / (r0 + r1)) - phi_3 (d0 - d1) / (r0 + r1))
                  + [SDE] sigma_{t_i} sqrt(1 - exp(-2 h)) z,

    with the phi_2 d0 term alone on the second step and neither on the first.
    """
    if order not in (2, 3) or isinstance(order, bool):
        raise UserError(f"sampler.order must be 2 (DPM-Solver++(2M)) or 3 (3M), got {order!r}.")
    check_single_step(edit, "dpm_solver")
    path = Trajectory(schedule, steps, noise.shape[0], noise.device, spacing=spacing, rho=rho, edit=edit)
    history: list[tuple[torch.Tensor, float]] = []  # (x0_hat, h) of the previous steps, newest first
    eta = 1.0 if stochastic else 0.0

    def step(x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, s: int) -> torch.Tensor:
        alpha_bar_t, alpha_bar_s = path.alpha_bar(t), path.alpha_bar(s)
        h = 0.5 * (math.log(alpha_bar_s / (1.0 - alpha_bar_s)) - math.log(alpha_bar_t / (1.0 - alpha_bar_t)))
        g = (1.0 + eta) * h
        sigma_ratio = math.sqrt((1.0 - alpha_bar_s) / (1.0 - alpha_bar_t))
        x_s = sigma_ratio * math.exp(-eta * h) * x - math.sqrt(alpha_bar_s) * math.expm1(-g) * x0
        if order == 2 and history:
            previous_x0, previous_h = history[0]
            r = previous_h / h
            x_s = x_s - math.sqrt(alpha_bar_s) * math.expm1(-g) * (0.5 / r) * (x0 - previous_x0)
        elif order == 3 and history:
            phi_2 = math.expm1(-g) / g + 1.0
            r0 = history[0][1] / h
            d0 = (x0 - history[0][0]) / r0
            correction = phi_2 * d0
            if len(history) > 1:
                r1 = history[1][1] / h
                d1 = (history[0][0] - history[1][0]) / r1
                phi_3 = phi_2 / g - 0.5
                correction = phi_2 * (d0 + (d0 - d1) * r0 / (r0 + r1)) - phi_3 * (d0 - d1) / (r0 + r1)
            x_s = x_s + math.sqrt(alpha_bar_s) * correction
        history[:] = [(x0, h), *history[:1]]
        if stochastic:
            x_s = x_s + math.sqrt((1.0 - alpha_bar_s) * -math.expm1(-2.0 * h)) * randn_like(x, generator)
        return x_s

    return _run(model_fn, path, noise, clip_x0, callback, step, edit, generator)


@torch.inference_mode()
def sde_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    clip_x0: bool = True,
    spacing: Spacing = "time",
    rho: float = 7.0,
) -> torch.Tensor:
    """Euler-Maruyama on the reverse-time VP SDE (Song et al. 2021, eqs. 6 and 11).

    The forward VP SDE dx = -beta(t)/2 x dt + sqrt(beta(t)) dw is discretised, as in Song et
    al.'s own VP sampler, with beta(t) dt over a step from t down to s taken as the step's
    discrete beta = 1 - alpha_bar_t / alpha_bar_s (equal to the integrated rate log(alpha_bar_s / alpha_bar_t) to first
    order, but bounded by 1: schedules whose last betas are clipped near 1, such as cosine,
    would otherwise make the first steps explode). With the score -eps / sigma_t, one step of
    the reverse SDE dx = [-beta/2 x - beta score] dt + sqrt(beta) dw_bar is

        x_s = (1 + beta / 2) x_t - (beta / sigma_t) eps + sqrt(beta) z.

    The last step returns the denoised estimate x0_hat(x_{t_0}, t_0) (Tweedie's formula), as
    Song et al. do. One network evaluation per step; first order, so it wants many steps
    (hundreds to T).
    """
    path = Trajectory(schedule, steps, noise.shape[0], noise.device, spacing=spacing, rho=rho, edit=edit)

    def step(x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, s: int) -> torch.Tensor:
        alpha_bar_t = path.alpha_bar(t)
        beta = 1.0 - alpha_bar_t / path.alpha_bar(s)
        return (
            (1.0 + 0.5 * beta) * x
            - beta / math.sqrt(1.0 - alpha_bar_t) * eps
            + math.sqrt(beta) * randn_like(x, generator)
        )

    return _run(model_fn, path, noise, clip_x0, callback, step, edit, generator)


@torch.inference_mode()
def ode_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 50,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    clip_x0: bool = True,
    spacing: Spacing = "logsnr",
    rho: float = 7.0,
) -> torch.Tensor:
    """Heun's method (2nd order) on the probability-flow ODE (Song et al. 2021, eq. 13).

    In the variables y = x / alpha_t and u = sigma_t / alpha_t the VP probability-flow ODE
    becomes dy/du = eps(x, t) (Karras et al. 2022, sec. 3; Song et al. 2021, DDIM is its Euler
    method), so one Heun step from t down to s is

        d_t = eps(x_t, t);  y' = y_t + (u_s - u_t) d_t;  d_s = eps(alpha_s y', s)
        y_s = y_t + (u_s - u_t) (d_t + d_s) / 2 = y' + (u_s - u_t) (d_s - d_t) / 2.

    The Euler part is computed through the clean-image estimate, y' = (u_s / u_t) y_t +
    (1 - u_s / u_t) x0_hat (the same value, since y = x0 + u eps), which stays accurate where u
    is huge. Two steps are Euler steps: the first, from the noisiest timestep (u ~ 1e4 for the
    cosine schedule, where any error of the model would be multiplied by u in the Heun
    correction and x0_hat is merely the data mean), and the last, to u = 0, which returns
    x0_hat(x_{t_0}, t_0). Deterministic given the noise; 2 * steps - 2 network evaluations.
    """
    check_single_step(edit, "ode (Heun)")
    path = Trajectory(schedule, steps, noise.shape[0], noise.device, spacing=spacing, rho=rho, edit=edit)
    noisiest = path.timesteps[-1]

    def step(x: torch.Tensor, x0: torch.Tensor, eps_t: torch.Tensor, t: int, s: int) -> torch.Tensor:
        alpha_bar_t, alpha_bar_s = path.alpha_bar(t), path.alpha_bar(s)
        alpha_t, alpha_s = math.sqrt(alpha_bar_t), math.sqrt(alpha_bar_s)
        u_t, u_s = math.sqrt(1.0 - alpha_bar_t) / alpha_t, math.sqrt(1.0 - alpha_bar_s) / alpha_s
        y_euler = (u_s / u_t) * (x / alpha_t) + (1.0 - u_s / u_t) * x0
        if t == noisiest:
            return alpha_s * y_euler
        _, eps_s = _denoise(model_fn, alpha_s * y_euler, path.t_batch(s), alpha_bar_s, clip_x0)
        return alpha_s * (y_euler + 0.5 * (u_s - u_t) * (eps_s - eps_t))

    return _run(model_fn, path, noise, clip_x0, callback, step, edit, generator)


def check_sampler(sampler: Callable[..., torch.Tensor], schedule: NoiseSchedule, key: str = "sampler") -> None:
    """Run ``sampler`` (a partial of one of the samplers above) on one 1x2x2 image with a zero
    noise predictor: every option is checked by the code that will use it, in milliseconds,
    before a run loads data or takes a step. A UserError names the option; ``steps`` above T is
    allowed (all T steps are used) but said once here, since it is usually a typo."""
    steps = getattr(sampler, "keywords", {}).get("steps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > schedule.num_timesteps:
        console.print(
            f"warning: {key}.steps={steps} is more than the schedule's T={schedule.num_timesteps}: "
            f"all {schedule.num_timesteps} steps are used.",
            highlight=False,
        )
    sampler(lambda x, t: torch.zeros_like(x), schedule, torch.zeros(1, 1, 2, 2), generator=torch.Generator())
