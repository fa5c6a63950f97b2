"""The single-step denoiser of seed 004 part B.1: a U-Net trained to map z = x + sigma eps
back to x at ONE noise level, then tested at others (out of distribution).

``python -m diffusion_lit.train experiment=single_step_denoiser`` trains it; ``python -m
diffusion_lit.edit task=denoiser ckpt=...`` draws its figure at any noise levels.

Noise levels are in the seed's units, images in [0, 1] (sigma = 0.5 is the seed's training
level); this project's images live in [-1, 1], so the noise added there is 2 sigma eps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lit.data.batch import images_of
from diffusion_lit.lit.base import TrainingModule
from diffusion_lit.utils.errors import UserError


class SingleStepDenoiser(TrainingModule):
    """Trains ``net`` (called with t = 0: no time conditioning) to minimise
    ||net(x + sigma eps) - x||^2 at the fixed ``sigma``; validation also measures the error at
    every ``eval_sigmas`` level (``val/mse_sigma<level>``)."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        image_shape: tuple[int, int, int],
        sigma: float = 0.5,
        eval_sigmas: Sequence[float] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0),
        lr_warmup_steps: int = 0,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not sigma > 0 or any(level < 0 for level in eval_sigmas):
            raise UserError(
                f"denoiser.sigma must be > 0 and eval_sigmas >= 0, got {sigma!r} and {list(eval_sigmas)!r}."
            )
        self.net = net
        self.optimizer_factory = optimizer
        self.image_shape = tuple(int(size) for size in image_shape)
        self.sigma = float(sigma)
        self.eval_sigmas = [float(level) for level in eval_sigmas]
        self.lr_warmup_steps = lr_warmup_steps
        self.run_config = run_config or {}
        self.save_hyperparameters(
            {"sigma": sigma, "eval_sigmas": list(eval_sigmas), "lr_warmup_steps": lr_warmup_steps}
        )

    def noisy(self, images: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = x + sigma eps in [0, 1] units, i.e. x + 2 sigma eps for images in [-1, 1]."""
        device = generator.device if generator is not None else images.device
        noise = torch.randn(images.shape, generator=generator, device=device, dtype=images.dtype).to(images.device)
        return images + 2.0 * sigma * noise

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z, torch.zeros(z.shape[0], dtype=torch.long, device=z.device))

    @torch.no_grad()
    def denoise(self, z: torch.Tensor) -> torch.Tensor:
        was_training = self.net.training
        self.net.eval()
        try:
            return self(z).float().clamp(-1.0, 1.0)
        finally:
            self.net.train(was_training)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = images_of(batch)
        loss = F.mse_loss(self(self.noisy(images, self.sigma)).float(), images.float())
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images = images_of(batch)
        generator = torch.Generator(device=images.device).manual_seed(batch_idx)  # the same noise every epoch
        for level in sorted({self.sigma, *self.eval_sigmas}):
            loss = F.mse_loss(self(self.noisy(images, level, generator)).float(), images.float())
            if level == self.sigma:
                self.log("val/loss", loss, prog_bar=True, sync_dist=True)
            self.log(f"val/mse_sigma{level:g}", loss, sync_dist=True)
