"""What every trainable module of the project shares: AdamW-style optimizer with linear
warm-up (and optional cosine decay), gradient clipping that logs the gradient norm, and the
checkpoint metadata that lets ``build.load_checkpoint`` rebuild the module without the
original config files.

Subclasses set ``optimizer_factory``, ``lr_warmup_steps``, ``image_shape`` and ``run_config``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch

from diffusion_lit import __version__
from diffusion_lit.utils.errors import UserError, check_choice

LrDecay = Literal["none", "cosine"]
LR_DECAYS: tuple[str, ...] = get_args(LrDecay)


def lr_factor(step: int, warmup: int, decay: LrDecay = "none", total_steps: int | None = None) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Linear warm-up to 1 over ``warmup`` steps; with ``decay="cosine"`` the rest of the run
    follows half a cosine from 1 down to 0 at ``total_steps`` (Loshchilov & Hutter 2017,
    without restarts), which lets a fixed budget end on small, averaging steps.
    """
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if decay == "cosine" and total_steps:
        progress = min(1.0, max(0, step - warmup) / max(1, total_steps - warmup))
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def check_lr_decay(decay: str) -> LrDecay:
    return check_choice("lr_decay", decay, LR_DECAYS)  # type: ignore[return-value]


def check_optimizer(optimizer_factory: Callable[..., torch.optim.Optimizer], key: str = "optimizer") -> None:
    """Build the optimizer over one dummy parameter, so that torch checks its options (lr,
    betas, weight decay, ...) before a run loads data, not when the first step is due."""
    try:
        optimizer_factory(params=[torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as error:
        raise UserError(f"{key}: {error}; check the {key}.* values (e.g. {key}.lr must be > 0).") from None


class TrainingModule(pl.LightningModule):
    optimizer_factory: Callable[..., torch.optim.Optimizer]
    lr_warmup_steps: int
    lr_decay: LrDecay = "none"
    image_shape: tuple[int, int, int]
    run_config: dict[str, Any]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        warmup, decay = self.lr_warmup_steps, self.lr_decay
        total = int(self.trainer.estimated_stepping_batches) if decay != "none" else None
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, decay, total))
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
