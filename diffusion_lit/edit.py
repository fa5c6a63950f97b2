"""Editing tasks on a trained model: ``python -m diffusion_lit.edit task=<name> ckpt=PATH``.

Tasks (``conf/task/``): forward, blur_baseline, one_step, iterative, sdedit, inpaint, anagram,
hybrid (:mod:`diffusion_lit.editing.tasks`), and denoiser for a single-step denoiser checkpoint
(:mod:`diffusion_lit.lit.denoiser`). Each writes one labelled PNG and prints its numbers.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from diffusion_lit.build import data_module_for, load_checkpoint
from diffusion_lit.cli import CONFIG_DIR, console, report_user_errors
from diffusion_lit.data.base import split_set
from diffusion_lit.editing import tasks
from diffusion_lit.editing.inputs import load_image_file, make_mask
from diffusion_lit.errors import UserError
from diffusion_lit.lit.denoiser import SingleStepDenoiser
from diffusion_lit.lit.module import DiffusionModule, images_of
from diffusion_lit.metrics.features import DomainFeatures, domain_checkpoint_path
from diffusion_lit.sample import sample_labels

GENERATING_TASKS = ("anagram", "hybrid")  # start from noise: no input images


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


def digit_classifier(module: DiffusionModule, cfg: DictConfig) -> tasks.Classifier | None:
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


def run_task(module: DiffusionModule, cfg: DictConfig, generator: torch.Generator) -> tasks.Figure:
    task, T = cfg.task, module.schedule.num_timesteps
    name = task.name
    if name in GENERATING_TASKS:
        classifier = digit_classifier(module, cfg)
        if name == "anagram":
            return tasks.anagram_task(
                module, task.num_samples, list(task.classes), list(task.views), task.guidance_scale, generator,
                classifier,
            )  # fmt: skip
        return tasks.hybrid_task(
            module, task.num_samples, task.low_class, task.high_class, task.kernel_size, task.sigma,
            task.guidance_scale, generator, classifier,
        )  # fmt: skip
    images = input_images(module, cfg)
    labels = sample_labels(cfg.labels, images.shape[0], module.num_classes)
    model_fn = tasks.editing_eps(module, labels.to(module.device) if labels is not None else None, cfg.guidance_scale)
    timesteps = lambda: task.timesteps or tasks.fractions_of_t([0.25, 0.5, 0.75], T)  # noqa: E731
    if name == "forward":
        return tasks.forward_task(module, images, timesteps(), generator)
    if name == "blur_baseline":
        return tasks.blur_baseline_task(module, images, timesteps(), task.kernel_size, task.sigma, generator, model_fn)
    if name == "one_step":
        return tasks.one_step_task(module, images, timesteps(), generator, model_fn)
    if name == "iterative":
        t_start = task.t_start if task.t_start is not None else tasks.fractions_of_t([0.69], T)[0]
        return tasks.iterative_task(
            module, images, t_start, task.stride, task.kernel_size, task.sigma, task.num_columns, generator, model_fn
        )
    if name == "sdedit":
        starts = task.start_timesteps or tasks.fractions_of_t([0.96, 0.9, 0.84, 0.78, 0.69, 0.39], T)
        return tasks.sdedit_task(module, images, list(starts), generator, model_fn)
    if name == "inpaint":
        mask = make_mask(cfg.mask, module.image_shape)
        return tasks.inpaint_task(module, images, mask, task.num_variants, task.resample, generator, model_fn)
    raise UserError(f"unknown task {name!r}.")


def edit(cfg: DictConfig) -> Path:
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module = load_checkpoint(cfg.ckpt, sampler=cfg.get("sampler"), kind=None).to(device)
    name = cfg.task.name
    if (name == "denoiser") != isinstance(module, SingleStepDenoiser):
        raise UserError(
            "task=denoiser needs a single-step denoiser checkpoint (python -m diffusion_lit.train "
            "experiment=single_step_denoiser), and the other tasks a diffusion model's checkpoint."
        )
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    if name == "denoiser":
        figure = tasks.denoiser_task(module, input_images(module, cfg), list(cfg.task.sigmas), generator)
    else:
        figure = run_task(module, cfg, generator)
    out = figure.save(cfg.out or f"edit_{name}.png")
    for key, value in figure.metrics.items():
        console.print(f"{key}: {value:.5f}")
    console.print(f"wrote {out}")
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="edit")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: edit(cfg))


if __name__ == "__main__":
    main()
