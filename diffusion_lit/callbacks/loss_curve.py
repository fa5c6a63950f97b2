"""Plot the per-epoch training and validation loss to a PNG when training ends."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from diffusion_lit.images import plt


class LossCurve(Callback):
    """Collects ``train/loss_epoch`` and ``val/loss`` each epoch and draws them at the end of fit.

    The loss is noisy per step (t is random), so the epoch means are plotted; the per-step
    values are in the logger's files (e.g. csv/metrics.csv).
    """

    def __init__(self, output_path: str) -> None:
        self.output_path = Path(output_path)
        self.train_loss: list[tuple[int, float]] = []
        self.val_loss: list[tuple[int, float]] = []

    def state_dict(self) -> dict[str, list[tuple[int, float]]]:
        # In the checkpoint, so that a run resumed with ckpt_path= plots its whole history.
        return {"train_loss": list(self.train_loss), "val_loss": list(self.val_loss)}

    def load_state_dict(self, state_dict: dict[str, list[tuple[int, float]]]) -> None:
        self.train_loss = [tuple(point) for point in state_dict["train_loss"]]
        self.val_loss = [tuple(point) for point in state_dict["val_loss"]]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get("train/loss_epoch")
        if value is not None:
            self.train_loss.append((trainer.current_epoch + 1, float(value)))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/loss")
        if value is not None and not trainer.sanity_checking:
            self.val_loss.append((trainer.current_epoch + 1, float(value)))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not (self.train_loss or self.val_loss):
            return
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        figure, axis = plt.subplots(figsize=(5, 3.2))
        for label, points in (("train (epoch mean)", self.train_loss), ("validation (EMA weights)", self.val_loss)):
            if points:
                epochs, values = zip(*points, strict=True)
                axis.plot(epochs, values, marker="o", markersize=3, label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel("noise-prediction loss")
        axis.set_yscale("log")
        axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(self.output_path, dpi=110)
        plt.close(figure)
