"""Sampling a trained checkpoint (``python -m diffusion_lit.sample``): a PNG grid, optionally the
raw tensors; the ``labels=`` option of conditional models (shared with the edit command)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from diffusion_lit.lit.build import attach_guide, load_checkpoint
from diffusion_lit.lit.module import sample_labels
from diffusion_lit.runs.config_schema import SampleConfig, check_config_types
from diffusion_lit.utils.console import console
from diffusion_lit.utils.devices import resolve_device
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import atomic_write
from diffusion_lit.utils.images import save_grid

TENSOR_SUFFIXES = (".npz", ".pt")


def save_tensors(samples: torch.Tensor, path: Path) -> Path:
    """Write raw samples (N, C, H, W) in [-1, 1]: .npz (key ``samples``) or .pt."""
    with atomic_write(path) as file:
        if path.suffix == ".npz":
            np.savez_compressed(file, samples=samples.numpy())
        else:
            torch.save(samples, file)
    return path


def sample(cfg: DictConfig) -> Path:
    check_config_types(cfg, SampleConfig)
    if cfg.num_samples < 1:
        raise UserError(f"num_samples must be >= 1, got {cfg.num_samples!r}.")
    if cfg.batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {cfg.batch_size!r}.")
    if cfg.save_tensors and Path(cfg.save_tensors).suffix not in TENSOR_SUFFIXES:
        raise UserError(f"save_tensors must end in one of {TENSOR_SUFFIXES}, got {cfg.save_tensors!r}.")
    device = resolve_device(cfg.device)
    module = load_checkpoint(cfg.ckpt, sampler=cfg.get("sampler"), sample_precision=cfg.get("sample_precision"))
    module = module.to(device)
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
