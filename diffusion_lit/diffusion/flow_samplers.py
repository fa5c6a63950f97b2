"""Samplers in flow time: the probability-flow ODE written as a rectified flow, dx/dt = v(x, t),
with x = (1 - t) x_0 + t eps and v = eps - x_0 (t = 1 noise, t = 0 data; the convention of
:class:`~diffusion_lit.diffusion.formulations.Flow`).

They keep the one signature of :mod:`diffusion_lit.diffusion.samplers`,
``sampler(model_fn, schedule, noise, steps, generator, callback, **options)``, and run on any
checkpoint: a level of the schedule with noise level sigma is flow time t = sigma / (1 + sigma),
the VP x_t there is x / sqrt((1 - t)^2 + t^2), and from the model's eps

    x0_hat = (x - t eps) / (1 - t),   v = eps - x0_hat.

On a table even in log sigma (``schedule=flow`` or ``edm``) any t is a level (a fractional
timestep index, :meth:`NoiseSchedule.sigma_at`); on a VP table every time is moved to the
nearest level in log sigma, and the adaptive solver is refused. With editing hooks (inpainting's
projection, a start timestep) every time is moved to a level too, since the hooks work on levels.

Euler's step from t to s, x + (s - t) v = (1 - s) x0_hat + s eps, is DDIM's (Song et al. 2021)
on the same levels: a flow model and a VP model share this sampler and its 1-call limit.

Time grids: ``steps`` times from the top level down, u_i = 1 - i / steps, then SD3's shift
(Esser et al. 2024, eq. 23), t = s u / (1 + (s - 1) u) scaled to the top level's time: a shift
s > 1 spends more steps at high noise. The last step lands on t = 0 and returns the clean
estimate x0_hat, as every sampler here does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import torch
from scipy.integrate import solve_ivp

from diffusion_lit.diffusion.samplers import Edit, ModelFn, SamplerCallback, check_single_step, randn_like, report_step
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.utils.errors import UserError, check_choice

FlowMethod = Literal["euler", "heun", "midpoint"]
FLOW_METHODS: tuple[str, ...] = get_args(FlowMethod)


def shifted(u: np.ndarray, shift: float) -> np.ndarray:
    """SD3's timestep shift (Esser et al. 2024, eq. 23): t = s u / (1 + (s - 1) u)."""
    return shift * u / (1.0 + (shift - 1.0) * u)


def log_sigma(time: float) -> float:
    """log sigma = log(t / (1 - t)) of flow time t: minus the half log-SNR lambda = log((1 - t) / t)."""
    return math.log(time) - math.log1p(-time)


def _check_number(key: str, value: object, low: float, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > low if strict else value >= low):
        raise UserError(f"sampler.{key} must be a number {'>' if strict else '>='} {low:g}, got {value!r}.")
    return float(value)


class FlowTime:
    """Flow times as levels of a schedule, and the velocity of the model at them."""

    def __init__(
        self, model_fn: ModelFn, schedule: NoiseSchedule, noise: torch.Tensor, clip_x0: bool, edit: Edit | None
    ) -> None:
        self.model_fn = model_fn
        self.schedule = schedule
        self.clip_x0 = clip_x0
        self.batch, self.device = noise.shape[0], noise.device
        self.edit = edit
        # Editing hooks work on integer levels; otherwise a continuous table takes any time.
        self.continuous = schedule.continuous and edit is None
        self.log_sigmas = np.log(schedule.sigmas.double().cpu().numpy())
        top = schedule.num_timesteps - 1
        if edit is not None and edit.t_start is not None:
            t_start = edit.t_start
            if isinstance(t_start, bool) or int(t_start) != t_start or not 0 <= t_start <= top:
                raise UserError(f"the start timestep must be an integer in [0, {top}], got {t_start!r}.")
            top = int(t_start)
        self.top = top

    def level(self, time: float) -> float | int:
        """The level of flow time ``time``: fractional on a continuous table, else the nearest one."""
        log_sigma_t = log_sigma(time)
        if self.continuous:
            return float(np.clip(self.schedule.index_of_sigma(math.exp(log_sigma_t)), 0.0, self.top))
        return int(min(np.abs(self.log_sigmas[: self.top + 1] - log_sigma_t).argmin(), self.top))

    def time(self, level: float | int) -> float:
        """The flow time t = sigma / (1 + sigma) of a level."""
        sigma = float(
            self.schedule.sigma_at(torch.tensor([level], dtype=torch.float64 if self.continuous else torch.long))
        )
        return sigma / (1.0 + sigma)

    def grid(self, steps: int, shift: float) -> list[float | int]:
        """``steps`` levels from the top down (descending, distinct; after the last comes t = 0)."""
        t_top = self.time(self.top)
        u = np.linspace(1.0, 0.0, steps + 1)[:-1]
        levels: list[float | int] = []
        for time in t_top * shifted(u, shift):
            level = self.level(float(time))
            if not levels or level < levels[-1]:
                levels.append(level)
        return levels

    def velocity(self, x: torch.Tensor, level: float | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(v, x0_hat) at flow state ``x`` and ``level``; x0_hat clipped to [-1, 1] with ``clip_x0``
        and eps re-derived from it, so that the two stay consistent."""
        t = self.time(level)
        dtype = torch.float32 if isinstance(level, float) else torch.long
        levels = torch.full((self.batch,), level, device=self.device, dtype=dtype)
        eps = self.model_fn(x / math.sqrt((1.0 - t) ** 2 + t**2), levels).to(x.dtype)
        x0 = (x - t * eps) / (1.0 - t)
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - (1.0 - t) * x0) / t
        return eps - x0, x0

    def start(self, noise: torch.Tensor) -> torch.Tensor:
        """The flow state at the top level from ``noise`` = the VP x_t there (N(0, I) from scratch)."""
        t = self.time(self.top)
        return noise * math.sqrt((1.0 - t) ** 2 + t**2)

    def finish_step(
        self,
        index: int,
        total: int,
        level: float | int,
        next_level: float | int | None,
        x: torch.Tensor,
        x0: torch.Tensor,
        callback: SamplerCallback | None,
    ) -> torch.Tensor:
        """The editing projection at the next level (on its VP x_s), then the progress report."""
        t_next = 0.0 if next_level is None else self.time(next_level)
        norm = math.sqrt((1.0 - t_next) ** 2 + t_next**2)
        if self.edit is not None and self.edit.project is not None:
            x = self.edit.project(x / norm, next_level) * norm  # integer levels with an edit (class docstring)
        report_step(callback, index, total, int(round(level)), x / norm, x0)
        return x


@torch.inference_mode()
def flow_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 20,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    method: FlowMethod = "euler",
    shift: float = 1.0,
    clip_x0: bool = True,
) -> torch.Tensor:
    """Fixed-step ODE solver in flow time (module docstring) on ``steps`` levels.

    ``method``: ``euler`` (1st order, ``steps`` network calls; = DDIM), ``heun`` (2nd order,
    trapezoidal corrector, 2 steps - 1 calls: the last step, to t = 0, is Euler's) or
    ``midpoint`` (2nd order, 2 steps calls). ``shift`` is SD3's timestep shift (1 = even in t).
    """
    check_choice("sampler.method", method, FLOW_METHODS)
    check_single_step(edit, f"flow ({method})")
    path = FlowTime(model_fn, schedule, noise, clip_x0, edit)

    def step(x: torch.Tensor, level: float | int, next_level: float | int | None) -> tuple[torch.Tensor, torch.Tensor]:
        t = path.time(level)
        s = 0.0 if next_level is None else path.time(next_level)
        v, x0 = path.velocity(x, level)
        if method == "midpoint":
            # x at the midpoint time by Euler, then the whole step with the velocity there.
            half = path.level(0.5 * (t + s))
            v, _ = path.velocity(x + (path.time(half) - t) * v, half)
        x_next = x + (s - t) * v
        if method == "heun" and next_level is not None:
            v_next, _ = path.velocity(x_next, next_level)
            x_next = x + (s - t) * 0.5 * (v + v_next)
        return x_next, x0

    return _march(path, noise, steps, shift, step, callback)


@torch.inference_mode()
def flow_sde_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 100,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    eta: float = 1.0,
    shift: float = 1.0,
    clip_x0: bool = True,
) -> torch.Tensor:
    """A stochastic sampler from the velocity: Euler-Maruyama on the reverse-time SDE with the
    flow's marginals, ``steps`` network calls.

    For any w(t) >= 0, dx = [v - w(t)/2 grad log p_t(x)] dt + sqrt(w(t)) dW (t running from 1
    to 0) has the marginals of dx/dt = v (the Fokker-Planck equations agree); the score is
    grad log p_t(x) = -E[eps | x] / t (from x = (1 - t) x_0 + t eps). With w(t) = 2 eta t the
    step from t to s = t - h is

        x_s = x - h v - h eta eps_hat + sqrt(2 eta t h) z,   z ~ N(0, I),

    noise that fades towards the data (w -> 0 as t -> 0); ``eta = 0`` is the Euler ODE step.
    The last step, to t = 0, returns x0_hat.

    The step removes ``h eta eps_hat`` of noise; where that is more than the next level holds
    (h eta > s, large eta on a coarse grid) Euler-Maruyama overshoots and the samples blow up
    (eta = 3 at 10 steps: mixture modes 2-2.4x too wide, triangles 0.03 valid). So each step uses
    churn = min(eta, s / h): the cap never acts for eta <= 1 on an even grid, and at 10 steps any
    eta samples like eta = 1. Raising eta re-noises more per step, as the churn of Karras et al.
    2022 does, which corrects the learned velocity's errors on the way down: at 100 steps on eight
    narrow U-Nets' triangles eta = 3 gave 0.959 valid on average against eta = 1's 0.938
    (experiments/default_run/README.md), with the mixture's std ratios within 6% of exact.
    """
    eta = _check_number("eta", eta, 0.0, strict=False)
    check_single_step(edit, "flow_sde")
    path = FlowTime(model_fn, schedule, noise, clip_x0, edit)

    def step(x: torch.Tensor, level: float | int, next_level: float | int | None) -> tuple[torch.Tensor, torch.Tensor]:
        v, x0 = path.velocity(x, level)
        if next_level is None:
            return x0, x0
        t, s = path.time(level), path.time(next_level)
        h = t - s
        churn = min(eta, s / h)  # never remove more noise than the next level holds
        eps = x0 + v
        return x - h * v - h * churn * eps + math.sqrt(2.0 * churn * t * h) * randn_like(x, generator), x0

    return _march(path, noise, steps, shift, step, callback)


@torch.inference_mode()
def flow_dpm_sde_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = 20,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    eta: float = 3.0,
    order: int = 2,
    shift: float = 0.3,
    t_min: float = 0.1,
    clip_x0: bool = True,
) -> torch.Tensor:
    """The reverse SDE of :func:`flow_sde_sample` (diffusion w(t) = 2 eta t) solved as DPM-Solver++
    solves its SDE (Lu et al. 2022, "DPM-Solver++", the SDE-DPM-Solver++ family): exactly, with the
    clean estimate x0_hat held over the step, instead of by Euler-Maruyama. ``steps`` network calls.

    Write x = (1 - t) x_0 + t e. With x_0 held, the SDE moves e by an Ornstein-Uhlenbeck process
    de = -(eta / t) e d(-t) + sqrt(2 eta / t) dW that keeps N(0, I), so from t down to s
    e_s = k e_t + sqrt(1 - k^2) z with k = (s / t)^eta, and with lambda = log((1 - t) / t),
    h = lambda_s - lambda_t (so s (1 - t) / t = (1 - s) e^-h):

        x_s = k (s / t) x_t + (1 - s) (1 - k e^-h) x0_hat + s sqrt(1 - k^2) z,   z ~ N(0, I).

    It is exact for any eta and step size wherever x0_hat does not change over the step, and its
    weights stay in [0, 1], so large eta on a coarse grid cannot overshoot as the Euler-Maruyama step
    can (no cap needed); eta -> infinity re-noises fully at every step (x_s = (1 - s) x0_hat + s z),
    eta = 0 is DDIM (= the flow Euler step).

    ``order=2`` is the multistep form (DPM-Solver++(2M), its midpoint variant): x0_hat is taken
    linear in lambda through the previous step's estimate, x0_hat + (x0_hat - x0_prev) / (2 r) with
    r = h_prev / h, at one network call per step. The last step, to t = 0, returns x0_hat.

    Below flow time ``t_min`` the steps keep all their noise (eta = 0 there: deterministic
    DPM-Solver++(2M)), as EDM confines its churn to sigma >= S_tmin (Karras et al. 2022). Why: the
    multistep correction also carries the noise injected since the step before (it is in
    x0_hat - x0_prev), and near the data, where the steps are long in lambda, that widens narrow
    modes. On the mixture oracle, at 20-100 steps and eta 3-5, the widest mode's std came out
    1.09-1.17x with re-noising down to t = 0 and 0.99-1.02x with t_min = 0.1 (1.01-1.09x at 0.05).
    At 10 steps even in t (shift 1) the last level is t = 0.1, so t_min = 0.1 leaves that grid as it
    is: there, on the triangles of the default run (14 epochs, three seeds), eta 5 samples about as
    well as `flow_sde` at 100 (experiments/formulations/README.md, issue 27).
    """
    eta = _check_number("eta", eta, 0.0, strict=False)
    if isinstance(order, bool) or order not in (1, 2):
        raise UserError(f"sampler.order must be 1 or 2, got {order!r}.")
    t_min = _check_number("t_min", t_min, 0.0, strict=False)
    check_single_step(edit, "flow_dpm_sde")
    path = FlowTime(model_fn, schedule, noise, clip_x0, edit)
    previous: list[tuple[torch.Tensor, float]] = []  # (x0_hat, h) of the step before

    def step(x: torch.Tensor, level: float | int, next_level: float | int | None) -> tuple[torch.Tensor, torch.Tensor]:
        _, x0 = path.velocity(x, level)
        if next_level is None:
            return x0, x0
        t, s = path.time(level), path.time(next_level)
        h = log_sigma(t) - log_sigma(s)  # the step in lambda = -log sigma
        held = x0
        if order == 2 and previous:
            x0_prev, h_prev = previous[0]
            held = x0 + (x0 - x0_prev) * (h / (2.0 * h_prev))
        previous[:] = [(x0, h)]
        keep = (s / t) ** eta if t > t_min else 1.0
        x_next = keep * (s / t) * x + (1.0 - s) * (1.0 - keep * math.exp(-h)) * held
        if keep < 1.0:
            x_next = x_next + s * math.sqrt(1.0 - keep * keep) * randn_like(x, generator)
        return x_next, x0

    return _march(path, noise, steps, shift, step, callback)


@torch.inference_mode()
def flow_adaptive_sample(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: SamplerCallback | None = None,
    *,
    edit: Edit | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    clip_x0: bool = True,
) -> torch.Tensor:
    """The flow ODE by an adaptive Runge-Kutta 4(5) solver (Dormand-Prince, scipy's ``RK45``, as
    Liu et al. 2022 sample rectified flows: rtol = atol = 1e-5) from the top level down to the
    lowest one, then one step to t = 0 (x0_hat); the whole batch is one ODE state, so the step
    sizes follow its worst sample. The number of network calls is the solver's choice (reported
    after every call as the step count so far); ``steps`` is not used.

    Needs a table even in log sigma (``schedule=flow`` or ``edm``), where every time is a level.
    """
    del steps, generator  # an ODE solve: no step count, no randomness
    rtol = _check_number("rtol", rtol, 0.0)
    atol = _check_number("atol", atol, 0.0)
    if not schedule.continuous or edit is not None:
        raise UserError(
            "flow_adaptive needs a schedule even in log sigma (formulation=flow or edm), without editing hooks; "
            "on this checkpoint use sampler=flow_heun or dpm_solver."
        )
    path = FlowTime(model_fn, schedule, noise, clip_x0, edit)
    t_top, t_low = path.time(path.top), path.time(0)
    shape, calls = noise.shape, [0]

    def velocity(t: float, state: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(state).reshape(shape).to(noise.device, noise.dtype)
        v, x0 = path.velocity(x, path.level(t))
        report_step(callback, calls[0], calls[0] + 2, int(round(path.level(t))), x / math.hypot(1.0 - t, t), x0)
        calls[0] += 1
        return v.double().cpu().numpy().ravel()

    start = path.start(noise).double().cpu().numpy().ravel()
    solution = solve_ivp(velocity, (t_top, t_low), start, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the adaptive ODE solver stopped: {solution.message}")
    x = torch.from_numpy(solution.y[:, -1]).reshape(shape).to(noise.device, noise.dtype)
    _, x0 = path.velocity(x, 0)
    report_step(callback, calls[0], calls[0] + 1, 0, x0, x0)
    return x0


def _march(
    path: FlowTime,
    noise: torch.Tensor,
    steps: int | None,
    shift: float,
    step: Callable[[torch.Tensor, float | int, float | int | None], tuple[torch.Tensor, torch.Tensor]],
    callback: SamplerCallback | None,
) -> torch.Tensor:
    """The loop of the fixed-grid samplers: ``step(x, level, next_level) -> (x_next, x0_hat)`` on
    the grid of ``steps`` levels with ``shift``, then the editing hooks and the report."""
    shift = _check_number("shift", shift, 0.0)
    levels = path.grid(_check_steps(steps, path.schedule), shift)
    x = path.start(noise)
    for index, level in enumerate(levels):
        next_level = levels[index + 1] if index + 1 < len(levels) else None
        x_next, x0 = step(x, level, next_level)
        x = path.finish_step(index, len(levels), level, next_level, x_next, x0, callback)
    return x


def _check_steps(steps: int | None, schedule: NoiseSchedule) -> int:
    if steps is None:
        return schedule.num_timesteps
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise UserError(f"sampler.steps must be an integer >= 1, got {steps!r}.")
    return int(steps)
