"""Image callbacks: sample grids, forward-noising and reverse-denoising strips.

They run at the end of a validation epoch, while the EMA callback has the averaged weights
swapped in (``runs/training.py`` orders weight-averaging callbacks last). Under DDP the ranks share the
sample grid's work; only rank 0 writes files and sends images to the loggers.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from diffusion_lit.callbacks.cadence import is_due
from diffusion_lit.data.batch import images_of
from diffusion_lit.diffusion.samplers import SamplerStep
from diffusion_lit.editing.tasks import denoiser_task
from diffusion_lit.lit.denoiser import SingleStepDenoiser
from diffusion_lit.lit.loggers import log_image_file, log_images
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.images import save_grid, save_strips


def first_val_images(trainer: pl.Trainer, count: int, device: torch.device) -> torch.Tensor:
    """The first ``count`` images of the first validation batch, for figures."""
    # A DataLoader iterator draws its base seed from the global generator; fork it so that a
    # figure does not shift the training run's random stream (exact resume relies on it).
    with torch.random.fork_rng(devices=[]):
        batch = next(iter(trainer.datamodule.val_dataloader()))
    return images_of(batch)[:count].to(device)


def sample_across_ranks(trainer: pl.Trainer, pl_module: DiffusionModule, num_samples: int, seed: int) -> torch.Tensor:
    """``num_samples`` images with each DDP rank generating its share; every rank gets them all.

    Every rank draws the same starting noise for all samples from ``seed`` and denoises its own
    slice of it; rank 0 continues the seed's stream for the sampler's noise (so one process
    reproduces the single-process grid exactly), rank r > 0 uses ``seed + r``.
    """
    world_size, rank = trainer.world_size, trainer.global_rank
    per_rank = math.ceil(num_samples / world_size)
    generator = torch.Generator(device=pl_module.device).manual_seed(seed)
    noise = torch.randn((per_rank * world_size, *pl_module.image_shape), generator=generator, device=pl_module.device)[
        rank * per_rank : (rank + 1) * per_rank
    ]
    if rank > 0:
        generator.manual_seed(seed + rank)
    samples = pl_module.sample(per_rank, generator=generator, noise=noise)
    if world_size > 1:
        samples = pl_module.all_gather(samples).flatten(0, 1)  # (world, per_rank, ...) in rank order
    return samples[:num_samples]


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
        if not is_due(trainer, self.every_n_epochs):
            return
        # The same seed every epoch: the grids show one set of starting noises evolving.
        samples = sample_across_ranks(trainer, pl_module, self.num_samples, self.seed)
        # Every rank holds all samples, so every rank computes (and logs) the same values.
        for name, value in trainer.datamodule.sample_metrics(samples).items():
            pl_module.log(f"samples/{name}", value, sync_dist=trainer.world_size > 1)
        if trainer.is_global_zero:
            save_grid(samples, self.output_dir / f"samples_epoch{trainer.current_epoch + 1:03d}.png")
            log_images(trainer.loggers, "samples", samples, step=trainer.global_step)


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

    def on_train_start(self, trainer: pl.Trainer, pl_module: DiffusionModule) -> None:
        if not trainer.is_global_zero:
            return
        images = first_val_images(trainer, self.num_images, pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        columns, labels = pl_module.forward_columns(images, self.num_columns, generator)
        rows = list(torch.stack(columns, dim=1))  # (N, K, C, H, W) -> N rows of K images
        path = save_strips(rows, labels, self.output_dir / "forward_noising.png", title="forward process q(x_t | x_0)")
        log_image_file(trainer.loggers, "forward_noising", path, step=trainer.global_step)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: DiffusionModule) -> None:
        # A few images: rank 0 alone draws them (sampling calls the bare net, no collectives).
        if not trainer.is_global_zero or not is_due(trainer, self.every_n_epochs):
            return
        recorded: list[torch.Tensor] = []  # x after each sampler step, in sampling order

        def record(step: SamplerStep) -> None:
            recorded.append(step.x.detach().cpu())

        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        noise = torch.randn((self.num_images, *pl_module.image_shape), generator=generator, device=pl_module.device)
        pl_module.sample(self.num_images, generator=generator, callback=record, noise=noise)
        num_steps = len(recorded)
        picks = sorted({round(i * (num_steps - 1) / (self.num_columns - 2)) for i in range(self.num_columns - 1)})
        columns = [pl_module.prior_images(noise).cpu()] + [recorded[index] for index in picks]
        labels = ["x_T (start)"] + [f"step {index + 1}/{num_steps}" for index in picks]
        rows = list(torch.stack(columns, dim=1).clamp(-1, 1))
        path = self.output_dir / f"reverse_denoising_epoch{trainer.current_epoch + 1:03d}.png"
        save_strips(rows, labels, path, title="reverse process, EMA weights")
        log_image_file(trainer.loggers, "reverse_denoising", path, step=trainer.global_step)


class DenoiserFigure(Callback):
    """At the end of fit, the single-step denoiser's figure on validation images: noisy and
    denoised at every level of ``sigmas`` (seed 004 part B.1.2)."""

    def __init__(self, output_path: str, sigmas: list[float], num_images: int = 4, seed: int = 0) -> None:
        if num_images < 1:
            raise UserError(f"callbacks.denoiser_figure.num_images must be >= 1, got {num_images!r}.")
        self.output_path = Path(output_path)
        self.sigmas = list(sigmas)
        self.num_images = num_images
        self.seed = seed

    def on_fit_end(self, trainer: pl.Trainer, pl_module: SingleStepDenoiser) -> None:
        if not trainer.is_global_zero:
            return
        images = first_val_images(trainer, self.num_images, pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        path = denoiser_task(pl_module, images, self.sigmas, generator).save(self.output_path)
        log_image_file(trainer.loggers, "denoising_sigmas", path, step=trainer.global_step)
