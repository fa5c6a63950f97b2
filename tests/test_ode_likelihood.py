"""The probability-flow ODE likelihood (diffusion_lit.diffusion.ode_likelihood) against closed forms:
the mixture test bed's density, a Gaussian through a whole flow module (where Hutchinson's
estimator has no variance), the dequantization offset, and the refusals."""

import math

import pytest
import torch

from diffusion_lit.diffusion.mixture import GaussianMixture
from diffusion_lit.diffusion.ode_likelihood import OdeLikelihood, probability_flow_nll
from diffusion_lit.diffusion.schedules import NoiseSchedule, cosine_betas, flow_betas
from diffusion_lit.utils.errors import UserError
from tests.test_flow import flow_module

FLOW_TABLE = NoiseSchedule(flow_betas(1000))
LOWEST_SIGMA = float(FLOW_TABLE.sigmas.double()[0])  # the ODE's model of the data is x_0 + sigma_0 eps


def mixture_nll(mixture: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """-log density of x_0 + sigma_0 eps at x (B, D): the mixture with variances s_k^2 + sigma_0^2."""
    variances = mixture.stds**2 + LOWEST_SIGMA**2
    offsets = x.double()[:, None, :] - mixture.means[None]
    log_components = (
        mixture.weights.log()[None]
        - 0.5 * mixture.dim * torch.log(2 * math.pi * variances)[None]
        - 0.5 * (offsets**2).sum(-1) / variances[None]
    )
    return -torch.logsumexp(log_components, dim=1)


@pytest.fixture(scope="module")
def mixture_points():
    mixture = GaussianMixture.narrow(dim=16, seed=2)
    x, _ = mixture.sample(5, torch.Generator().manual_seed(0))
    return mixture, x.reshape(5, 1, 4, 4)


def test_the_exact_trace_gives_the_mixtures_closed_form_density(mixture_points):
    mixture, x = mixture_points
    result = probability_flow_nll(mixture.model_fn(FLOW_TABLE), FLOW_TABLE, x, trace="exact", bins=None,
                                  rtol=1e-6, atol=1e-6)  # fmt: skip
    torch.testing.assert_close(result.nll, mixture_nll(mixture, x.flatten(1)), rtol=0, atol=0.02)
    assert result.probe_variance.abs().max() == 0
    torch.testing.assert_close(result.nll, result.prior + result.flow)
    assert result.velocity_evaluations > 10


def test_hutchinson_is_unbiased_and_reports_its_spread(mixture_points):
    """The mean of 32 probes per image lies within 4 of its reported standard errors of the
    exact value, and the reported variance is the probes' spread (not zero: the mixture's
    velocity has off-diagonal Jacobian entries)."""
    mixture, x = mixture_points
    result = probability_flow_nll(mixture.model_fn(FLOW_TABLE), FLOW_TABLE, x, probes=32, bins=None,
                                  generator=torch.Generator().manual_seed(1))  # fmt: skip
    stderr = (result.probe_variance / 32).sqrt()
    assert (stderr > 0.01).all()
    assert ((result.nll - mixture_nll(mixture, x.flatten(1))).abs() < 4 * stderr + 0.02).all()
    bpd = result.bits_per_dim()
    scale = 16 * math.log(2)
    assert bpd["hutchinson_std_bpd"] == pytest.approx(math.sqrt(float(result.probe_variance.mean())) / scale)
    assert bpd["hutchinson_stderr_bpd"] == pytest.approx(bpd["hutchinson_std_bpd"] / math.sqrt(32 * 5))


def test_a_gaussian_through_a_flow_module_has_an_exact_hutchinson_estimate_and_the_dequantization_bound():
    """N(mean, std^2 I) data: the optimal velocity is affine in x with a Jacobian proportional to
    the identity, so one Rademacher probe gives the trace exactly. Dequantized 8-bit values: the
    result is -log p(x + u) + D log(bins / 2), u being the bin offsets the same seed draws."""
    mean, std = 0.2, 0.4
    module = flow_module(mean, std)
    x = torch.tensor([-1.0, 0.0, 0.6, 1.0]).reshape(1, 1, 2, 2) * torch.tensor([1.0, 0.5, -0.3]).reshape(3, 1, 1, 1)
    x = (torch.round((x + 1) * 127.5) / 127.5 - 1).float()  # on the 8-bit grid
    result = probability_flow_nll(module.eps_fn(), module.schedule, x, probes=2, bins=255,
                                  generator=torch.Generator().manual_seed(4))  # fmt: skip
    offsets = torch.rand(x.shape, generator=torch.Generator().manual_seed(4)) - 0.5
    dequantized = (x + offsets * 2 / 255).double().flatten(1)
    variance = std**2 + LOWEST_SIGMA**2
    expected = 0.5 * ((dequantized - mean) ** 2 / variance + math.log(2 * math.pi * variance)).sum(1)
    torch.testing.assert_close(result.nll - result.dequantization, expected, rtol=0, atol=2e-3)
    assert result.dequantization == pytest.approx(4 * math.log(127.5))
    assert result.probe_variance.max() < 1e-8
    bpd = result.bits_per_dim()
    assert bpd["nll_bpd"] == pytest.approx(bpd["prior_bpd"] + bpd["flow_bpd"] + bpd["dequantization_bpd"])


def test_batches_join_into_one_evaluation(mixture_points):
    mixture, x = mixture_points
    parts = [
        probability_flow_nll(mixture.model_fn(FLOW_TABLE), FLOW_TABLE, part, trace="exact", bins=None)
        for part in (x[:2], x[2:])
    ]
    joined = OdeLikelihood.joined(parts)
    assert joined.nll.shape == (5,) and joined.velocity_evaluations == sum(p.velocity_evaluations for p in parts)
    assert joined.bits_per_dim()["nll_stderr_bpd"] == pytest.approx(
        float(joined.nll.std()) / math.sqrt(5) / (16 * math.log(2))
    )


def test_wrong_inputs_are_refused(mixture_points):
    mixture, x = mixture_points
    vp_table = NoiseSchedule(cosine_betas(100))
    with pytest.raises(UserError, match="nll.method=bound"):
        probability_flow_nll(mixture.model_fn(vp_table), vp_table, x)
    with pytest.raises(UserError, match="nll.trace=hutchinson"):
        probability_flow_nll(mixture.model_fn(FLOW_TABLE), FLOW_TABLE, torch.zeros(1, 1, 32, 32), trace="exact")
    for key, value in (("probes", 0), ("rtol", -1.0), ("trace", "diagonal")):
        with pytest.raises(UserError, match=f"nll.{key}"):
            probability_flow_nll(mixture.model_fn(FLOW_TABLE), FLOW_TABLE, x, **{key: value})
