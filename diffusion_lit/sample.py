"""Sample from a trained checkpoint: ``python -m diffusion_lit.sample ckpt=PATH num_samples=64 out=grid.png``.

The checkpoint's ``state_dict`` holds the EMA weights (see callbacks/ema.py) and its config
rebuilds the network and schedule; the sampler comes from this command's ``sampler`` group
(``sampler.steps=100`` respaces the chain).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from diffusion_lit.build import attach_guide, load_checkpoint
from diffusion_lit.cli import CONFIG_DIR, console, report_user_errors
from diffusion_lit.errors import UserError
from diffusion_lit.files import atomic_write
from diffusion_lit.images import save_grid

TENSOR_SUFFIXES = (".npz", ".pt")


def save_tensors(samples: torch.Tensor, path: Path) -> Path:
    """Write raw samples (N, C, H, W) in [-1, 1]: .npz (key ``samples``) or .pt."""
    with atomic_write(path) as file:
        if path.suffix == ".npz":
            np.savez_compressed(file, samples=samples.numpy())
        else:
            torch.save(samples, file)
    return path


def sample_labels(labels: Any, num_samples: int, num_classes: int) -> torch.Tensor | None:
    """The ``labels=`` option as a (num_samples,) tensor: one class for all, or a list repeated
    to length; None keeps the module's default (classes in turn)."""
    if labels is None:
        return None
    if num_classes == 0:
        raise UserError("labels= was given, but the checkpoint's model is unconditional (model.num_classes=0).")
    values = [labels] if isinstance(labels, int) else list(labels)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_classes for v in values):
        raise UserError(f"labels must be class indices in [0, {num_classes - 1}] (one or a list), got {labels!r}.")
    return torch.tensor(values).repeat((num_samples + len(values) - 1) // len(values))[:num_samples]


def sample(cfg: DictConfig) -> Path:
    if cfg.num_samples < 1:
        raise UserError(f"num_samples must be >= 1, got {cfg.num_samples!r}.")
    if cfg.batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {cfg.batch_size!r}.")
    if cfg.save_tensors and Path(cfg.save_tensors).suffix not in TENSOR_SUFFIXES:
        raise UserError(f"save_tensors must end in one of {TENSOR_SUFFIXES}, got {cfg.save_tensors!r}.")
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module = load_checkpoint(cfg.ckpt, sampler=cfg.sampler, sample_precision=cfg.get("sample_precision")).to(device)
    attach_guide(module, cfg.get("guide_ckpt"), cfg.get("guide_scale", 2.0))
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    labels = sample_labels(cfg.get("labels"), cfg.num_samples, module.num_classes)
    samples = module.sample_in_batches(
        cfg.num_samples,
        cfg.batch_size,
        generator=generator,
        on_batch=lambda done, total: console.print(
            f"sampling {min(done + cfg.batch_size, total)}/{total} ...", highlight=False
        ),
        labels=labels,
        guidance_scale=cfg.get("guidance_scale"),
    )
    out = save_grid(samples, cfg.out, nrow=cfg.get("nrow"))
    console.print(f"wrote {out}", highlight=False)
    if cfg.save_tensors:
        console.print(f"wrote {save_tensors(samples, Path(cfg.save_tensors))}", highlight=False)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: sample(cfg))


if __name__ == "__main__":
    main()
