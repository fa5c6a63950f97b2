"""DDPM sampling with the exact noise predictor of Gaussian data reproduces that Gaussian."""

import pytest
import torch

from diffusion_lit.diffusion.samplers import SamplerStep, ddpm_sample, timestep_subsequence
from diffusion_lit.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas
from diffusion_lit.errors import UserError


def gaussian_eps_predictor(schedule: NoiseSchedule, mean: float, std: float):
    """For x_0 ~ N(m, s^2 I), x_t ~ N(sqrt(ab) m, ab s^2 + 1 - ab) and the optimal noise
    prediction is E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab)."""

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = schedule.alphas_bar[t].reshape(-1, *([1] * (x.ndim - 1))).double()
        x = x.double()
        return ((1 - alpha_bar).sqrt() * (x - alpha_bar.sqrt() * mean) / (alpha_bar * std**2 + 1 - alpha_bar)).float()

    return model_fn


@pytest.mark.parametrize(
    "betas, num_steps, variance, std_tolerance",
    [
        (linear_betas(1000), None, "beta_tilde", 0.05),
        (cosine_betas(200), None, "beta_tilde", 0.05),
        (linear_betas(1000), None, "beta", 0.10),
        # Respaced to 100 steps, beta-tilde ignores Var(x_0 | x_t) over each long step and
        # undershoots the spread (measured: 0.273 for 0.3); the mean stays exact.
        (linear_betas(1000), 100, "beta_tilde", 0.12),
    ],
)
def test_ddpm_reproduces_gaussian_data(betas, num_steps, variance, std_tolerance):
    schedule = NoiseSchedule(betas)
    mean, std = 0.5, 0.3
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((4096, 1, 2, 2), generator=generator)
    samples = ddpm_sample(
        gaussian_eps_predictor(schedule, mean, std),
        schedule,
        noise,
        num_steps=num_steps,
        generator=generator,
        variance=variance,
        clip_x0=False,
    )
    assert abs(samples.mean().item() - mean) < 0.02
    # beta (the larger variance) overshoots the spread slightly; beta-tilde is exact as T grows.
    assert abs(samples.std().item() - std) / std < std_tolerance


def test_wrong_predictor_gives_wrong_moments():
    """The moment test can fail: a predictor for N(0, 1) data does not produce N(0.5, 0.3^2)."""
    schedule = NoiseSchedule(linear_betas(300))
    generator = torch.Generator().manual_seed(0)
    samples = ddpm_sample(
        gaussian_eps_predictor(schedule, 0.0, 1.0),
        schedule,
        torch.randn((4096, 1), generator=generator),
        generator=generator,
        clip_x0=False,
    )
    assert abs(samples.mean().item() - 0.5) > 0.3 or abs(samples.std().item() - 0.3) > 0.3


def test_generator_makes_sampling_reproducible_and_callback_sees_every_step():
    schedule = NoiseSchedule(linear_betas(50))
    model_fn = gaussian_eps_predictor(schedule, 0.0, 0.5)
    steps: list[SamplerStep] = []
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(3)
        noise = torch.randn((4, 1, 3, 3), generator=generator)
        runs.append(ddpm_sample(model_fn, schedule, noise, num_steps=20, generator=generator, callback=steps.append))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    first_run = steps[:20]
    assert [step.index for step in first_run] == list(range(20))
    assert first_run[0].t == 49 and first_run[-1].t == 0
    assert all(step.num_steps == 20 for step in first_run)
    torch.testing.assert_close(first_run[-1].x, runs[0])


def test_timestep_subsequence():
    assert timestep_subsequence(10, None) == list(range(10))
    assert timestep_subsequence(1000, 5) == [0, 250, 500, 749, 999]
    assert timestep_subsequence(1000, 1) == [999]
    for bad in [0, 1001, 2.5]:
        with pytest.raises(UserError, match="sampler.steps|between 1"):
            timestep_subsequence(1000, bad)


def test_bad_variance_is_reported():
    schedule = NoiseSchedule(linear_betas(10))
    with pytest.raises(UserError, match="variance"):
        ddpm_sample(lambda x, t: x, schedule, torch.zeros(1, 1), variance="large")
