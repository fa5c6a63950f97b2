"""The edit command (``python -m diffusion_lit.edit task=<name> ckpt=PATH``): load the checkpoint,
run the task its config names (``conf/task/*.yaml`` -> :mod:`diffusion_lit.editing.commands`),
save the figure and print its numbers."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from diffusion_lit.data.base import split_set
from diffusion_lit.data.batch import images_of
from diffusion_lit.editing.commands import EditInputs
from diffusion_lit.editing.inputs import load_image_file
from diffusion_lit.editing.tasks import Classifier
from diffusion_lit.lit.build import data_module_for, load_checkpoint
from diffusion_lit.lit.denoiser import SingleStepDenoiser
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.metrics.features import DomainFeatures, domain_checkpoint_path
from diffusion_lit.runs.config_schema import EditConfig, check_config_types
from diffusion_lit.utils.console import console
from diffusion_lit.utils.devices import resolve_device
from diffusion_lit.utils.errors import UserError


def input_images(module: DiffusionModule | SingleStepDenoiser, cfg: DictConfig) -> torch.Tensor:
    """The images to edit: ``image=`` (a file), else ``indices`` of the checkpoint's dataset split."""
    if cfg.image:
        return load_image_file(cfg.image, module.image_shape).to(module.device)
    indices = [cfg.indices] if isinstance(cfg.indices, int) else list(cfg.indices)
    dataset = split_set(data_module_for(module, cfg.get("data")), cfg.split)
    if not indices or any(not isinstance(i, int) or not 0 <= i < len(dataset) for i in indices):
        raise UserError(
            f"indices must be image numbers in [0, {len(dataset) - 1}] of the {cfg.split} split, got {indices!r}."
        )
    images = torch.stack([images_of(dataset[i]) for i in indices])
    if images.shape[1:] != module.image_shape:
        raise UserError(
            f"the dataset gives images of shape {tuple(images.shape[1:])}, the model takes {module.image_shape}."
        )
    return images.to(module.device)


def digit_classifier(module: DiffusionModule | SingleStepDenoiser, cfg: DictConfig) -> Classifier | None:
    """The project's MNIST classifier (``diffusion_lit.train_features``) for a model of MNIST
    digits, if it has been trained; it tells whether anagrams and hybrids read as intended."""
    data_cfg = module.run_config.get("data") or {}
    if "mnist" not in str(data_cfg.get("_target_", "")):
        return None
    path = domain_checkpoint_path(cfg.data.get("data_dir") or data_cfg.get("data_dir") or ".")
    if not path.is_file():
        console.print(
            f"(no MNIST classifier at {path}: train it with diffusion_lit.train_features to score the images)"
        )
        return None
    classifier = DomainFeatures(path).to(module.device)
    return classifier.probabilities


def edit(cfg: DictConfig) -> Path:
    check_config_types(cfg, EditConfig)
    task = instantiate(cfg.task)  # the task's function with its options bound (conf/task/*.yaml)
    device = resolve_device(cfg.device)
    module = load_checkpoint(cfg.ckpt, sampler=cfg.get("sampler"), kind=None).to(device)
    inputs = EditInputs(
        module=module,
        generator=torch.Generator(device=device).manual_seed(cfg.seed),
        load_images=lambda: input_images(module, cfg),
        load_classifier=lambda: digit_classifier(module, cfg),
        mask=cfg.mask,
        labels=cfg.labels,
        guidance_scale=cfg.guidance_scale,
    )
    figure = task(inputs)
    out = figure.save(cfg.out or f"edit_{task.func.__name__}.png")
    for key, value in figure.metrics.items():
        console.print(f"{key}: {value:.5f}")
    console.print(f"wrote {out}")
    return out
