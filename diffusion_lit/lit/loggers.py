"""Sending images, the run config and the final results to whichever Lightning loggers a run has
(CSV, TensorBoard, W&B, several at once), and closing their runs."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from torchvision.io import ImageReadMode, read_image

from diffusion_lit.utils.console import console
from diffusion_lit.utils.images import grid_tensor


def _image_loggers(loggers: Iterable[Logger]) -> list[Logger]:
    """The loggers that take images: W&B, and TensorBoard (its writer has ``add_image``)."""
    return [
        logger
        for logger in loggers
        if isinstance(logger, WandbLogger) or hasattr(getattr(logger, "experiment", None), "add_image")
    ]


def log_images(loggers: Iterable[Logger], key: str, images: torch.Tensor, step: int) -> None:
    """Send (N, C, H, W) images in [-1, 1] as one grid to every logger that takes images."""
    loggers = _image_loggers(loggers)
    if loggers:
        _log_image(loggers, key, grid_tensor(images), step)


def log_image_file(loggers: Iterable[Logger], key: str, path: str | Path, step: int) -> None:
    """Send a PNG figure (e.g. a labelled strip) to every logger that takes images."""
    loggers = _image_loggers(loggers)
    if loggers:
        _log_image(loggers, key, read_image(str(path), ImageReadMode.RGB).float() / 255.0, step)


def _log_image(loggers: list[Logger], key: str, image: torch.Tensor, step: int) -> None:
    """``image``: (3, H, W) floats in [0, 1]."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
        else:
            logger.experiment.add_image(key, image, global_step=step)


def log_config(loggers: Iterable[Logger], config: Mapping[str, Any]) -> None:
    """Record the full resolved run config with every logger (W&B config, TensorBoard hparams,
    the CSV logger's hparams.yaml)."""
    for logger in loggers:
        logger.log_hyperparams(dict(config))


def log_results(loggers: Iterable[Logger], results: Mapping[str, Any], step: int) -> None:
    """Log the numeric final results (validity, val loss, timings) under ``final/``."""
    metrics = {
        f"final/{key}": float(value)
        for key, value in results.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    for logger in loggers:
        logger.log_metrics(metrics, step=step)
        logger.save()


def finish(loggers: Iterable[Logger], failed: bool = False) -> None:
    """Close the loggers' runs. A W&B run left open would swallow the next multirun job's logs
    (Lightning's WandbLogger reuses a live run), so every job finishes its own."""
    loggers = list(loggers)
    for logger in loggers:
        logger.finalize("failed" if failed else "success")
    wandb = sys.modules.get("wandb")  # only loaded when a W&B logger was used
    if wandb is not None and wandb.run is not None and any(isinstance(logger, WandbLogger) for logger in loggers):
        run_dir = Path(wandb.run.dir).parent
        wandb.run.finish(exit_code=1 if failed else 0)
        console.print(f"W&B run folder: {run_dir}", highlight=False)
