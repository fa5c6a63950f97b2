"""The training time left, estimated from the run's own pace: in the progress bar and on the console."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError


def duration_text(seconds: float) -> str:
    """``"12 min 05 s"``, ``"45 s"`` or ``"1 h 02 min"``: what a person reads at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class TimeLeft(Callback):
    """Estimates the fit's time left: wall-clock seconds per optimiser step since step
    ``skip_steps`` (start-up, the first allocations and kernel choices left out), validation and
    the other callbacks' work included, times the steps left of
    ``trainer.estimated_stepping_batches`` (epochs, ``limit_train_batches`` and accumulation
    counted). Shown in the progress bar as ``time_left_min`` (not sent to the loggers), and
    printed after ``report_after`` measured steps and at the end of every epoch, so that the
    first minute of a run says how long the rest takes. The final evaluation comes after it.
    """

    def __init__(self, skip_steps: int = 5, report_after: int = 20) -> None:
        if skip_steps < 0 or report_after < 1:
            raise UserError(
                "callbacks.time_left needs skip_steps >= 0 and report_after >= 1, "
                f"got {skip_steps!r} and {report_after!r}."
            )
        self.skip_steps = skip_steps
        self.report_after = report_after
        self._start: tuple[float, int] | None = None  # (clock, global step) where the measurement began

    def seconds_left(self, trainer: pl.Trainer, now: float) -> float | None:
        """The estimate at ``now`` (None before two measured steps, or with no step limit)."""
        total = trainer.estimated_stepping_batches
        if self._start is None or total == float("inf"):
            return None
        started, first_step = self._start
        steps = trainer.global_step - first_step
        if steps < 1:
            return None
        return (now - started) / steps * max(0, total - trainer.global_step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        now = time.perf_counter()
        if self._start is None:
            if trainer.global_step >= self.skip_steps:
                self._start = (now, trainer.global_step)
            return
        left = self.seconds_left(trainer, now)
        if left is None:
            return
        pl_module.log("time_left_min", left / 60, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        if trainer.global_step - self._start[1] == self.report_after:
            self.report(trainer, left)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        left = self.seconds_left(trainer, time.perf_counter())
        if left is not None and left > 0:
            self.report(trainer, left)

    def report(self, trainer: pl.Trainer, left: float) -> None:
        if not trainer.is_global_zero:
            return
        total = int(trainer.estimated_stepping_batches)
        text = (
            f"about {duration_text(left)} of training left (step {trainer.global_step} of {total}, "
            "validation and sample grids included; the final evaluation comes after)"
        )
        bar = trainer.progress_bar_callback
        if bar is not None and getattr(bar, "is_enabled", True):
            bar.print(text)  # through the bar, which would otherwise overwrite the line
        else:
            console.print(text)
