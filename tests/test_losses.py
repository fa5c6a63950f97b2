"""The training losses: one value per sample, and the pseudo-Huber loss against its definition."""

import math
from typing import get_args

import pytest
import torch
import torch.nn.functional as F

from diffusion_lit.lit.module import LOSSES, PSEUDO_HUBER_C, Loss, pseudo_huber


def errors(scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn((6, 3, 4, 4), generator=generator, dtype=torch.float64)
    return target + scale * torch.randn(target.shape, generator=generator, dtype=torch.float64), target


def test_the_loss_names_the_config_accepts_are_the_losses_there_are():
    """model.loss's type (the config schema reads it) and the table of loss functions list the same names."""
    assert sorted(get_args(Loss)) == sorted(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_one_value_per_sample(name):
    output, target = errors(0.5)
    per_sample = LOSSES[name](output, target)
    assert per_sample.shape == (6,)
    # each sample's value depends on that sample alone
    changed = output.clone()
    changed[0] += 1.0
    assert torch.equal(LOSSES[name](changed, target)[1:], per_sample[1:])


def test_mse_is_the_mean_square_error_of_each_sample():
    output, target = errors(0.5)
    expected = torch.stack([F.mse_loss(o, t) for o, t in zip(output, target, strict=True)])
    torch.testing.assert_close(LOSSES["mse"](output, target), expected)


def test_pseudo_huber_is_the_norm_form_with_c_00054_root_d_divided_by_root_d():
    """Song & Dhariwal (2023) and Lee et al. (2024): sqrt(||e||^2 + c^2) - c, c = 0.00054 sqrt(d)."""
    output, target = errors(0.5)
    e = (output - target).flatten(1)
    d = e.shape[1]
    c = 0.00054 * math.sqrt(d)
    expected = ((e.square().sum(dim=1) + c**2).sqrt() - c) / math.sqrt(d)
    torch.testing.assert_close(pseudo_huber(output, target), expected)
    assert torch.equal(pseudo_huber(target, target), torch.zeros(6, dtype=torch.float64))


def test_pseudo_huber_is_quadratic_near_zero_and_the_rms_error_far_from_it():
    target = torch.zeros((1, 1, 8, 8), dtype=torch.float64)
    tiny = torch.full_like(target, 1e-6)  # RMS error far below c: e^2 / (2 c)
    assert pseudo_huber(tiny, target).item() == pytest.approx(1e-12 / (2 * PSEUDO_HUBER_C), rel=1e-3)
    large = torch.full_like(target, 0.3)  # far above c: |e| - c
    assert pseudo_huber(large, target).item() == pytest.approx(0.3 - PSEUDO_HUBER_C, rel=1e-5)


def test_a_sample_ten_times_further_off_pulls_as_hard_under_pseudo_huber_and_ten_times_harder_under_mse():
    def gradient_norm(name: str, scale: float) -> float:
        output, target = errors(scale, seed=1)
        output = output[:1].requires_grad_()
        LOSSES[name](output, target[:1]).sum().backward()
        return output.grad.norm().item()

    assert gradient_norm("pseudo_huber", 1.0) == pytest.approx(gradient_norm("pseudo_huber", 0.1), rel=0.01)
    assert gradient_norm("mse", 1.0) == pytest.approx(10 * gradient_norm("mse", 0.1), rel=1e-6)
