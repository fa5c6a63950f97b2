"""The edit command's tasks, one function per ``conf/task/*.yaml`` (each config's ``_target_``,
bound to its options with ``_partial_``): ``task(inputs)`` -> :class:`~diffusion_lit.editing.tasks.Figure`.

A task takes from :class:`EditInputs` only what it uses, so a generating task (anagram,
hybrid) never loads input images and only ``denoiser`` accepts a single-step denoiser. The
defaults that depend on the model (``null`` timesteps: fractions of its T) are filled in here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from diffusion_lit.diffusion.samplers import ModelFn
from diffusion_lit.editing import tasks
from diffusion_lit.editing.inputs import make_mask
from diffusion_lit.lit.denoiser import SingleStepDenoiser
from diffusion_lit.lit.module import DiffusionModule, sample_labels
from diffusion_lit.utils.errors import UserError

WRONG_KIND = (
    "task=denoiser needs a single-step denoiser checkpoint (python -m diffusion_lit.train "
    "experiment=single_step_denoiser), and the other tasks a diffusion model's checkpoint."
)


@dataclass
class EditInputs:
    """What the edit command offers a task: the checkpoint's module, the random generator, and
    loaders of the input images and of the MNIST classifier (called only when a task asks).

    ``labels`` and ``guidance_scale`` are the command's options: for a class-conditional model
    they steer the edit towards a class (None: unconditional).
    """

    module: DiffusionModule | SingleStepDenoiser
    generator: torch.Generator
    load_images: Callable[[], torch.Tensor]
    load_classifier: Callable[[], tasks.Classifier | None]
    mask: str = "center"
    labels: Any = None
    guidance_scale: float | None = None

    @property
    def diffusion_module(self) -> DiffusionModule:
        if not isinstance(self.module, DiffusionModule):
            raise UserError(WRONG_KIND)
        return self.module

    @property
    def denoiser(self) -> SingleStepDenoiser:
        if not isinstance(self.module, SingleStepDenoiser):
            raise UserError(WRONG_KIND)
        return self.module

    @functools.cached_property
    def images(self) -> torch.Tensor:
        return self.load_images()

    @property
    def num_timesteps(self) -> int:
        return self.diffusion_module.schedule.num_timesteps

    def fractions_of_t(self, fractions: list[float]) -> list[int]:
        return tasks.fractions_of_t(fractions, self.num_timesteps)

    @property
    def model_fn(self) -> ModelFn:
        """The eps the edit follows: guided towards ``labels`` if given, else unconditional."""
        module = self.diffusion_module
        labels = sample_labels(self.labels, self.images.shape[0], module.num_classes)
        return tasks.editing_eps(module, labels.to(module.device) if labels is not None else None, self.guidance_scale)


def forward(inputs: EditInputs, timesteps: list[int] | None = None) -> tasks.Figure:
    """x_t of the images at ``timesteps`` (default: T/4, T/2, 3T/4)."""
    timesteps = timesteps or inputs.fractions_of_t([0.25, 0.5, 0.75])
    return tasks.forward_task(inputs.diffusion_module, inputs.images, timesteps, inputs.generator)


def blur_baseline(
    inputs: EditInputs, timesteps: list[int] | None = None, kernel_size: int = 5, sigma: float = 2.0
) -> tasks.Figure:
    timesteps = timesteps or inputs.fractions_of_t([0.25, 0.5, 0.75])
    return tasks.blur_baseline_task(
        inputs.diffusion_module, inputs.images, timesteps, kernel_size, sigma, inputs.generator, inputs.model_fn
    )


def one_step(inputs: EditInputs, timesteps: list[int] | None = None) -> tasks.Figure:
    timesteps = timesteps or inputs.fractions_of_t([0.25, 0.5, 0.75])
    return tasks.one_step_task(inputs.diffusion_module, inputs.images, timesteps, inputs.generator, inputs.model_fn)


def iterative(
    inputs: EditInputs,
    t_start: int | None = None,
    stride: int = 30,
    num_columns: int = 5,
    kernel_size: int = 5,
    sigma: float = 2.0,
) -> tasks.Figure:
    """Strided denoising from ``t_start`` (default 0.69 T, seed 004's i_start = 10 on stride 30)."""
    t_start = t_start if t_start is not None else inputs.fractions_of_t([0.69])[0]
    return tasks.iterative_task(
        inputs.diffusion_module, inputs.images, t_start, stride, kernel_size, sigma, num_columns, inputs.generator,
        inputs.model_fn,
    )  # fmt: skip


def sdedit(inputs: EditInputs, start_timesteps: list[int] | None = None) -> tasks.Figure:
    """SDEdit from each start (default: 0.96 ... 0.39 of T, seed 004's i_start 1..20)."""
    starts = start_timesteps or inputs.fractions_of_t([0.96, 0.9, 0.84, 0.78, 0.69, 0.39])
    return tasks.sdedit_task(inputs.diffusion_module, inputs.images, list(starts), inputs.generator, inputs.model_fn)


def inpaint(inputs: EditInputs, num_variants: int = 3, resample: int = 1) -> tasks.Figure:
    module = inputs.diffusion_module
    mask = make_mask(inputs.mask, module.image_shape)
    return tasks.inpaint_task(module, inputs.images, mask, num_variants, resample, inputs.generator, inputs.model_fn)


def anagram(
    inputs: EditInputs, classes: list[int], views: list[str], num_samples: int = 8, guidance_scale: float = 3.0
) -> tasks.Figure:
    return tasks.anagram_task(
        inputs.diffusion_module, num_samples, list(classes), list(views), guidance_scale, inputs.generator,
        inputs.load_classifier(),
    )  # fmt: skip


def hybrid(
    inputs: EditInputs,
    low_class: int,
    high_class: int,
    kernel_size: int = 9,
    sigma: float = 1.5,
    num_samples: int = 8,
    guidance_scale: float = 3.0,
) -> tasks.Figure:
    return tasks.hybrid_task(
        inputs.diffusion_module, num_samples, low_class, high_class, kernel_size, sigma, guidance_scale,
        inputs.generator, inputs.load_classifier(),
    )  # fmt: skip


def denoiser(inputs: EditInputs, sigmas: list[float]) -> tasks.Figure:
    return tasks.denoiser_task(inputs.denoiser, inputs.images, list(sigmas), inputs.generator)
