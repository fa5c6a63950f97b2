"""Train a diffusion model: ``python -m diffusion_lit.train [group=option ...] [key=value ...]``.

The run folder (printed at the end) receives the resolved config, checkpoints (with EMA
weights), sample grids, noising/denoising strips, the loss curve, logs and results.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, WeightAveraging
from omegaconf import DictConfig, OmegaConf

from diffusion_lit.build import build_module
from diffusion_lit.cli import CONFIG_DIR, console, report_user_errors
from diffusion_lit.errors import UserError
from diffusion_lit.images import save_grid


def instantiate_all(nodes: DictConfig | None) -> list:
    """Instantiate every child node that has a ``_target_`` (callbacks, loggers); None disables one."""
    if not nodes:
        return []
    return [instantiate(node) for node in nodes.values() if isinstance(node, DictConfig) and "_target_" in node]


def order_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """Weight-averaging callbacks last: at validation end they swap the raw weights back, so
    every other callback (sample grids, strips) must have used the averaged weights first."""
    return sorted(callbacks, key=lambda callback: isinstance(callback, WeightAveraging))


def check_class_conditioning(datamodule: Any, num_classes: int) -> None:
    """A class-conditional model needs labelled data with at most ``num_classes`` classes.

    Loads the data (``prepare_data`` + ``setup``; both are idempotent and Lightning's later
    calls are then free) so that a mismatch stops the run before any training.
    """
    if not num_classes:
        return
    datamodule.prepare_data()
    datamodule.setup("fit")
    data_classes = getattr(datamodule, "num_classes", None)
    if data_classes is None:
        raise UserError(
            f"model.num_classes={num_classes} needs labelled data, but data={type(datamodule).__name__} has no "
            "labels (labelled: mnist, cifar10, folder with data.class_subfolders=true); use model.num_classes=0."
        )
    if data_classes > num_classes:
        raise UserError(
            f"the data has {data_classes} classes but model.num_classes={num_classes}: "
            f"set model.num_classes={data_classes}."
        )


def train(cfg: DictConfig) -> float | None:
    """Fit, then sample ``cfg.eval.num_samples`` images from the EMA weights and report metrics.

    Returns the final validation loss (the value a Hydra sweeper optimises).
    """
    output_dir = Path(cfg.paths.output_dir)
    if cfg.eval.num_samples < 0 or cfg.eval.batch_size < 1:
        raise UserError(
            f"eval.num_samples must be >= 0 and eval.batch_size >= 1, got {cfg.eval.num_samples!r} "
            f"and {cfg.eval.batch_size!r} (eval.num_samples=0 skips the final evaluation)."
        )
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)

    datamodule = instantiate(cfg.data)
    check_class_conditioning(datamodule, cfg.model.get("num_classes", 0))
    image_shape = (datamodule.num_channels, datamodule.image_size, datamodule.image_size)
    module = build_module(cfg, image_shape, run_config=OmegaConf.to_container(cfg, resolve=True))
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=order_callbacks(instantiate_all(cfg.get("callbacks"))),
        logger=instantiate_all(cfg.get("logger")) or False,
    )

    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - started
    val_loss = trainer.callback_metrics.get("val/loss")

    results: dict = {
        "fit_seconds": round(fit_seconds, 1),
        "global_step": trainer.global_step,
        "val_loss": None if val_loss is None else float(val_loss),
    }
    # After fit the module holds the EMA weights (WeightAveraging copies them in on_train_end).
    if trainer.is_global_zero and cfg.eval.num_samples > 0:
        started = time.perf_counter()
        generator = torch.Generator(device=module.device).manual_seed(cfg.eval.seed)
        samples = module.sample_in_batches(cfg.eval.num_samples, cfg.eval.batch_size, generator=generator)
        results["eval_sampling_seconds"] = round(time.perf_counter() - started, 1)
        results["eval_num_samples"] = int(samples.shape[0])
        results.update(datamodule.sample_metrics(samples))
        results["final_samples"] = str(save_grid(samples[:64], output_dir / "samples_final.png"))
    if trainer.is_global_zero:
        checkpoint_callback = trainer.checkpoint_callback
        results["checkpoint"] = getattr(checkpoint_callback, "last_model_path", None) or getattr(
            checkpoint_callback, "best_model_path", None
        )
        results["run_dir"] = str(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        console.rule("run finished")
        for key, value in results.items():
            console.print(f"  {key}: {value}", highlight=False)
    return results["val_loss"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return report_user_errors(lambda: train(cfg))


if __name__ == "__main__":
    main()
