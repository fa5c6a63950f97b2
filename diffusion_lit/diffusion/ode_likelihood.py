"""The exact log-likelihood of a model's probability-flow ODE (Chen et al. 2018; Song et al. 2021,
appendix D.2), written in flow time as the samplers of :mod:`diffusion_lit.diffusion.flow_samplers`
are, with their conversion (:class:`~diffusion_lit.diffusion.flow_samplers.FlowTime`, unclipped):
x = (1 - t) x_0 + t eps, dx/dt = v(x, t), with v from the model's eps at the level of noise
sigma = t / (1 - t),

    x_vp = x / sqrt((1 - t)^2 + t^2),   eps = model_fn(x_vp, level),   v = (eps - x) / (1 - t).

Along a solution of the ODE the density changes by the instantaneous change of variables,
d/dt log p_t(x_t) = -div v(x_t, t), so from the lowest level t_0 of the schedule to its top t_1

    log p_{t_0}(x_{t_0}) = log p_{t_1}(x_{t_1}) + int_{t_0}^{t_1} div v(x_t, t) dt,

with the prior p_{t_1} = N(0, t_1^2 I): the marginal at t_1 is (1 - t_1) x_0 + t_1 eps, so this
leaves out a data term of relative size (1 - t_1)^2 (1e-6 at the flow table's top, t_1 = 0.999).
The model of the data is x_{t_0} / (1 - t_0): the integration starts at (1 - t_0) x and adds
D log(1 - t_0), so what is computed is the density of x_0 + sigma_0 eps at x (sigma_0 the lowest
level's noise, 0.001 on the flow table): exact for the mixture test bed in closed form.

The divergence is either exact (one backward pass per dimension: small D, the tests) or
Hutchinson's estimator (Hutchinson 1989; FFJORD, Grathwohl et al. 2019): div v = E[z^T (dv/dx) z]
for Rademacher z, one vector-Jacobian product per probe, each probe fixed along the whole
trajectory so that the ODE stays deterministic. Each probe's integral is an unbiased estimate of
the log-density; its variance for Rademacher z is 2 sum_{i != j} of the squared entries of the
symmetric part of the Jacobian, integrated along the path, and is estimated from the spread of
the ``probes`` estimates of each image (reported per image and as the standard error of the mean).

8-bit images are dequantized (Theis et al. 2016): y = x + u with u uniform over the pixel's bin of
width 2 / bins on the grid of bins + 1 levels in [-1, 1]; by Jensen's inequality
-log P(x) <= E_u[-log p(y)] - D log(2 / bins), a bound on the discrete data's NLL, in the same units
as the variational bound of :mod:`diffusion_lit.diffusion.likelihood`.

The whole batch is one ODE state for scipy's adaptive RK45 (as ``flow_adaptive`` samples), so its
step sizes follow the worst image; the number of velocity evaluations (each one network call and
its backward passes) is reported. It needs a table even in log sigma (formulation=flow or edm),
where every time is a level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from scipy.integrate import solve_ivp

from diffusion_lit.diffusion.flow_samplers import FlowTime
from diffusion_lit.diffusion.samplers import ModelFn
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.utils.errors import UserError, check_choice

Trace = Literal["hutchinson", "exact"]
# trace=exact costs one backward pass per dimension per velocity evaluation.
MAX_EXACT_TRACE_DIMS = 256


@dataclass
class OdeLikelihood:
    """Per image (B,), in nats: the negative log-likelihood (mean over the probes) = prior + flow +
    dequantization, with the prior term -log p_{t_1}(x_{t_1}), the flow term -int div v dt -
    D log(1 - t_0) (the change of log-density along the ODE), the dequantization offset
    D log(bins / 2) (0 for continuous data); the variance of one probe's estimate (0 with
    ``trace="exact"``; None with a single probe: not estimable); the velocity evaluations."""

    nll: torch.Tensor
    probe_variance: torch.Tensor | None
    prior: torch.Tensor
    flow: torch.Tensor
    dequantization: float
    num_dims: int
    num_probes: int
    velocity_evaluations: int

    @classmethod
    def joined(cls, parts: list[OdeLikelihood]) -> OdeLikelihood:
        """The batches of one evaluation as one; velocity evaluations add up."""
        first = parts[0]
        variances = [part.probe_variance for part in parts]
        return cls(
            nll=torch.cat([part.nll for part in parts]),
            probe_variance=None if any(v is None for v in variances) else torch.cat(variances),
            prior=torch.cat([part.prior for part in parts]), flow=torch.cat([part.flow for part in parts]),
            dequantization=first.dequantization, num_dims=first.num_dims, num_probes=first.num_probes,
            velocity_evaluations=sum(part.velocity_evaluations for part in parts),
        )  # fmt: skip

    def bits_per_dim(self) -> dict[str, float]:
        """Batch means in bits per dimension: the NLL and its standard error over the images, its
        prior, flow and dequantization terms, the std of one probe's estimate of an image and the
        Hutchinson estimator's part of the standard error of the mean."""
        scale = 1.0 / (self.num_dims * math.log(2.0))
        results = {
            "nll_bpd": float(self.nll.mean()) * scale,
            "prior_bpd": float(self.prior.mean()) * scale,
            "flow_bpd": float(self.flow.mean()) * scale,
            "dequantization_bpd": self.dequantization * scale,
        }
        if len(self.nll) > 1:  # over the images: the spread of the data's log-likelihoods
            results["nll_stderr_bpd"] = float(self.nll.std() / math.sqrt(len(self.nll))) * scale
        if self.probe_variance is not None:
            mean_variance = float(self.probe_variance.mean())
            results["hutchinson_std_bpd"] = math.sqrt(mean_variance) * scale
            results["hutchinson_stderr_bpd"] = math.sqrt(mean_variance / (self.num_probes * len(self.nll))) * scale
        return results


def _check_positive_number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"nll.{key} must be a number > 0, got {value!r}.")
    return float(value)


def probability_flow_nll(
    model_fn: ModelFn,
    schedule: NoiseSchedule,
    x: torch.Tensor,
    *,
    trace: Trace = "hutchinson",
    probes: int = 2,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    bins: int | None = 255,
    generator: torch.Generator | None = None,
) -> OdeLikelihood:
    """-log p(x) of the model's probability-flow ODE for a batch ``x`` (B, ...) (module docstring).

    Args:
        model_fn: the eps predictor ``model_fn(x_t, level) -> eps`` (as samplers receive it); it
            must be differentiable in x_t (not under inference mode).
        schedule: the model's table; it must be even in log sigma (:attr:`NoiseSchedule.continuous`).
        trace: ``hutchinson`` (``probes`` Rademacher vectors per image) or ``exact``.
        probes: Hutchinson probes per image (>= 2 also estimates the estimator's variance).
        rtol, atol: tolerances of the RK45 solver (Song et al. 2021 use 1e-5).
        bins: images on the grid of ``bins`` + 1 levels in [-1, 1] are dequantized (255 for 8-bit
            images); None: continuous data, the density at ``x`` itself.
        generator: the source of the dequantization noise and of the probes.
    """
    check_choice("nll.trace", trace, get_args(Trace))
    if isinstance(probes, bool) or int(probes) != probes or probes < 1:
        raise UserError(f"nll.probes must be an integer >= 1, got {probes!r}.")
    rtol, atol = _check_positive_number("rtol", rtol), _check_positive_number("atol", atol)
    if not schedule.continuous:
        raise UserError(
            "the probability-flow likelihood (nll.method=ode) needs a table even in log sigma (formulation=flow or "
            "edm): a VP checkpoint's times are its T levels. Use nll.method=bound (the variational bound) for it."
        )
    shape, batch = x.shape, x.shape[0]
    num_dims = x[0].numel()
    if trace == "exact" and num_dims > MAX_EXACT_TRACE_DIMS:
        raise UserError(
            f"nll.trace=exact needs one backward pass per dimension ({num_dims} here) at every step: use "
            f"nll.trace=hutchinson for data of more than {MAX_EXACT_TRACE_DIMS} dimensions."
        )
    num_probes = 1 if trace == "exact" else int(probes)
    device, dtype = x.device, x.dtype
    noise_device = generator.device if generator is not None else device

    dequantization = 0.0
    if bins is not None:
        width = 2.0 / bins
        u = torch.rand(shape, generator=generator, device=noise_device, dtype=dtype).to(device)
        x = x + (u - 0.5) * width
        dequantization = -num_dims * math.log(width)
    if trace == "hutchinson":
        signs = torch.randint(0, 2, (num_probes, *shape), generator=generator, device=noise_device).to(device, dtype)
        probe_vectors = [2.0 * s - 1.0 for s in signs]
    else:
        probe_vectors = []

    path = FlowTime(model_fn, schedule, x, clip_x0=False, edit=None)  # the samplers' conversion to v
    t_low, t_top = path.time(0), path.time(path.top)
    evaluations = [0]

    def divergence(v: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """(num_probes, B): z^T (dv/dx) z per probe, or the exact trace."""
        if trace == "exact":
            flat_v = v.flatten(1)
            diagonal = torch.zeros(batch, device=device, dtype=dtype)
            for index in range(num_dims):
                (row,) = torch.autograd.grad(flat_v[:, index].sum(), state, retain_graph=True)
                diagonal = diagonal + row.flatten(1)[:, index]
            return diagonal[None]
        estimates = []
        for index, probe in enumerate(probe_vectors):
            (jvp,) = torch.autograd.grad(v, state, probe, retain_graph=index + 1 < num_probes)
            estimates.append((jvp * probe).flatten(1).sum(dim=1))
        return torch.stack(estimates)

    def field(t: float, flat: np.ndarray) -> np.ndarray:
        evaluations[0] += 1
        with torch.enable_grad():
            state = torch.from_numpy(flat[: batch * num_dims]).reshape(shape).to(device, dtype).requires_grad_(True)
            v, _ = path.velocity(state, path.level(t))
            div = divergence(v, state)
        return np.concatenate([v.detach().double().cpu().numpy().ravel(), div.detach().double().cpu().numpy().ravel()])

    start = ((1.0 - t_low) * x).detach().double().cpu().numpy().ravel()
    initial = np.concatenate([start, np.zeros(num_probes * batch)])
    solution = solve_ivp(field, (t_low, t_top), initial, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the ODE solver of the likelihood stopped: {solution.message}")
    end = torch.from_numpy(solution.y[:, -1])
    x_top = end[: batch * num_dims].reshape(batch, num_dims)
    integrals = end[batch * num_dims :].reshape(num_probes, batch)  # int div v dt per probe
    # -log N(x_top; 0, t_top^2 I), and the Jacobian of x -> (1 - t_0) x.
    prior = 0.5 * (x_top**2).sum(dim=1) / t_top**2 + num_dims * (math.log(t_top) + 0.5 * math.log(2 * math.pi))
    flow = -integrals - num_dims * math.log(1.0 - t_low)
    per_probe = prior[None] + flow + dequantization
    if trace == "exact":
        variance = torch.zeros(batch, dtype=torch.float64)
    else:
        variance = per_probe.var(dim=0) if num_probes > 1 else None
    return OdeLikelihood(
        nll=per_probe.mean(dim=0), probe_variance=variance, prior=prior, flow=flow.mean(dim=0),
        dequantization=dequantization, num_dims=num_dims, num_probes=num_probes,
        velocity_evaluations=evaluations[0],
    )  # fmt: skip
