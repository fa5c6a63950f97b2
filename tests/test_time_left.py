"""The fit's time-left estimate: its arithmetic on a made-up clock, and a real (tiny) Lightning fit."""

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diffusion_lit.callbacks.time_left import TimeLeft, duration_text
from diffusion_lit.utils.errors import UserError


def test_duration_text_reads_at_a_glance():
    assert duration_text(44.6) == "45 s"
    assert duration_text(725) == "12 min 05 s"
    assert duration_text(3720) == "1 h 02 min"
    assert duration_text(-3) == "0 s"


def test_estimate_is_the_pace_since_the_skipped_steps_times_the_steps_left():
    callback = TimeLeft(skip_steps=5)
    trainer = SimpleNamespace(estimated_stepping_batches=105, global_step=5)
    assert callback.seconds_left(trainer, now=0.0) is None  # nothing measured yet
    callback._start = (100.0, 5)  # what on_train_batch_end records at step 5
    trainer.global_step = 5
    assert callback.seconds_left(trainer, now=100.0) is None
    trainer.global_step = 25  # 20 steps in 10 s: 0.5 s a step, 80 steps left
    assert callback.seconds_left(trainer, now=110.0) == pytest.approx(40.0)
    trainer.estimated_stepping_batches = float("inf")  # max_steps=-1 and no epoch limit: no estimate
    assert callback.seconds_left(trainer, now=110.0) is None
    with pytest.raises(UserError, match="callbacks.time_left"):
        TimeLeft(report_after=0)


class _Regression(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        return nn.functional.mse_loss(self.layer(inputs), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_a_fit_prints_the_time_left_after_the_first_steps_and_each_epoch(capsys):
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[TimeLeft(skip_steps=2, report_after=3)], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(_Regression(), DataLoader(data, batch_size=4))  # 16 steps an epoch, 32 in all
    lines = [line for line in capsys.readouterr().out.splitlines() if "of training left" in line]
    assert lines[0].startswith("about ") and "(step 5 of 32," in lines[0]  # 3 measured steps after step 2
    assert any("(step 16 of 32," in line for line in lines)  # the first epoch's end; the last has 0 left
    assert len(lines) == 2
    assert "time_left_min" in trainer.progress_bar_metrics and "time_left_min" not in trainer.logged_metrics
