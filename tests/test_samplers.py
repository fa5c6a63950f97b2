"""Samplers against exact answers: with the optimal noise predictor of Gaussian data (an
analytic oracle), every sampler must reproduce that Gaussian."""

import functools
import math

import pytest
import torch

from diffusion_lit.diffusion import samplers
from diffusion_lit.diffusion.samplers import (
    SamplerStep,
    check_sampler,
    ddim_invert,
    ddim_sample,
    ddpm_sample,
    dpm_solver_sample,
    ode_sample,
    sde_sample,
    strided_sample,
    timestep_subsequence,
)
from diffusion_lit.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas
from diffusion_lit.utils.errors import UserError


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
        steps=num_steps,
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
        runs.append(ddpm_sample(model_fn, schedule, noise, steps=20, generator=generator, callback=steps.append))
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
    assert timestep_subsequence(50, 100) == list(range(50))  # more steps than T: all of them
    for bad in [0, -3, 2.5, True]:
        with pytest.raises(UserError, match="sampler.steps must be an integer >= 1 or null"):
            timestep_subsequence(1000, bad)
    with pytest.raises(UserError, match="sampler.spacing must be one of"):
        timestep_subsequence(1000, 10, spacing="quadratic")


@pytest.mark.parametrize("betas", [linear_betas(1000), cosine_betas(1000)])
@pytest.mark.parametrize("steps", [5, 20, 100, 500])
def test_logsnr_spacing_is_exact_in_count_and_even_in_log_snr(betas, steps):
    schedule = NoiseSchedule(betas)
    timesteps = timestep_subsequence(1000, steps, "logsnr", schedule.alphas_bar)
    assert len(timesteps) == steps and timesteps[0] == 0 and timesteps[-1] == 999
    assert all(a < b for a, b in zip(timesteps, timesteps[1:], strict=False))
    if steps == 20:  # away from the ends, consecutive half log-SNR gaps are nearly equal
        ab = schedule.alphas_bar.double()
        lam = 0.5 * torch.log(ab / (1 - ab))[timesteps]
        gaps = (lam[:-1] - lam[1:])[2:-2]
        assert gaps.max() / gaps.min() < 1.2


MEAN, STD = 0.5, 0.3


def _gaussian_run(sampler, betas, steps, **options):
    schedule = NoiseSchedule(betas)
    noise = torch.randn((4096, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    model_fn = gaussian_eps_predictor(schedule, MEAN, STD)
    return sampler(model_fn, schedule, noise, steps, torch.Generator().manual_seed(1), clip_x0=False, **options)


# Relative tolerance on the standard deviation of each sampler at its typical step count,
# with the values measured for linear / cosine T=1000 (16,384 values, so sampling error
# ~0.6%). The Gaussian is narrow (s=0.3 against unit noise), which is hard for few steps.
@pytest.mark.parametrize(
    "sampler, steps, options, std_tolerance",
    [
        (ddpm_sample, None, {}, 0.03),  # 0.296 / 0.297
        (ddim_sample, 50, {}, 0.12),  # 0.274 / 0.286: first order, undershoots
        (ddim_sample, 200, {}, 0.04),  # 0.293 / 0.296: converges
        (ddim_sample, 50, {"eta": 1.0}, 0.20),  # = DDPM respaced to 50 steps: 0.252 / 0.270
        (strided_sample, None, {"stride": 30}, 0.15),  # 34 DDIM steps: 0.267 / 0.281
        (dpm_solver_sample, 20, {}, 0.04),  # 0.304 / 0.304
        (dpm_solver_sample, 10, {}, 0.05),  # 0.308 / 0.309
        (dpm_solver_sample, 20, {"stochastic": True}, 0.08),  # 0.314 / 0.315
        (sde_sample, None, {}, 0.03),  # 0.305 / 0.304
        (ode_sample, 50, {}, 0.02),  # 0.303 / 0.303
    ],
    ids=["ddpm", "ddim50", "ddim200", "ddim50-eta1", "strided30", "dpm20", "dpm10", "dpm-sde20", "sde1000", "ode50"],
)
@pytest.mark.parametrize("betas", [linear_betas(1000), cosine_betas(1000)], ids=["linear", "cosine"])
def test_every_sampler_reproduces_gaussian_data(sampler, steps, options, std_tolerance, betas):
    samples = _gaussian_run(sampler, betas, steps, **options)
    assert abs(samples.mean().item() - MEAN) < 0.01
    assert abs(samples.std().item() - STD) / STD < std_tolerance


def test_dpm_solver_beats_ddim_at_equal_steps():
    """Second order pays: at 10 network calls DPM-Solver++(2M) is far closer than DDIM."""
    for steps in (10, 20):
        dpm = abs(_gaussian_run(dpm_solver_sample, linear_betas(1000), steps).std().item() - STD)
        ddim = abs(_gaussian_run(ddim_sample, linear_betas(1000), steps).std().item() - STD)
        assert dpm < ddim / 3


def test_deterministic_samplers_ignore_the_generator():
    schedule = NoiseSchedule(cosine_betas(200))
    model_fn = gaussian_eps_predictor(schedule, MEAN, STD)
    noise = torch.randn((8, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    for sampler, steps in [(ddim_sample, 20), (ode_sample, 10), (dpm_solver_sample, 10), (strided_sample, None)]:
        first = sampler(model_fn, schedule, noise, steps, torch.Generator().manual_seed(1))
        second = sampler(model_fn, schedule, noise, steps, torch.Generator().manual_seed(2))
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    # ... whereas the stochastic ones depend on it.
    for sampler, options in [(ddpm_sample, {}), (sde_sample, {}), (dpm_solver_sample, {"stochastic": True})]:
        first = sampler(model_fn, schedule, noise, 20, torch.Generator().manual_seed(1), **options)
        second = sampler(model_fn, schedule, noise, 20, torch.Generator().manual_seed(2), **options)
        assert not torch.allclose(first, second)


def test_ddim_inversion_recovers_the_noise_and_the_image():
    schedule = NoiseSchedule(linear_betas(1000))
    model_fn = gaussian_eps_predictor(schedule, MEAN, STD)
    noise = torch.randn((256, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    errors = {}
    for steps in (250, 1000):
        images = ddim_sample(model_fn, schedule, noise, steps, clip_x0=False)
        recovered_noise = ddim_invert(model_fn, schedule, images, steps)
        again = ddim_sample(model_fn, schedule, recovered_noise, steps, clip_x0=False)
        errors[steps] = ((recovered_noise - noise).abs().max().item(), (again - images).abs().max().item())
    # Measured max errors (noise, image): 250 steps (0.140, 0.041), 1000 steps (0.035, 0.011).
    # The inversion reuses eps from the lower level of each step, a first-order approximation:
    # the error falls in proportion to the step size.
    assert errors[1000][0] < 0.05 and errors[1000][1] < 0.015
    assert errors[250][0] > 3 * errors[1000][0] and errors[250][1] > 3 * errors[1000][1]


def test_ddim_with_eta_one_is_ddpm():
    """Song et al. 2021, sec. 4.1: eta = 1 gives the DDPM posterior (beta-tilde variance)."""
    schedule = NoiseSchedule(cosine_betas(300))
    model_fn = gaussian_eps_predictor(schedule, MEAN, STD)
    noise = torch.randn((64, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    ddim = ddim_sample(model_fn, schedule, noise, 30, torch.Generator().manual_seed(5), eta=1.0, clip_x0=True)
    ddpm = ddpm_sample(model_fn, schedule, noise, 30, torch.Generator().manual_seed(5), clip_x0=True)
    torch.testing.assert_close(ddim, ddpm, rtol=1e-4, atol=1e-5)


def test_strided_follows_the_seed_formula():
    """Seed 004 section 1.4, written out independently: x0_hat from eps, then
    x_t' = sqrt(ab_t') x0_hat + sqrt(1 - ab_t') eps_est, on timesteps 299, 269, ..., 29, 0."""
    schedule = NoiseSchedule(linear_betas(300))
    model_fn = gaussian_eps_predictor(schedule, MEAN, STD)
    noise = torch.randn((16, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    ab = schedule.alphas_bar.double()
    x = noise.double()
    timesteps = [*range(299, -1, -30), 0]
    for t, t_next in zip(timesteps, timesteps[1:] + [None], strict=True):
        eps = model_fn(x.float(), torch.full((16,), t)).double()
        x0_hat = (x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
        x = x0_hat if t_next is None else ab[t_next].sqrt() * x0_hat + (1 - ab[t_next]).sqrt() * eps
    strided = strided_sample(model_fn, schedule, noise, stride=30)
    torch.testing.assert_close(strided, x.float(), rtol=1e-4, atol=1e-4)


def test_sampler_option_errors():
    schedule = NoiseSchedule(linear_betas(10))
    with pytest.raises(UserError, match="sampler.eta must lie in"):
        ddim_sample(lambda x, t: x, schedule, torch.zeros(1, 1), 5, eta=1.5)
    with pytest.raises(UserError, match="sampler.stride must be an integer >= 1"):
        strided_sample(lambda x, t: x, schedule, torch.zeros(1, 1), stride=0)


def test_samplers_report_every_step_through_the_callback():
    schedule = NoiseSchedule(cosine_betas(100))
    model_fn = gaussian_eps_predictor(schedule, MEAN, STD)
    noise = torch.randn((2, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    for sampler in (ddim_sample, dpm_solver_sample, sde_sample, ode_sample):
        steps: list[SamplerStep] = []
        out = sampler(model_fn, schedule, noise, 10, callback=steps.append)
        assert [s.index for s in steps] == list(range(10)) and steps[0].t == 99 and steps[-1].t == 0
        torch.testing.assert_close(steps[-1].x, out)
        assert math.isfinite(float(out.abs().max()))


def test_bad_variance_is_reported():
    schedule = NoiseSchedule(linear_betas(10))
    with pytest.raises(UserError, match="variance"):
        ddpm_sample(lambda x, t: x, schedule, torch.zeros(1, 1), variance="large")


def test_check_sampler_runs_each_configured_sampler_and_names_a_bad_option(capsys):
    schedule = NoiseSchedule(linear_betas(50))
    for name in ("ddpm", "ddim", "dpm_solver", "sde", "ode", "strided"):
        check_sampler(functools.partial(getattr(samplers, f"{name}_sample")), schedule)
    with pytest.raises(UserError, match="sampler.eta must lie in"):
        check_sampler(functools.partial(samplers.ddim_sample, eta=2.0), schedule)
    check_sampler(functools.partial(samplers.ddpm_sample, steps=5000), schedule)
    assert "sampler.steps=5000 is more than the schedule's T=50" in capsys.readouterr().out
