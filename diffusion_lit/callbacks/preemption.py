"""Survive preemption: on SIGTERM save a checkpoint where the run stands, then stop.

Lightning catches SIGTERM itself (its signal connector): it finishes the current batch and raises
``SIGTERMException``, calling every callback's ``on_exception``. This callback then writes the
run's ``last.ckpt`` (model, optimizer, EMA, random generators, loop counters: mid-epoch too), in
the folder of the run's ModelCheckpoint, where ``ckpt_path=last`` finds it. The training run
records ``"status": "preempted"`` in results.json (:mod:`diffusion_lit.runs.training`); resuming with
``ckpt_path=last`` (or the file's path) runs the optimizer steps that were left, no more.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from diffusion_lit.utils.console import console


class SaveOnPreemption(Callback):
    """Write ``<checkpoint dirpath>/<filename>`` when the run is stopped by SIGTERM."""

    def __init__(self, filename: str = "last.ckpt") -> None:
        self.filename = filename
        self.saved_to: Path | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        checkpoint = trainer.checkpoint_callback
        folder = checkpoint.dirpath if isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath else None
        if folder is None:
            folder = Path(trainer.default_root_dir) / "checkpoints"
        self.saved_to = Path(folder) / self.filename
        trainer.save_checkpoint(self.saved_to)  # every rank takes part; rank 0 writes (atomically)
        console.print(
            f"SIGTERM: saved {self.saved_to} at step {trainer.global_step}; resume with ckpt_path=last "
            "(same command line).",
            highlight=False,
        )
