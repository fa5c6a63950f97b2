"""Experiment tracking: the W&B logger factory, and sending images, the run config and the final
results to whichever loggers a run has (CSV, TensorBoard, W&B, several at once).

W&B runs go offline by themselves on machines without credentials (no ``WANDB_API_KEY``, no
``wandb login`` entry in ~/.netrc), so a run never stops at a login prompt; the run folder is
printed and ``wandb sync <folder>`` uploads it later. In a Hydra multirun every job is its own
W&B run, grouped under the sweep's name, and finished when the job ends.
"""

from __future__ import annotations

import netrc
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.io import ImageReadMode, read_image

from diffusion_lit.cli import console
from diffusion_lit.images import grid_tensor
from diffusion_lit.sweeps import job_name, sweep_name

WANDB_DEFAULT_HOST = "https://api.wandb.ai"


def has_wandb_credentials() -> bool:
    """True when W&B can log in without a prompt: ``WANDB_API_KEY``, or a ~/.netrc entry (what
    ``wandb login`` writes; ``NETRC`` points elsewhere) for the host of ``WANDB_BASE_URL``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_HOST)).hostname or ""
    netrc_path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(netrc_path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_logger(
    project: str,
    save_dir: str,
    entity: str | None = None,
    group: str | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
    offline: bool | None = None,
    log_model: bool = False,
    **init_kwargs: Any,
) -> WandbLogger:
    """Lightning's WandbLogger with the project's defaults.

    Args:
        project, entity: where the run goes on W&B.
        save_dir: the run folder; W&B writes ``<save_dir>/wandb/<run>/``.
        group: W&B group; default: the sweep name in a multirun (one group per sweep).
        name: run name; default: the job's overrides in a multirun (W&B picks one otherwise).
        tags: run tags (the config adds the schedule, data and model choices).
        offline: True/False force the mode; None (default) = offline exactly when no credentials
            are found (``WANDB_MODE``, when set, decides instead).
        log_model: upload checkpoints as W&B artifacts (Lightning's option).
    """
    if offline is None:
        offline = "WANDB_MODE" not in os.environ and not has_wandb_credentials()
    logger = WandbLogger(
        project=project,
        entity=entity,
        group=group or sweep_name(),
        name=name or job_name(),
        tags=list(tags),
        save_dir=save_dir,
        offline=offline,
        log_model=log_model,
        **init_kwargs,
    )
    if offline and rank_zero_only.rank == 0:  # DDP ranks > 0 build the logger too, but never log
        console.print(
            f"W&B: no credentials found, logging offline under {Path(save_dir) / 'wandb'} "
            "(upload later with `wandb sync <run folder>`; `wandb login` to log online).",
            highlight=False,
        )
    return logger


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
