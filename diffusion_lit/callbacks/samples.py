"""Image callbacks: sample grids, forward-noising and reverse-denoising strips.

They run at the end of a validation epoch, while the EMA callback has the averaged weights
swapped in (``train.py`` orders weight-averaging callbacks last), and only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from diffusion_lit.diffusion.process import q_sample
from diffusion_lit.diffusion.samplers import SamplerStep
from diffusion_lit.errors import UserError
from diffusion_lit.images import grid_tensor, save_grid, save_strips
from diffusion_lit.lit.module import DiffusionModule, images_of


def _is_due(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """True on every n-th epoch and on the last one, never during the sanity check."""
    if trainer.sanity_checking:
        return False
    epoch = trainer.current_epoch + 1
    is_last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
    return epoch % every_n_epochs == 0 or is_last


def log_image(trainer: pl.Trainer, key: str, images: torch.Tensor) -> None:
    """Send a grid of (N, C, H, W) images to every logger that takes images (TensorBoard, W&B)."""
    grid = grid_tensor(images)
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):  # WandbLogger
            logger.log_image(key=key, images=[grid], step=trainer.global_step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoardLogger
            logger.experiment.add_image(key, grid, global_step=trainer.global_step)


def _check_every(every_n_epochs: int, owner: str) -> None:
    if every_n_epochs < 1:
        raise UserError(f"callbacks.{owner}.every_n_epochs must be >= 1, got {every_n_epochs!r}.")


class SampleGrid(Callback):
    """Every ``every_n_epochs``: draw ``num_samples`` images from fixed noise, save a grid PNG,
    log it, and log the datamodule's sample metrics (e.g. the triangle validity rate)."""

    def __init__(self, output_dir: str, every_n_epochs: int = 1, num_samples: int = 64, seed: int = 0) -> None:
        _check_every(every_n_epochs, "sample_grid")
        if num_samples < 1:
            raise UserError(f"callbacks.sample_grid.num_samples must be >= 1, got {num_samples!r}.")
        self.output_dir = Path(output_dir)
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.seed = seed

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: DiffusionModule) -> None:
        if not _is_due(trainer, self.every_n_epochs):
            return
        # The same seed every epoch: the grids show one set of starting noises evolving.
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        samples = pl_module.sample(self.num_samples, generator=generator)
        metrics = trainer.datamodule.sample_metrics(samples)
        for name, value in metrics.items():
            pl_module.log(f"samples/{name}", value, rank_zero_only=True)
        if trainer.is_global_zero:
            save_grid(samples, self.output_dir / f"samples_epoch{trainer.current_epoch + 1:03d}.png")
            log_image(trainer, "samples", samples)


class DenoisingStrips(Callback):
    """The forward-noising strip (x_t of a few validation images at several t, once at the
    start) and a reverse-denoising strip (x_t along the sampling chain, every n epochs)."""

    def __init__(
        self, output_dir: str, every_n_epochs: int = 1, num_images: int = 4, num_columns: int = 8, seed: int = 0
    ) -> None:
        _check_every(every_n_epochs, "denoising_strips")
        if num_images < 1 or num_columns < 2:
            raise UserError(
                f"callbacks.denoising_strips needs num_images >= 1 and num_columns >= 2, "
                f"got {num_images!r} and {num_columns!r}."
            )
        self.output_dir = Path(output_dir)
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.num_columns = num_columns
        self.seed = seed

    def _column_timesteps(self, num_timesteps: int) -> list[int]:
        return sorted({round(i * (num_timesteps - 1) / (self.num_columns - 1)) for i in range(self.num_columns)})

    def on_train_start(self, trainer: pl.Trainer, pl_module: DiffusionModule) -> None:
        if not trainer.is_global_zero:
            return
        # A DataLoader iterator draws its base seed from the global generator; fork it so that
        # this figure does not shift the training run's random stream (exact resume relies on it).
        with torch.random.fork_rng(devices=[]):
            batch = next(iter(trainer.datamodule.val_dataloader()))
        images = images_of(batch)[: self.num_images].to(pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        noise = torch.randn(images.shape, generator=generator, device=pl_module.device)
        timesteps = self._column_timesteps(pl_module.schedule.num_timesteps)
        columns = [
            q_sample(pl_module.schedule, images, torch.full((images.shape[0],), t, device=images.device), noise)
            for t in timesteps
        ]
        rows = list(torch.stack(columns, dim=1))  # (N, K, C, H, W) -> N rows of K images
        labels = ["x_0"] + [f"t={t + 1}" for t in timesteps[1:]]
        save_strips(rows, labels, self.output_dir / "forward_noising.png", title="forward process q(x_t | x_0)")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: DiffusionModule) -> None:
        if not _is_due(trainer, self.every_n_epochs):
            return
        recorded: list[torch.Tensor] = []  # x after each sampler step, in sampling order

        def record(step: SamplerStep) -> None:
            recorded.append(step.x.detach().cpu())

        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        noise = torch.randn((self.num_images, *pl_module.image_shape), generator=generator, device=pl_module.device)
        pl_module.sample(self.num_images, generator=generator, callback=record, noise=noise)
        if not trainer.is_global_zero:
            return
        num_steps = len(recorded)
        picks = sorted({round(i * (num_steps - 1) / (self.num_columns - 2)) for i in range(self.num_columns - 1)})
        columns = [noise.cpu()] + [recorded[index] for index in picks]
        labels = ["x_T (noise)"] + [f"step {index + 1}/{num_steps}" for index in picks]
        rows = list(torch.stack(columns, dim=1).clamp(-1, 1))
        path = self.output_dir / f"reverse_denoising_epoch{trainer.current_epoch + 1:03d}.png"
        save_strips(rows, labels, path, title="reverse process, EMA weights")
