"""Formulations: how the network is trained and what it is asked at a noise level.

All three present the same face to the samplers, ``model_fn(x_t, t) -> eps`` on the discrete levels
of a :class:`NoiseSchedule` (x_t = sqrt(alphas_bar_t) x_0 + sqrt(1 - alphas_bar_t) eps), so every
sampler, guidance composition, edit task and metric runs on either:

* :class:`VP`: the DDPM formulation (Ho et al. 2020). Training draws a timestep index
  t ~ U{0..T-1}; the net sees (x_t, t) and predicts eps, x_0 or v (``model.prediction``).
* :class:`EDM`: Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
  Models" (Table 1, "Ours"). In the variable x = x_t / sqrt(alphas_bar) = x_0 + sigma n the
  denoiser is preconditioned,

      D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
      c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
      c_in = 1 / sqrt(sigma^2 + sd^2),  c_noise = ln(sigma) / 4  (sd = sigma_data),

  training noise levels are continuous, ln(sigma) ~ N(P_mean, P_std^2), and the loss weight
  lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 makes the effective weight lambda c_out^2 = 1
  on F's own target (x_0 - c_skip x) / c_out (EDM eq. 8 and sec. 5), so the loss is a plain MSE
  on F. At sampling, t indexes the schedule's table of sigmas (``schedule=edm``).

* :class:`Flow`: rectified flow / flow matching (Liu et al. 2022, "Flow Straight and Fast";
  Lipman et al. 2023, "Flow Matching for Generative Modeling"). Convention, kept everywhere:
  t = 0 is data and t = 1 is noise,

      x_t^flow = (1 - t) x_0 + t eps,   target velocity dx/dt = eps - x_0,

  a rescaled VP process: with sigma = t / (1 - t) (so log sigma = logit t) the VP x_t at that
  noise level is x_t^flow / sqrt((1 - t)^2 + t^2). Training
  times are continuous, from ``uniform``, ``logit_normal`` (t = sigmoid(m + s n), n ~ N(0, 1))
  or SD3's ``mode`` density (Esser et al. 2024, eq. 20); the net sees (x_t^flow, 1000 t) and
  predicts the velocity. At sampling, t indexes the table of ``schedule=flow`` (even in
  logit t, so fractional indices are exact levels), and eps = x_t^flow + (1 - t) v.

c_noise is multiplied by 1000 here (250 ln sigma, from -1550 to 1100 over EDM's range): our
U-Net's sinusoidal time code was made for inputs spanning 0..999, and EDM's c_noise spans 2.6,
which its low frequencies would not resolve. A constant factor is a free choice of c_noise
(EDM sec. 5 picks c_noise for its own networks' embedding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, get_args

import torch

from diffusion_lit.diffusion.coupling import COUPLINGS, Coupling, couple
from diffusion_lit.diffusion.process import min_snr_weight, prediction_target, q_sample, x0_and_eps
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError, check_choice


class TrainingExample(NamedTuple):
    """One noised batch: what the net is called with, what it should output, per-sample weights."""

    net_input: torch.Tensor
    net_time: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor | None  # (B,), or None for uniform


class Formulation(Protocol):
    name: str

    def draw_levels(
        self, schedule: NoiseSchedule, batch: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor: ...

    def training_example(
        self, schedule: NoiseSchedule, x0: torch.Tensor, levels: torch.Tensor, noise: torch.Tensor
    ) -> TrainingExample: ...

    def net_inputs(
        self, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def eps(
        self, schedule: NoiseSchedule, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class VP:
    """The DDPM formulation on the schedule's T timesteps (see the module docstring).

    Args:
        prediction: the net's target, eps | x0 | v (:mod:`diffusion_lit.diffusion.process`).
        weighting: uniform, or min_snr (Min-SNR-gamma, Hang et al. 2023) with ``min_snr_gamma``.
    """

    prediction: str = "eps"
    weighting: str = "uniform"
    min_snr_gamma: float = 5.0
    name: str = "vp"

    def draw_levels(
        self, schedule: NoiseSchedule, batch: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Timestep indices t ~ U{0..T-1}, shape (B,)."""
        return torch.randint(0, schedule.num_timesteps, (batch,), device=device, generator=generator)

    def training_example(
        self, schedule: NoiseSchedule, x0: torch.Tensor, levels: torch.Tensor, noise: torch.Tensor
    ) -> TrainingExample:
        t = levels
        target = prediction_target(self.prediction, schedule, x0, noise, t)
        weight = (
            min_snr_weight(self.prediction, schedule, t, self.min_snr_gamma) if self.weighting == "min_snr" else None
        )
        return TrainingExample(q_sample(schedule, x0, t, noise), t, target, weight)

    def net_inputs(
        self, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x_t, t

    def eps(self, schedule: NoiseSchedule, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x0_and_eps(self.prediction, schedule, output, x_t, t)[1]


# EDM's c_noise = ln(sigma) / 4, times 1000 for our time embedding (module docstring).
_C_NOISE_SCALE = 1000.0 / 4.0


@dataclass(frozen=True)
class EDM:
    """Karras et al. 2022's preconditioning, training noise and loss (module docstring); the
    paper's values for CIFAR-10 are the defaults (sigma_data 0.5, P_mean -1.2, P_std 1.2)."""

    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    name: str = "edm"

    def __post_init__(self) -> None:
        if not self.sigma_data > 0:
            raise UserError(f"formulation.sigma_data must be > 0 (the data's std; EDM: 0.5), got {self.sigma_data!r}.")
        if not self.p_std > 0:
            raise UserError(f"formulation.p_std must be > 0 (EDM: 1.2), got {self.p_std!r}.")

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise) at noise levels ``sigma`` (EDM Table 1)."""
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        return sd2 / total, sigma * self.sigma_data / total.sqrt(), total.rsqrt(), _C_NOISE_SCALE * sigma.log()

    def draw_levels(
        self, schedule: NoiseSchedule, batch: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Noise levels with ln(sigma) ~ N(P_mean, P_std^2) (EDM sec. 5), shape (B,)."""
        return (self.p_mean + self.p_std * torch.randn(batch, device=device, generator=generator)).exp()

    def training_example(
        self, schedule: NoiseSchedule, x0: torch.Tensor, levels: torch.Tensor, noise: torch.Tensor
    ) -> TrainingExample:
        sigma = levels.to(x0.dtype)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        shape = (-1, *[1] * (x0.ndim - 1))
        x = x0 + sigma.reshape(shape) * noise
        target = (x0 - c_skip.reshape(shape) * x) / c_out.reshape(shape)
        return TrainingExample(c_in.reshape(shape) * x, c_noise, target, None)

    def net_inputs(
        self, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = schedule.sigma_at(t)
        _, _, c_in, c_noise = self.coefficients(sigma)
        shape = (-1, *[1] * (x_t.ndim - 1))
        x = x_t * (1.0 + sigma**2).sqrt().reshape(shape)
        return c_in.reshape(shape) * x, c_noise

    def eps(self, schedule: NoiseSchedule, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps = (x - D) / sigma with x = x_t / sqrt(alphas_bar), written without dividing by a
        tiny sigma: (1 - c_skip) / sigma = sigma / (sigma^2 + sd^2), c_out / sigma = sd c_in."""
        sigma = schedule.sigma_at(t).reshape(-1, *[1] * (x_t.ndim - 1))
        x = x_t * (1.0 + sigma**2).sqrt()
        total = sigma**2 + self.sigma_data**2
        return sigma / total * x - self.sigma_data * total.rsqrt() * output


# The flow's training-time densities on (0, 1) (Esser et al. 2024, sec. 3.1; u_shaped: Lee et al. 2024).
TimeDistribution = Literal["uniform", "logit_normal", "mode", "u_shaped"]
TIME_DISTRIBUTIONS: tuple[str, ...] = get_args(TimeDistribution)
FlowWeighting = Literal["uniform", "min_snr"]
# The flow's net sees 1000 t: the span of the VP nets' timestep indices (module docstring).
_FLOW_TIME_SCALE = 1000.0


def flow_time(sigma: torch.Tensor) -> torch.Tensor:
    """t = sigma / (1 + sigma): the flow time of noise level sigma (log sigma = logit t)."""
    return sigma / (1.0 + sigma)


@dataclass(frozen=True)
class Flow:
    """Rectified flow (module docstring): x_t = (1 - t) x_0 + t eps, the net predicts eps - x_0.

    Args:
        time_distribution: training times t in (0, 1): ``uniform``; ``logit_normal``,
            t = sigmoid(loc + scale n) (SD3's best, loc 0 and scale 1); ``mode``, SD3's eq. 20
            t = 1 - u - mode_scale (cos^2(pi u / 2) - 1 + u), u ~ U(0, 1) (SD3: 1.29); ``u_shaped``,
            density proportional to cosh(u_shape (t - 1/2)), heavier at both ends (Lee et al. 2024,
            "Improving the Training of Rectified Flows", a = 4 for the reflow: the ends are where
            one- and two-call sampling evaluates the net), drawn by inverting its CDF
            F(t) = (1 + sinh(a (t - 1/2)) / sinh(a / 2)) / 2.
        weighting: ``uniform`` (plain velocity MSE), or ``min_snr``: Min-SNR-gamma (Hang et al.
            2023) carried to the velocity loss. ||v - v_hat||^2 = ||x_0 - x0_hat||^2 / t^2 =
            (1 + sqrt(SNR))^2 ||x_0 - x0_hat||^2 with SNR = ((1 - t) / t)^2, so the x0-loss weight
            min(SNR, gamma) is the velocity-loss weight min(SNR, gamma) / (1 + sqrt(SNR))^2.
        coupling: ``independent`` pairs, or ``ot``: each batch's noise assigned to its images by
            exact minibatch optimal transport (:mod:`diffusion_lit.diffusion.coupling`).
    """

    time_distribution: TimeDistribution = "logit_normal"
    loc: float = 0.0
    scale: float = 1.0
    mode_scale: float = 1.29
    u_shape: float = 4.0
    weighting: FlowWeighting = "uniform"
    min_snr_gamma: float = 5.0
    coupling: Coupling = "independent"
    name: str = "flow"

    def __post_init__(self) -> None:
        check_choice("formulation.time_distribution", self.time_distribution, TIME_DISTRIBUTIONS)
        check_choice("formulation.weighting", self.weighting, get_args(FlowWeighting))
        check_choice("formulation.coupling", self.coupling, COUPLINGS)
        if not self.scale > 0:
            raise UserError(f"formulation.scale must be > 0 (the logit-normal's s; SD3: 1.0), got {self.scale!r}.")
        # The mode density is monotone (a density on (0, 1)) for -1 <= s <= 2 / (pi - 2) (SD3 eq. 20).
        if not -1.0 <= self.mode_scale <= 2.0 / (math.pi - 2.0):
            raise UserError(
                f"formulation.mode_scale must lie in [-1, {2.0 / (math.pi - 2.0):.3f}] (SD3: 1.29), "
                f"got {self.mode_scale!r}."
            )
        if not self.u_shape > 0:
            raise UserError(
                f"formulation.u_shape must be > 0 (the cosh density's a; Lee et al.: 4), got {self.u_shape}."
            )
        if not self.min_snr_gamma > 0:
            raise UserError(f"formulation.min_snr_gamma must be > 0 (paper: 5), got {self.min_snr_gamma!r}.")

    def draw_levels(
        self, schedule: NoiseSchedule, batch: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Training times t in (0, 1), shape (B,), from ``time_distribution``."""
        if self.time_distribution == "logit_normal":
            normal = torch.randn(batch, device=device, generator=generator)
            return torch.sigmoid(self.loc + self.scale * normal)
        u = torch.rand(batch, device=device, generator=generator)
        if self.time_distribution == "mode":
            u = 1.0 - u - self.mode_scale * (torch.cos(math.pi / 2.0 * u) ** 2 - 1.0 + u)
        elif self.time_distribution == "u_shaped":
            u = 0.5 + torch.asinh((2.0 * u - 1.0) * math.sinh(self.u_shape / 2.0)) / self.u_shape
        # Keep t off the two ends, where x_t is exactly data or noise and min-SNR divides by t.
        return u.clamp(1e-5, 1.0 - 1e-5)

    def training_example(
        self, schedule: NoiseSchedule, x0: torch.Tensor, levels: torch.Tensor, noise: torch.Tensor
    ) -> TrainingExample:
        noise = couple(x0, noise, self.coupling)
        t = levels.to(x0.dtype)
        shape = (-1, *[1] * (x0.ndim - 1))
        x_t = (1.0 - t).reshape(shape) * x0 + t.reshape(shape) * noise
        weight = None
        if self.weighting == "min_snr":
            root_snr = (1.0 - t) / t
            weight = torch.clamp(root_snr**2, max=self.min_snr_gamma) / (1.0 + root_snr) ** 2
        return TrainingExample(x_t, _FLOW_TIME_SCALE * t, noise - x0, weight)

    def net_inputs(
        self, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t^flow, 1000 t) from the VP x_t at timestep indices ``t`` of the table."""
        time = flow_time(schedule.sigma_at(t).double())
        norm = ((1.0 - time) ** 2 + time**2).sqrt().to(x_t.dtype).reshape(-1, *[1] * (x_t.ndim - 1))
        return x_t * norm, (_FLOW_TIME_SCALE * time).to(x_t.dtype)

    def eps(self, schedule: NoiseSchedule, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps = x_t^flow + (1 - t) v (from x_t^flow = (1 - t) x_0 + t eps and v = eps - x_0)."""
        time = flow_time(schedule.sigma_at(t).double())
        shape = (-1, *[1] * (x_t.ndim - 1))
        norm = ((1.0 - time) ** 2 + time**2).sqrt().to(x_t.dtype).reshape(shape)
        return x_t * norm + (1.0 - time).to(x_t.dtype).reshape(shape) * output


def check_formulation(formulation: Formulation, prediction: str, weighting: str) -> None:
    """EDM and the flow fix what the net predicts (EDM also the loss weight): say once that VP's
    options are not used (a warning, not an error, so that ``formulation=vp,edm,flow`` sweeps
    any experiment)."""
    if formulation.name == "flow" and prediction != "eps":
        console.print(
            f"note: formulation=flow trains the net to predict the velocity eps - x_0; model.prediction={prediction} "
            "applies to formulation=vp only and is not used (the flow's loss weight is formulation.weighting).",
            highlight=False,
        )
    if formulation.name == "edm" and (prediction != "eps" or weighting != "uniform"):
        console.print(
            f"note: formulation=edm trains its own network target and loss weight (EDM's F and lambda(sigma)); "
            f"model.prediction={prediction} and model.weighting={weighting} apply to formulation=vp only and are "
            "not used.",
            highlight=False,
        )
