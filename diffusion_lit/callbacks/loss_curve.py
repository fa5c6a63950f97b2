"""Plot the per-epoch training and validation loss to a PNG when training ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, WeightAveraging

from diffusion_lit.utils.images import plt


class LossCurve(Callback):
    """Collects ``train/loss_epoch`` and ``val/loss`` each epoch and draws them at the end of fit.

    The loss is noisy per step (t is random), so the epoch means are plotted, with the band
    between the smallest and largest step loss of each epoch (the thesis' figures 6.7/6.8, seed
    001); the extremes are also logged as ``train/loss_min_epoch`` / ``train/loss_max_epoch``
    (this process's steps: rank 0's under DDP). Per-step values are in the logger's files.
    """

    def __init__(self, output_path: str) -> None:
        self.output_path = Path(output_path)
        self.train_loss: list[tuple[int, float]] = []
        self.train_range: list[tuple[int, float, float]] = []  # (epoch, min, max) of the step losses
        self.val_loss: list[tuple[int, float]] = []
        self._step_min: torch.Tensor | None = None
        self._step_max: torch.Tensor | None = None

    def state_dict(self) -> dict[str, list[tuple]]:
        # In the checkpoint, so that a run resumed with ckpt_path= plots its whole history.
        return {
            "train_loss": list(self.train_loss),
            "train_range": list(self.train_range),
            "val_loss": list(self.val_loss),
        }

    def load_state_dict(self, state_dict: dict[str, list[tuple]]) -> None:
        self.train_loss = [tuple(point) for point in state_dict["train_loss"]]
        self.train_range = [tuple(point) for point in state_dict.get("train_range", [])]  # older checkpoints lack it
        self.val_loss = [tuple(point) for point in state_dict["val_loss"]]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._step_min = self._step_max = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # Running extremes stay on the device: read once per epoch, not once per step (host sync).
        loss = loss.detach()
        self._step_min = loss if self._step_min is None else torch.minimum(self._step_min, loss)
        self._step_max = loss if self._step_max is None else torch.maximum(self._step_max, loss)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        value = trainer.callback_metrics.get("train/loss_epoch")
        if value is not None:
            self.train_loss.append((epoch, float(value)))
        if self._step_min is not None and self._step_max is not None:
            low, high = float(self._step_min), float(self._step_max)
            self.train_range.append((epoch, low, high))
            pl_module.log("train/loss_min_epoch", low, on_step=False, on_epoch=True)
            pl_module.log("train/loss_max_epoch", high, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/loss")
        if value is not None and not trainer.sanity_checking:
            self.val_loss.append((trainer.current_epoch + 1, float(value)))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not (self.train_loss or self.val_loss):
            return
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        figure, axis = plt.subplots(figsize=(5, 3.2))
        if self.train_range:
            epochs, lows, highs = zip(*self.train_range, strict=True)
            axis.fill_between(epochs, lows, highs, alpha=0.2, label="train (min-max of the steps)")
        # Lightning validates on the averaged weights only when a WeightAveraging callback (EMA) runs.
        averaged = any(isinstance(callback, WeightAveraging) for callback in trainer.callbacks)
        val_label = "validation (EMA weights)" if averaged else "validation"
        for label, points in (("train (epoch mean)", self.train_loss), (val_label, self.val_loss)):
            if points:
                epochs, values = zip(*points, strict=True)
                axis.plot(epochs, values, marker="o", markersize=3, label=label)
        axis.set_xlabel("epoch")
        prediction = getattr(pl_module, "prediction", None)  # eps / x0 / v; the single-step denoiser has none
        axis.set_ylabel(f"{prediction}-prediction loss" if prediction else "loss")
        axis.set_yscale("log")
        axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(self.output_path, dpi=110)
        plt.close(figure)
