"""Training throughput in images per second, logged and shown in the progress bar."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from diffusion_lit.data.batch import images_of
from diffusion_lit.utils.errors import UserError


class ImagesPerSecond(Callback):
    """Logs ``train/images_per_sec``: training images per wall-clock second over all devices,
    averaged over the last ``window`` batches (validation and callback time excluded).

    It reads only batch shapes and the host clock, so it adds no device synchronisation; on a
    GPU the host runs at most a few kernels ahead of the device, which a window of 20 batches
    averages out. The global rate assumes equal per-device batches (the DDP setting).
    """

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise UserError(f"callbacks.images_per_sec.window must be >= 1, got {window!r}.")
        self.window = window
        self._batches: deque[tuple[float, int]] = deque(maxlen=window)  # (duration s, images)
        self._started: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = None  # the gap since the last epoch's last batch held validation

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *_: Any) -> None:
        if self._started is None:
            self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        now = time.perf_counter()
        self._batches.append((now - self._started, images_of(batch).shape[0]))
        self._started = now
        seconds = sum(duration for duration, _ in self._batches)
        if seconds > 0:
            images = sum(count for _, count in self._batches) * trainer.world_size
            pl_module.log("train/images_per_sec", images / seconds, on_step=True, on_epoch=False, prog_bar=True)
