"""Exponential moving average of the weights, on Lightning's WeightAveraging callback.

Lightning swaps the averaged weights into the module for every validation epoch, copies them
into the module when training ends, and saves them as the checkpoint's ``state_dict`` (the raw
weights go to ``current_model_state``), so sampling from a checkpoint uses the EMA weights.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging

from diffusion_lit.utils.errors import UserError


class EMADecay:
    """avg <- avg + (1 - d_n) (param - avg) with d_n = min(decay, (1 + n) / (10 + n)) when warming up.

    The warm-up (the schedule of Tensorflow's ExponentialMovingAverage with num_updates) lets
    a short run's average follow the fast early progress instead of staying near the random
    initial weights for ~1 / (1 - decay) steps.
    """

    def __init__(self, decay: float, warmup: bool) -> None:
        self.decay = decay
        self.warmup = warmup

    def __call__(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        decay = self.decay
        if self.warmup:
            count = float(num_averaged)
            decay = min(decay, (1.0 + count) / (10.0 + count))
        return averaged + (current - averaged) * (1.0 - decay)


class EMA(WeightAveraging):
    """EMA of the parameters, updated after every ``update_every_n_steps`` optimizer steps."""

    def __init__(self, decay: float = 0.999, warmup: bool = True, update_every_n_steps: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise UserError(f"callbacks.ema.decay must lie in [0, 1), got {decay!r} (typical: 0.995-0.9999).")
        if update_every_n_steps < 1:
            raise UserError(f"callbacks.ema.update_every_n_steps must be >= 1, got {update_every_n_steps!r}.")
        # Buffers (the noise schedule's) are constants: average only the parameters.
        super().__init__(use_buffers=False, avg_fn=EMADecay(decay, warmup))
        self.update_every_n_steps = update_every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx % self.update_every_n_steps == 0
