"""What every trainable module of the project shares: AdamW-style optimizer with linear
warm-up, gradient clipping that logs the gradient norm, and the checkpoint metadata that lets
``build.load_checkpoint`` rebuild the module without the original config files.

Subclasses set ``optimizer_factory``, ``lr_warmup_steps``, ``image_shape`` and ``run_config``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch

from diffusion_lit import __version__


class TrainingModule(pl.LightningModule):
    optimizer_factory: Callable[..., torch.optim.Optimizer]
    lr_warmup_steps: int
    image_shape: tuple[int, int, int]
    run_config: dict[str, Any]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        warmup = self.lr_warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        )
        # "name" is the key LearningRateMonitor logs the learning rate under.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip by global norm as Lightning does, and log that norm (``train/grad_norm``, before
        clipping): Lightning's clipping computes it and discards it, so logging it costs nothing.

        Lightning calls this after the mixed-precision plugin has unscaled the gradients.
        """
        if gradient_clip_algorithm not in (None, "norm"):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        max_norm = gradient_clip_val if gradient_clip_val else float("inf")  # 0/None: no clipping
        norm = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What ``build.load_checkpoint`` needs to rebuild this module without the config files.
        checkpoint["diffusion_lit"] = {
            "config": self.run_config,
            "image_shape": list(self.image_shape),
            "version": __version__,
        }
