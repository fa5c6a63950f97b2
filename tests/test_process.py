"""Forward process and posterior against closed forms (practical eqs. 4 and 6, DDPM eqs. 4, 6-7)."""

import pytest
import torch

from diffusion_lit.diffusion.process import (
    check_prediction,
    min_snr_weight,
    predict_eps_from_x0,
    predict_x0_from_eps,
    prediction_target,
    q_posterior_mean_variance,
    q_sample,
    v_from_x0_eps,
    x0_and_eps,
)
from diffusion_lit.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas
from diffusion_lit.utils.errors import UserError


def test_q_sample_moments_match_closed_form():
    schedule = NoiseSchedule(linear_betas(200))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 0.7)
    for t_index in [0, 20, 100, 199]:
        t = torch.full((x0.shape[0],), t_index)
        xt = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=generator))
        alpha_bar = float(schedule.alphas_bar[t_index])
        assert abs(xt.mean().item() - alpha_bar**0.5 * 0.7) < 0.02
        assert abs(xt.var().item() - (1 - alpha_bar)) < 0.02 * max(1 - alpha_bar, 0.05)


def test_q_sample_composes_the_one_step_chain():
    """x_t from x_0 in closed form has the moments of t applications of x_t = sqrt(a) x_{t-1} + sqrt(b) eps."""
    betas = cosine_betas(30)
    schedule = NoiseSchedule(betas)
    generator = torch.Generator().manual_seed(1)
    x = torch.full((40000,), -0.4, dtype=torch.float64)
    for beta in betas:
        x = (1 - beta) ** 0.5 * x + beta**0.5 * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    alpha_bar = float(schedule.alphas_bar[-1])
    assert abs(x.mean().item() - alpha_bar**0.5 * -0.4) < 0.015
    assert abs(x.var().item() - (1 - alpha_bar)) < 0.02


def test_posterior_matches_practical_equations():
    betas = linear_betas(50)
    schedule = NoiseSchedule(betas)
    x0, xt = torch.randn(6, 1, 4, 4, dtype=torch.float64), torch.randn(6, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, 5, 20, 48, 49])
    mean, variance = q_posterior_mean_variance(schedule, x0.float(), xt.float(), t)
    for i, step in enumerate(t.tolist()):
        alpha, beta = 1 - betas[step], betas[step]
        alpha_bar = float(torch.tensor(1 - betas[: step + 1]).prod())
        alpha_bar_prev = alpha_bar / alpha
        # eq. 6 of the practical: beta-tilde = beta (1 - ab_prev) / (1 - ab); eq. 4: the mean
        expected_variance = beta * (1 - alpha_bar_prev) / (1 - alpha_bar)
        expected_mean = (alpha**0.5 * (1 - alpha_bar_prev) * xt[i] + alpha_bar_prev**0.5 * beta * x0[i]) / (
            1 - alpha_bar
        )
        torch.testing.assert_close(mean[i].double(), expected_mean, rtol=1e-4, atol=1e-5)
        assert abs(variance[i].item() - expected_variance) < 1e-7 + 1e-4 * expected_variance


def test_posterior_is_the_bayes_product_of_forward_densities():
    """Numerically: q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0), scalar case on a grid."""
    betas = linear_betas(100)
    schedule = NoiseSchedule(betas)
    step, x0, xt = 40, 0.3, -0.5
    alpha_bar_prev = float(schedule.alphas_bar_prev[step])
    grid = torch.linspace(-6, 6, 200001, dtype=torch.float64)
    log_density = -((xt - (1 - betas[step]) ** 0.5 * grid) ** 2) / (2 * betas[step]) - (
        (grid - alpha_bar_prev**0.5 * x0) ** 2
    ) / (2 * (1 - alpha_bar_prev))
    weights = torch.softmax(log_density, dim=0)
    numeric_mean = (weights * grid).sum().item()
    numeric_variance = (weights * (grid - numeric_mean) ** 2).sum().item()
    mean, variance = q_posterior_mean_variance(
        schedule, torch.tensor([[x0]]), torch.tensor([[xt]]), torch.tensor([step])
    )
    assert abs(mean.item() - numeric_mean) < 1e-5
    assert abs(variance.item() - numeric_variance) / numeric_variance < 1e-4


def test_x0_eps_round_trip():
    schedule = NoiseSchedule(linear_betas(1000))
    x0, eps = torch.randn(8, 3, 5, 5), torch.randn(8, 3, 5, 5)
    t = torch.tensor([0, 1, 10, 100, 400, 700, 900, 999])
    xt = q_sample(schedule, x0, t, eps)
    torch.testing.assert_close(predict_x0_from_eps(schedule, xt, t, eps)[:7], x0[:7], rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(predict_eps_from_x0(schedule, xt, t, x0)[1:], eps[1:], rtol=1e-3, atol=2e-3)


# -- parameterizations and loss weights -------------------------------------------------------


def _random_state(num_timesteps=1000, batch=64):
    schedule = NoiseSchedule(cosine_betas(num_timesteps))
    generator = torch.Generator().manual_seed(3)
    x0 = torch.rand((batch, 1, 4, 4), generator=generator) * 2 - 1
    eps = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, num_timesteps, (batch,), generator=generator)
    return schedule, x0, eps, t, q_sample(schedule, x0, t, eps)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_targets_and_conversions_are_exact_inverses(prediction):
    schedule, x0, eps, t, xt = _random_state()
    target = prediction_target(prediction, schedule, x0, eps, t)
    x0_back, eps_back = x0_and_eps(prediction, schedule, target, xt, t)
    # x0 from eps divides by sqrt(ab_t) (about 1e-3 at the noisiest cosine steps), eps from x0
    # by sqrt(1 - ab_t) (about 6e-3 at t=0): float32 rounding is amplified accordingly.
    torch.testing.assert_close(x0_back, x0, rtol=0, atol=2e-3)
    torch.testing.assert_close(eps_back, eps, rtol=0, atol=2e-3)
    mid = (t > 50) & (t < 950)  # away from the ends the round trip is exact to float32 precision
    torch.testing.assert_close(x0_back[mid], x0[mid], rtol=0, atol=1e-5)
    torch.testing.assert_close(eps_back[mid], eps[mid], rtol=0, atol=1e-5)


def test_v_is_the_rotation_of_eps_and_x0():
    """Salimans & Ho 2022: with alpha^2 + sigma^2 = 1, (x_t, v) is a rotation of (x0, eps), so
    |x_t|^2 + |v|^2 = |x0|^2 + |eps|^2 elementwise."""
    schedule, x0, eps, t, xt = _random_state()
    v = v_from_x0_eps(schedule, x0, eps, t)
    torch.testing.assert_close(xt**2 + v**2, x0**2 + eps**2, rtol=1e-5, atol=1e-5)


def test_min_snr_weights_match_the_formula_and_equalise_the_x0_loss():
    schedule, x0, eps, t, xt = _random_state()
    gamma = 5.0
    ab = schedule.alphas_bar[t].double()
    snr = ab / (1 - ab)
    torch.testing.assert_close(
        min_snr_weight("x0", schedule, t, gamma).double(), snr.clamp(max=gamma), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        min_snr_weight("eps", schedule, t, gamma).double(), snr.clamp(max=gamma) / snr, rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        min_snr_weight("v", schedule, t, gamma).double(), snr.clamp(max=gamma) / (snr + 1), rtol=1e-5, atol=0
    )
    # Whatever the parameterization, the weighted loss of a wrong prediction equals
    # min(SNR, gamma) * |x0 - x0_hat|^2 (Hang et al. 2023, eq. 9): compare on one wrong x0_hat.
    mid = (t > 20) & (t < 980)
    x0_hat = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    eps_hat = predict_eps_from_x0(schedule, xt, t, x0_hat)
    expected = snr.clamp(max=gamma) * ((x0 - x0_hat).double() ** 2).flatten(1).mean(1)
    for prediction in ["eps", "x0", "v"]:
        output = prediction_target(prediction, schedule, x0_hat, eps_hat, t)
        target = prediction_target(prediction, schedule, x0, eps, t)
        weighted = min_snr_weight(prediction, schedule, t, gamma) * ((output - target) ** 2).flatten(1).mean(1)
        torch.testing.assert_close(weighted.double()[mid], expected[mid], rtol=2e-3, atol=1e-7)


def test_unknown_prediction_is_a_user_error():
    with pytest.raises(UserError, match="model.prediction must be one of"):
        check_prediction("score")
