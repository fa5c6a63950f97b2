"""The LightningModule: noise-prediction training of a U-Net under a NoiseSchedule, and sampling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lit import __version__
from diffusion_lit.diffusion.process import q_sample
from diffusion_lit.diffusion.samplers import SamplerCallback
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.errors import UserError

# Loss between predicted and true noise: MSE is Ho et al.'s L_simple; L1 is the cat slides' choice.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mse": F.mse_loss, "l1": F.l1_loss}


def images_of(batch: torch.Tensor | tuple | list) -> torch.Tensor:
    """The image tensor of a batch: datasets yield images alone or (image, label) pairs."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class DiffusionModule(pl.LightningModule):
    """Trains ``net`` to predict the noise eps in x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps.

    Args:
        net: the denoiser, ``net(x_t (B,C,H,W), t (B,)) -> eps (B,C,H,W)``.
        schedule: the noise schedule (its buffers move with the module).
        optimizer: a partial optimizer constructor (Hydra ``_partial_: true``) taking params.
        sampler: a partial sampler (``diffusion_lit.diffusion.samplers``) used by ``sample``.
        image_shape: (C, H, W) of the images the net is trained on (and ``sample`` draws).
        loss: ``"mse"`` or ``"l1"`` on the noise.
        lr_warmup_steps: linear learning-rate warm-up over this many optimizer steps.
        run_config: the resolved run config, stored in every checkpoint so that it can be
            rebuilt without the original config files.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: NoiseSchedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        sampler: Callable[..., torch.Tensor],
        image_shape: tuple[int, int, int],
        loss: Literal["mse", "l1"] = "mse",
        lr_warmup_steps: int = 0,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise UserError(f"model.loss must be one of {sorted(LOSSES)}, got {loss!r}.")
        if lr_warmup_steps < 0:
            raise UserError(f"model.lr_warmup_steps must be >= 0, got {lr_warmup_steps!r}.")
        self.net = net
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.sampler = sampler
        self.image_shape = tuple(int(size) for size in image_shape)
        self.loss_fn = LOSSES[loss]
        self.lr_warmup_steps = lr_warmup_steps
        self.run_config = run_config or {}
        self.save_hyperparameters({"loss": loss, "lr_warmup_steps": lr_warmup_steps})

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t)

    def diffusion_loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_simple (Ho et al. 2020, eq. 14): t ~ U{0..T-1}, eps ~ N(0, I), loss(eps, net(x_t, t))."""
        device = generator.device if generator is not None else x0.device
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=device, generator=generator)
        noise = torch.randn(x0.shape, device=device, dtype=x0.dtype, generator=generator)
        t, noise = t.to(x0.device), noise.to(x0.device)
        prediction = self.net(q_sample(self.schedule, x0, t, noise), t)
        return self.loss_fn(prediction.float(), noise.float())

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.diffusion_loss(images_of(batch))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step}: lower optimizer.lr, "
                "keep trainer.gradient_clip_val set, or use trainer.precision=32."
            )
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # A fixed generator per batch draws the same (t, eps) every epoch, so that the validation
        # loss curve compares models rather than random draws.
        images = images_of(batch)
        generator = torch.Generator(device=images.device).manual_seed(batch_idx)
        loss = self.diffusion_loss(images, generator=generator)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        warmup = self.lr_warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What ``sample`` needs to rebuild this module without the original config files.
        checkpoint["diffusion_lit"] = {
            "config": self.run_config,
            "image_shape": list(self.image_shape),
            "version": __version__,
        }

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        generator: torch.Generator | None = None,
        callback: SamplerCallback | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw ``num_samples`` images (N, C, H, W) in [-1, 1] with the configured sampler.

        ``noise`` (N, C, H, W), when given, is the starting point instead of fresh noise.

        The net is put in eval mode for the duration (dropout off) and restored afterwards.
        """
        if noise is None:
            device = generator.device if generator is not None else self.device
            noise = torch.randn((num_samples, *self.image_shape), generator=generator, device=device)
        noise = noise.to(self.device)
        was_training = self.net.training
        self.net.eval()
        try:
            samples = self.sampler(self.net, self.schedule, noise, generator=generator, callback=callback)
        finally:
            self.net.train(was_training)
        return samples.clamp(-1.0, 1.0)

    def sample_in_batches(
        self,
        num_samples: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """``sample`` for many images at bounded memory: batches of ``batch_size``, one generator.

        ``on_batch(done, num_samples)`` is called before each batch (e.g. to print progress).
        Returns (num_samples, C, H, W) on the CPU.
        """
        batches = []
        for done in range(0, num_samples, batch_size):
            if on_batch is not None:
                on_batch(done, num_samples)
            batches.append(self.sample(min(batch_size, num_samples - done), generator=generator).cpu())
        return torch.cat(batches)
