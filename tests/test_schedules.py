"""Beta schedules and the NoiseSchedule buffers against their closed forms."""

import math

import numpy as np
import pytest
import torch

from diffusion_lit.diffusion.schedules import (
    NoiseSchedule,
    cosine_betas,
    linear_betas,
    power_betas,
    sigmoid_betas,
    sine_betas,
)
from diffusion_lit.utils.errors import UserError

ALL_SCHEDULES = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
    "sine": sine_betas,
    "power1.5": lambda num_timesteps: power_betas(num_timesteps, power=1.5),
    "power2": lambda num_timesteps: power_betas(num_timesteps, power=2.0),
    "power10": lambda num_timesteps: power_betas(num_timesteps, power=10.0),
}


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
@pytest.mark.parametrize("num_timesteps", [1, 2, 10, 200, 300, 1000, 4000])
def test_every_beta_in_open_unit_interval_and_alphas_bar_decreasing(name, num_timesteps):
    betas = ALL_SCHEDULES[name](num_timesteps)
    assert betas.dtype == np.float64 and betas.shape == (num_timesteps,)
    assert np.all(betas > 0) and np.all(betas < 1)
    alphas_bar = np.cumprod(1 - betas)
    assert np.all(np.diff(alphas_bar) < 0)


@pytest.mark.parametrize("fn", [linear_betas, sine_betas, lambda T, **kw: power_betas(T, power=3.0, **kw)])
def test_ramp_schedules_hit_their_endpoints_and_rise(fn):
    betas = fn(500, beta_start=2e-4, beta_end=0.03)
    assert betas[0] == pytest.approx(2e-4) and betas[-1] == pytest.approx(0.03)
    assert np.all(np.diff(betas) >= 0)


def test_linear_matches_ddpm_values():
    betas = linear_betas(1000)
    assert betas[0] == 1e-4 and betas[-1] == pytest.approx(0.02)
    assert betas[499] == pytest.approx(1e-4 + (0.02 - 1e-4) * 499 / 999)
    # DDPM's x_T is almost pure noise: alphas_bar_T = prod(1 - beta) ~ 4e-5.
    assert np.prod(1 - betas) == pytest.approx(4.04e-5, rel=0.02)


def test_sine_is_half_wave_and_power_bends_the_ramp():
    sine = sine_betas(101, beta_start=0.0 + 1e-4, beta_end=0.02)
    assert sine[50] == pytest.approx((1e-4 + 0.02) / 2)  # the midpoint of a half cosine wave
    p10 = power_betas(101, power=10.0)
    assert p10[50] == pytest.approx(1e-4 + (0.02 - 1e-4) * 0.5**10)
    # power 10 leaves x_T far from noise (the thesis' failing schedule), linear does not
    assert np.prod(1 - power_betas(1000, power=10.0)) > 0.1 > np.prod(1 - linear_betas(1000))


def test_cosine_alphas_bar_matches_closed_form():
    num_timesteps, s = 1000, 0.008
    alphas_bar = np.cumprod(1 - cosine_betas(num_timesteps, s=s))

    def f(t):
        return math.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    for t in [1, 10, 250, 500, 900, 990]:
        assert alphas_bar[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9, abs=1e-12)
    assert cosine_betas(num_timesteps).max() == pytest.approx(0.999)  # clipped at t = T


def test_sigmoid_schedule_starts_near_one_and_ends_near_zero():
    alphas_bar = np.cumprod(1 - sigmoid_betas(1000))
    assert alphas_bar[0] > 0.999 and alphas_bar[-1] < 1e-3


def test_noise_schedule_buffers_follow_their_formulas():
    betas = linear_betas(100)
    schedule = NoiseSchedule(betas)
    alphas_bar = np.cumprod(1 - betas)
    alphas_bar_prev = np.concatenate([[1.0], alphas_bar[:-1]])
    np.testing.assert_allclose(schedule.alphas_bar.numpy(), alphas_bar, rtol=1e-6)
    np.testing.assert_allclose(schedule.alphas_bar_prev.numpy(), alphas_bar_prev, rtol=1e-6)
    np.testing.assert_allclose(
        schedule.posterior_variance.numpy(), betas * (1 - alphas_bar_prev) / (1 - alphas_bar), rtol=1e-5
    )
    np.testing.assert_allclose(schedule.log_snr.numpy(), np.log(alphas_bar / (1 - alphas_bar)), rtol=1e-5)
    assert schedule.posterior_variance[0] == 0
    assert schedule.posterior_log_variance[0] == pytest.approx(math.log(schedule.posterior_variance[1]))
    assert schedule.num_timesteps == 100
    assert all(buffer.dtype == torch.float32 for buffer in schedule.buffers())
    assert schedule.state_dict() == {}  # derived from config, not stored twice


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: linear_betas(0), "num_timesteps"),
        (lambda: linear_betas(10.5), "num_timesteps"),
        (lambda: linear_betas(100, beta_start=0.0), "beta_start"),
        (lambda: linear_betas(100, beta_end=1.0), "beta_end"),
        (lambda: sine_betas(100, beta_end=-0.1), "beta_end"),
        (lambda: power_betas(100, power=0), "power"),
        (lambda: cosine_betas(100, max_beta=1.5), "max_beta"),
        (lambda: sigmoid_betas(100, start=3, end=-3), "end"),
        (lambda: NoiseSchedule([0.1, 1.2]), r"beta\[1\]"),
        (lambda: NoiseSchedule([]), "at least one"),
    ],
)
def test_bad_schedule_values_name_the_value(call, message):
    with pytest.raises(UserError, match=message):
        call()
