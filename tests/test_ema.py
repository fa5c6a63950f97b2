"""EMA decay schedule and the ordering that lets image callbacks see the averaged weights."""

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from diffusion_lit.callbacks.ema import EMA, EMADecay
from diffusion_lit.callbacks.samples import SampleGrid
from diffusion_lit.runs.training import order_callbacks
from diffusion_lit.utils.errors import UserError


def test_ema_decay_follows_the_formula():
    averaged, current = torch.tensor([1.0]), torch.tensor([3.0])
    plain = EMADecay(decay=0.9, warmup=False)
    assert plain(averaged, current, torch.tensor(100)).item() == pytest.approx(1.0 + 2.0 * 0.1)
    warm = EMADecay(decay=0.999, warmup=True)
    # n = 0: d = min(0.999, 1/10) = 0.1, so the average moves 90% of the way
    assert warm(averaged, current, torch.tensor(0)).item() == pytest.approx(1.0 + 2.0 * 0.9)
    # late: the warm-up bound (1 + n) / (10 + n) exceeds 0.999 and the plain decay applies
    assert warm(averaged, current, torch.tensor(20000)).item() == pytest.approx(1.0 + 2.0 * 0.001)


def test_ema_converges_to_a_constant_parameter():
    decay = EMADecay(decay=0.99, warmup=True)
    averaged = torch.tensor([0.0])
    for step in range(2000):
        averaged = decay(averaged, torch.tensor([5.0]), torch.tensor(step))
    assert averaged.item() == pytest.approx(5.0, rel=1e-6)


def test_weight_averaging_runs_after_image_callbacks(tmp_path):
    ema, grid, checkpoint = EMA(), SampleGrid(output_dir=str(tmp_path)), ModelCheckpoint(dirpath=tmp_path)
    ordered = order_callbacks([ema, grid, checkpoint])
    assert ordered[-1] is ema and ordered[:2] == [grid, checkpoint]


@pytest.mark.parametrize("kwargs", [{"decay": 1.0}, {"decay": -0.1}, {"update_every_n_steps": 0}])
def test_bad_ema_settings_are_reported(kwargs):
    with pytest.raises(UserError):
        EMA(**kwargs)
