"""The EDM formulation (Karras et al. 2022) against closed forms, through the LightningModule."""

import functools
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from diffusion_lit.diffusion.formulations import EDM, VP
from diffusion_lit.diffusion.process import q_sample
from diffusion_lit.diffusion.schedules import NoiseSchedule, cosine_betas, edm_betas
from diffusion_lit.diffusion.sigma_samplers import heun_sample
from diffusion_lit.lit.build import build_module
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.paths import CONFIG_DIR

SIGMA_DATA = 0.5


class ExactEdmNet(nn.Module):
    """The optimal preconditioned output F for x_0 ~ N(mean, std^2 I): D(x; sigma) = mean +
    std^2 / (std^2 + sigma^2) (x - mean), F = (D - c_skip x) / c_out; it reads sigma back from
    EDM's c_noise (250 ln sigma) and x from c_in x."""

    num_classes = 0

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std
        self.unused = nn.Parameter(torch.zeros(()))  # an optimizer needs one parameter

    def forward(self, net_input: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        sigma = (c_noise.double() / 250.0).exp().reshape(-1, *[1] * (net_input.ndim - 1))
        total = sigma**2 + SIGMA_DATA**2
        x = net_input.double() * total.sqrt()
        denoised = self.mean + self.std**2 / (self.std**2 + sigma**2) * (x - self.mean)
        c_skip, c_out = SIGMA_DATA**2 / total, sigma * SIGMA_DATA / total.sqrt()
        return ((denoised - c_skip * x) / c_out).float()


def edm_module(mean: float, std: float) -> DiffusionModule:
    return DiffusionModule(
        net=ExactEdmNet(mean, std),
        schedule=NoiseSchedule(edm_betas(1000)),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        sampler=functools.partial(heun_sample, steps=50, clip_x0=False),
        image_shape=(1, 2, 2),
        formulation=EDM(sigma_data=SIGMA_DATA),
    )


def test_edm_coefficients_are_table_1():
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = EDM(sigma_data=0.5).coefficients(sigma)
    total = sigma**2 + 0.25
    torch.testing.assert_close(c_skip, 0.25 / total)
    torch.testing.assert_close(c_out, sigma * 0.5 / total.sqrt())
    torch.testing.assert_close(c_in, 1 / total.sqrt())
    torch.testing.assert_close(c_noise, 250.0 * sigma.log())
    # The effective loss weight lambda(sigma) c_out^2 is 1 (EDM eq. 8 with Table 1's lambda).
    torch.testing.assert_close((sigma**2 + 0.25) / (sigma * 0.5) ** 2 * c_out**2, torch.ones(3, dtype=torch.float64))


def test_edm_training_noise_is_log_normal():
    levels = EDM(p_mean=-1.2, p_std=1.2).draw_levels(
        None, 200_000, torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    assert levels.log().mean().item() == pytest.approx(-1.2, abs=0.01)
    assert levels.log().std().item() == pytest.approx(1.2, abs=0.01)


def test_edm_schedule_table_is_even_in_log_sigma_from_sigma_min_to_sigma_max():
    sigmas = NoiseSchedule(edm_betas(100, sigma_min=0.002, sigma_max=80.0)).sigmas.double()
    assert sigmas[0].item() == pytest.approx(0.002, rel=1e-4) and sigmas[-1].item() == pytest.approx(80.0, rel=1e-4)
    steps = sigmas.log().diff()
    torch.testing.assert_close(steps, torch.full_like(steps, math.log(40000) / 99), rtol=1e-3, atol=0)
    with pytest.raises(UserError, match="sigma_min and sigma_max must satisfy"):
        edm_betas(10, sigma_min=1.0, sigma_max=0.5)


def test_an_exact_edm_net_gives_the_exact_noise_through_the_module():
    """The module's eps from a preconditioned net equals E[eps | x_t] of the data at every level."""
    module = edm_module(mean=0.3, std=0.2)
    schedule = module.schedule
    t = torch.tensor([0, 250, 500, 750, 999])
    x_t = torch.randn((5, 1, 2, 2), generator=torch.Generator().manual_seed(0)) * 1.5
    alpha_bar = schedule.alphas_bar.double()[t].reshape(-1, 1, 1, 1)
    expected = (1 - alpha_bar).sqrt() * (x_t - alpha_bar.sqrt() * 0.3) / (alpha_bar * 0.04 + 1 - alpha_bar)
    torch.testing.assert_close(module.conditional_eps(x_t, t, None).double(), expected, rtol=2e-3, atol=2e-4)


def test_optimal_edm_loss_is_one_when_the_data_std_is_sigma_data():
    """With data std = sigma_data, the optimal denoiser's error over c_out^2 is
    std^2 (sigma^2 + sd^2) / (sd^2 (std^2 + sigma^2)) = 1 at every sigma: EDM's unit-variance design."""
    module = edm_module(mean=0.0, std=SIGMA_DATA)
    x0 = SIGMA_DATA * torch.randn((8192, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    loss = module.diffusion_loss(x0, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(1.0, abs=0.03)
    wrong = edm_module(mean=0.0, std=0.1).diffusion_loss(x0, generator=torch.Generator().manual_seed(1))
    assert wrong.item() > 1.2  # a denoiser for other data does worse: the check can fail


def test_edm_module_samples_the_data_distribution_with_heun():
    module = edm_module(mean=0.3, std=0.2)
    samples = module.sample(2048, generator=torch.Generator().manual_seed(0))
    assert samples.mean().item() == pytest.approx(0.3, abs=0.01)
    assert samples.std().item() == pytest.approx(0.2, rel=0.05)


def test_vp_training_example_is_the_ddpm_one():
    schedule = NoiseSchedule(cosine_betas(100))
    x0 = torch.rand((4, 1, 2, 2))
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 50, 99])
    example = VP("v").training_example(schedule, x0, t, noise)
    torch.testing.assert_close(example.net_input, q_sample(schedule, x0, t, noise))
    assert example.weight is None and torch.equal(example.net_time, t)


def test_edm_says_that_vp_only_options_are_not_used(capsys):
    DiffusionModule(
        net=ExactEdmNet(0.0, 0.5),
        schedule=NoiseSchedule(edm_betas(100)),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        sampler=heun_sample,
        image_shape=(1, 2, 2),
        prediction="v",
        formulation=EDM(),
    )
    assert "model.prediction=v and model.weighting=uniform apply to formulation=vp only" in capsys.readouterr().out
    with pytest.raises(UserError, match="formulation.sigma_data must be > 0"):
        EDM(sigma_data=0)


def test_a_class_conditional_edm_model_trains_a_step_and_samples_with_guidance():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["model=tiny", "formulation=edm", "model.num_classes=3", "sampler=heun", "sampler.steps=3"],
        )
    module = build_module(cfg, (1, 16, 16))
    assert module.formulation == EDM() and module.schedule.sigmas[0].item() == pytest.approx(0.002, rel=1e-3)
    loss = module.diffusion_loss(torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and module.net.class_embed.weight.grad is not None
    samples = module.sample(3, generator=torch.Generator().manual_seed(0), labels=[0, 1, 2], guidance_scale=2.0)
    assert samples.shape == (3, 1, 16, 16) and torch.isfinite(samples).all()
