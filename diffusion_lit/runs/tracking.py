"""Experiment tracking: the W&B logger factory (conf/logger/wandb.yaml). Sending images, the run
config and the final results to whichever loggers a run has is :mod:`diffusion_lit.lit.loggers`.

W&B runs go offline by themselves on machines without credentials (no ``WANDB_API_KEY``, no
``wandb login`` entry in ~/.netrc), so a run never stops at a login prompt; the run folder is
printed and ``wandb sync <folder>`` uploads it later. In a Hydra multirun every job is its own
W&B run, grouped under the sweep's name, and finished when the job ends.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from diffusion_lit.runs.jobs import job_name, sweep_name
from diffusion_lit.utils.console import console

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
