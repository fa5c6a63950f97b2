"""Evaluate a trained checkpoint: ``python -m diffusion_lit.evaluate ckpt=PATH metrics=nll``.

Metrics (``metrics=`` one name or a list):

* ``nll``: the variational bound on the negative log-likelihood of real images in bits per
  dimension, with its prior, diffusion and decoder terms (:mod:`diffusion_lit.diffusion.likelihood`).
  Class-conditional models are evaluated given each image's label (guidance scale 1).

The data module is rebuilt from the config stored in the checkpoint; ``data.root``,
``data.data_dir`` and ``data.path`` override it (datasets move between machines).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.table import Table
from torch.utils.data import DataLoader

from diffusion_lit.build import load_checkpoint
from diffusion_lit.cli import CONFIG_DIR, console, report_user_errors
from diffusion_lit.diffusion.likelihood import variational_bound
from diffusion_lit.errors import UserError
from diffusion_lit.files import atomic_write
from diffusion_lit.lit.module import DiffusionModule, images_of, labels_of

SPLITS = ("val", "train")


def data_module_for(module: DiffusionModule, overrides: DictConfig | None) -> Any:
    """The checkpoint's data module, with the non-null ``overrides`` (root, data_dir, path) applied."""
    data_cfg = OmegaConf.create(module.run_config.get("data") or {})
    if "_target_" not in data_cfg:
        raise UserError("the checkpoint stores no data config; it was not written by diffusion_lit.train.")
    for key, value in (overrides or {}).items():
        if value is not None:
            data_cfg[key] = value
    return instantiate(data_cfg)


def evaluation_images(datamodule: Any, split: str, num_images: int, batch_size: int):
    """Batches (images, labels or None) of the first ``num_images`` images of ``split``."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {list(SPLITS)}, got {split!r}.")
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.train_set if split == "train" else datamodule.val_set
    if num_images > len(dataset):
        console.print(f"the {split} split has {len(dataset)} images; evaluating all of them", highlight=False)
    count = min(num_images, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(count))
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
        yield images_of(batch), labels_of(batch)


def evaluate_nll(module: DiffusionModule, batches, cfg: DictConfig) -> dict[str, float]:
    """Bits per dimension of the variational bound, averaged over the evaluated images."""
    generator = torch.Generator(device=module.device).manual_seed(cfg.seed)
    totals: dict[str, float] = {}
    count = 0
    started = time.perf_counter()
    for images, labels in batches:
        images = images.to(module.device)
        labels = labels.to(module.device) if labels is not None and module.num_classes else None
        terms = variational_bound(
            module.eps_fn(labels, guidance_scale=1.0) if labels is not None else module.eps_fn(),
            module.schedule,
            images,
            timesteps=cfg.nll.timesteps,
            variance=cfg.nll.variance,
            generator=generator,
        )
        for name, value in terms.bits_per_dim().items():
            totals[name] = totals.get(name, 0.0) + value * images.shape[0]
        count += images.shape[0]
        console.print(f"nll: {count} images, {time.perf_counter() - started:.0f} s", highlight=False)
    results = {name: value / count for name, value in totals.items()}
    results["nll_num_images"] = count
    return results


METRICS: dict[str, Callable[[DiffusionModule, Any, DictConfig], dict[str, float]]] = {"nll": evaluate_nll}


def evaluate(cfg: DictConfig) -> dict[str, float]:
    names = [cfg.metrics] if isinstance(cfg.metrics, str) else list(cfg.metrics)
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UserError(f"metrics must be among {sorted(METRICS)}, got {unknown or names!r}.")
    if cfg.num_images < 1 or cfg.batch_size < 1:
        raise UserError(f"num_images and batch_size must be >= 1, got {cfg.num_images!r} and {cfg.batch_size!r}.")
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = "cpu" if device == "auto" else device
    module = load_checkpoint(cfg.ckpt).to(device)
    datamodule = data_module_for(module, cfg.get("data"))
    results: dict[str, float] = {}
    for name in names:
        batches = evaluation_images(datamodule, cfg.split, cfg.num_images, cfg.batch_size)
        results.update(METRICS[name](module, batches, cfg))

    table = Table(title=f"{Path(cfg.ckpt).name}: {cfg.split} split")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if cfg.out:
        with atomic_write(cfg.out) as file:
            file.write(json.dumps(results, indent=2).encode())
        console.print(f"wrote {cfg.out}", highlight=False)
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
