"""The editing tasks of seed 004 part A on this project's models. Each builds a :class:`Figure`
(labelled rows of images) and the numbers it reports; ``diffusion_lit.edit`` saves and prints
them. Images are (N, C, H, W) in [-1, 1]; a class-conditional model edits unconditionally
(null label) unless labels are given, the counterpart of seed 004's "a high-quality photo".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur

from diffusion_lit.diffusion.guidance import anagram_eps, check_view, hybrid_eps
from diffusion_lit.diffusion.process import q_sample
from diffusion_lit.diffusion.samplers import Edit, ModelFn, SamplerStep, strided_sample
from diffusion_lit.lit.denoiser import SingleStepDenoiser
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.images import save_strips

# Class probabilities (N, K) of images (N, C, H, W) in [-1, 1], e.g. the MNIST domain classifier.
Classifier = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Figure:
    """Rows of images (each (K, C, H, W) in [-1, 1]) with column and row labels, and numbers."""

    rows: list[torch.Tensor]
    column_labels: list[str]
    title: str
    row_labels: list[str] | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        return save_strips(self.rows, self.column_labels, path, title=self.title, row_labels=self.row_labels)


def check_timesteps(timesteps: list[int], num_timesteps: int, option: str) -> list[int]:
    values = list(timesteps)
    if not values or any(isinstance(t, bool) or int(t) != t or not 0 <= t < num_timesteps for t in values):
        raise UserError(
            f"{option} must be integers in [0, {num_timesteps - 1}] (the model's T={num_timesteps}), got {values!r}."
        )
    return [int(t) for t in values]


def fractions_of_t(fractions: list[float], num_timesteps: int) -> list[int]:
    """Timesteps at fractions of T (seed 004 uses 250/500/750 of T = 1000)."""
    return [min(num_timesteps - 1, max(0, round(f * num_timesteps))) for f in fractions]


def noised(module: DiffusionModule, images: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (seed 004 1.1; Ho et al. eq. 4)."""
    noise = torch.randn(images.shape, generator=generator, device=generator.device).to(images.device)
    return q_sample(module.schedule, images, torch.full((images.shape[0],), t, device=images.device), noise)


def editing_eps(module: DiffusionModule, labels: torch.Tensor | None, guidance_scale: float | None) -> ModelFn:
    """The noise predictor of an edit: unconditional (the null label) for a conditional model
    without labels, classifier-free guidance towards ``labels`` otherwise."""
    if module.num_classes == 0 or labels is not None:
        return module.eps_fn(labels, guidance_scale)

    def unconditional(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return module.conditional_eps(x, t, torch.full((x.shape[0],), module.net.null_label, device=x.device))

    return unconditional


@torch.no_grad()
def one_step_estimate(module: DiffusionModule, x_t: torch.Tensor, t: int, model_fn: ModelFn) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t) from one network call (seed 004 1.3),
    clipped to the data range."""
    alpha_bar = float(module.schedule.alphas_bar[t])
    eps = model_fn(x_t, torch.full((x_t.shape[0],), t, device=x_t.device))
    return ((x_t - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)).clamp(-1.0, 1.0)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def forward_task(module: DiffusionModule, images: torch.Tensor, timesteps: list[int], generator) -> Figure:
    """Clean images and their x_t at several t (seed 004 1.1, seed 000 figure 2)."""
    timesteps = check_timesteps(timesteps, module.schedule.num_timesteps, "task.timesteps")
    columns = [images] + [noised(module, images, t, generator) for t in timesteps]
    return Figure(
        rows=list(torch.stack(columns, dim=1)),
        column_labels=["x_0"] + [f"t={t}" for t in timesteps],
        title="forward process q(x_t | x_0)",
    )


def blur_baseline_task(
    module: DiffusionModule,
    images: torch.Tensor,
    timesteps: list[int],
    kernel_size: int,
    sigma: float,
    generator: torch.Generator,
    model_fn: ModelFn,
) -> Figure:
    """Classical denoising: a Gaussian blur of x_t (torchvision's gaussian_blur), beside the
    model's one-step estimate (seed 004 1.2); the error of each against the clean image."""
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise UserError(f"task.kernel_size must be odd and >= 1 and task.sigma > 0, got {kernel_size!r}, {sigma!r}.")
    timesteps = check_timesteps(timesteps, module.schedule.num_timesteps, "task.timesteps")
    rows, row_labels, metrics = [], [], {}
    noisy = [noised(module, images, t, generator) for t in timesteps]
    blurred = [gaussian_blur(x, [kernel_size, kernel_size], [sigma, sigma]) for x in noisy]
    estimates = [one_step_estimate(module, x, t, model_fn) for x, t in zip(noisy, timesteps, strict=True)]
    for index in range(images.shape[0]):
        for name, series in (("noisy", noisy), ("blurred", blurred), ("model, 1 step", estimates)):
            rows.append(torch.stack([images[index]] + [x[index] for x in series]))
            row_labels.append(name)
    for t, blur, estimate in zip(timesteps, blurred, estimates, strict=True):
        metrics[f"mse_blur_t{t}"] = mse(blur, images)
        metrics[f"mse_one_step_t{t}"] = mse(estimate, images)
    return Figure(
        rows=rows,
        column_labels=["x_0"] + [f"t={t}" for t in timesteps],
        title=f"Gaussian blur (kernel {kernel_size}, sigma {sigma}) vs the model's one-step estimate",
        row_labels=row_labels,
        metrics=metrics,
    )


def one_step_task(
    module: DiffusionModule, images: torch.Tensor, timesteps: list[int], generator, model_fn: ModelFn
) -> Figure:
    """x0 estimated from x_t with a single network call at several t (seed 000 figure 4,
    seed 004 1.3), with its mean squared error against the clean image."""
    timesteps = check_timesteps(timesteps, module.schedule.num_timesteps, "task.timesteps")
    noisy = [noised(module, images, t, generator) for t in timesteps]
    estimates = [one_step_estimate(module, x, t, model_fn) for x, t in zip(noisy, timesteps, strict=True)]
    rows, row_labels = [], []
    for index in range(images.shape[0]):
        rows += [torch.stack([images[index]] + [x[index] for x in series]) for series in (noisy, estimates)]
        row_labels += ["x_t", "one-step x_0"]
    metrics = {f"mse_t{t}": mse(e, images) for t, e in zip(timesteps, estimates, strict=True)}
    return Figure(rows, ["x_0"] + [f"t={t}" for t in timesteps], "one-step denoising", row_labels, metrics)


def _recorder(records: list[tuple[int, torch.Tensor]]) -> Callable[[SamplerStep], None]:
    def record(step: SamplerStep) -> None:
        records.append((step.t, step.x.detach()))

    return record


def _pick(records: list[tuple[int, torch.Tensor]], count: int) -> list[tuple[int, torch.Tensor]]:
    indices = sorted({round(i * (len(records) - 1) / max(count - 1, 1)) for i in range(count)})
    return [records[i] for i in indices]


def iterative_task(
    module: DiffusionModule,
    images: torch.Tensor,
    t_start: int,
    stride: int,
    kernel_size: int,
    sigma: float,
    num_columns: int,
    generator: torch.Generator,
    model_fn: ModelFn,
) -> Figure:
    """Iterative denoising of a noisy real image on strided timesteps (seed 004 1.4): the
    chain from x_{t_start}, then the final image beside the one-step estimate and the blur."""
    (t_start,) = check_timesteps([t_start], module.schedule.num_timesteps, "task.t_start")
    x_t = noised(module, images, t_start, generator)
    records: list[tuple[int, torch.Tensor]] = []
    sampler = functools.partial(strided_sample, stride=stride)
    final = module.sample(
        x_t.shape[0], generator=generator, noise=x_t, model_fn=model_fn, edit=Edit(t_start=t_start),
        sampler=sampler, callback=_recorder(records),
    )  # fmt: skip
    chain = _pick(records[:-1], num_columns) if len(records) > 1 else []
    one_step = one_step_estimate(module, x_t, t_start, model_fn)
    blurred = gaussian_blur(x_t, [kernel_size, kernel_size], [sigma, sigma])
    columns = [x_t] + [x for _, x in chain] + [final, one_step, blurred, images]
    labels = [f"x_{t_start}"] + [f"after t={t}" for t, _ in chain] + ["iterative", "one-step", "blurred", "original"]
    return Figure(
        rows=list(torch.stack(columns, dim=1)),
        column_labels=labels,
        title=f"iterative denoising from t={t_start}, stride {stride}",
        metrics={
            "mse_iterative": mse(final, images),
            "mse_one_step": mse(one_step, images),
            "mse_blur": mse(blurred, images),
        },
    )


def sdedit_task(
    module: DiffusionModule,
    images: torch.Tensor,
    start_timesteps: list[int],
    generator: torch.Generator,
    model_fn: ModelFn,
) -> Figure:
    """SDEdit (Meng et al. 2022; seed 004 1.7): noise the image to t_start, then run the
    model's sampler down from there; the lower t_start, the closer to the input."""
    start_timesteps = check_timesteps(start_timesteps, module.schedule.num_timesteps, "task.start_timesteps")
    edits = []
    for t_start in start_timesteps:
        x_t = noised(module, images, t_start, generator)
        edits.append(
            module.sample(x_t.shape[0], generator=generator, noise=x_t, model_fn=model_fn, edit=Edit(t_start=t_start))
        )
    return Figure(
        rows=list(torch.stack([*edits, images], dim=1)),
        column_labels=[f"from t={t}" for t in start_timesteps] + ["original"],
        title="SDEdit: image-to-image from several noise levels",
    )


def inpaint_task(
    module: DiffusionModule,
    images: torch.Tensor,
    mask: torch.Tensor,
    num_variants: int,
    resample: int,
    generator: torch.Generator,
    model_fn: ModelFn,
) -> Figure:
    """Inpainting (seed 004 1.7.2; Lugmayr et al. 2022): generate where ``mask`` is 1 and, after
    every step to s, put back the known pixels noised to level s,

        x_s <- mask * x_s + (1 - mask) * q_sample(x_0, s),

    and at the end the known pixels themselves, so they equal the input exactly. ``resample``
    > 1 adds RePaint's resampling (each step taken that many times)."""
    mask = mask.to(images.device)
    known = 1.0 - mask

    def project(x_s: torch.Tensor, s: int | None) -> torch.Tensor:
        reference = images if s is None else noised(module, images, s, generator)
        return mask * x_s + known * reference

    variants = []
    for _ in range(num_variants):
        noise = torch.randn(images.shape, generator=generator, device=generator.device).to(images.device)
        variants.append(
            module.sample(images.shape[0], generator=generator, noise=noise, model_fn=model_fn,
                          edit=Edit(project=project, resample=resample))
        )  # fmt: skip
    masked_input = known * images + mask * -1.0
    shown_mask = (mask * 2.0 - 1.0).expand_as(images)
    columns = [images, shown_mask, masked_input, *variants]
    return Figure(
        rows=list(torch.stack(columns, dim=1)),
        column_labels=["original", "mask", "kept"] + [f"inpainted {i + 1}" for i in range(num_variants)],
        title="inpainting" + (f" (RePaint resampling x{resample})" if resample > 1 else ""),
        metrics={"max_change_outside_mask": float((known * (variants[0] - images)).abs().max())},
    )


def _class_labels(module: DiffusionModule, classes: list[int], count: int, option: str) -> list[torch.Tensor]:
    if module.num_classes == 0:
        raise UserError(f"{option} needs a class-conditional model (trained with model.num_classes=K).")
    if not classes or any(
        isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < module.num_classes for c in classes
    ):
        raise UserError(f"{option} must be classes in [0, {module.num_classes - 1}], got {classes!r}.")
    return [torch.full((count,), c, dtype=torch.long, device=module.device) for c in classes]


def anagram_task(
    module: DiffusionModule,
    num_samples: int,
    classes: list[int],
    views: list[str],
    guidance_scale: float,
    generator: torch.Generator,
    classifier: Classifier | None = None,
) -> Figure:
    """Visual anagrams (seed 004 1.8): images that show ``classes[i]`` through ``views[i]``
    (e.g. a 6 upright that is a 9 rotated by 180 degrees). With a ``classifier`` (class
    probabilities of images), the share of samples read as the intended class in each view,
    and in all views at once."""
    if len(classes) != len(views):
        raise UserError(f"task.classes and task.views need one view per class, got {classes!r} and {views!r}.")
    labels = _class_labels(module, list(classes), num_samples, "task.classes")
    model_fn = anagram_eps(
        module.conditional_eps, list(zip(labels, views, strict=True)), guidance_scale, module.net.null_label
    )
    samples = module.sample(num_samples, generator=generator, model_fn=model_fn)
    columns = [check_view(view)(samples) for view in views]
    metrics = {}
    if classifier is not None:
        hits = [classifier(column).argmax(dim=1).cpu() == c for column, c in zip(columns, classes, strict=True)]
        for c, view, hit in zip(classes, views, hits, strict=True):
            metrics[f"read_as_{c}_{view}"] = float(hit.float().mean())
        metrics["read_as_intended_in_every_view"] = float(torch.stack(hits).all(dim=0).float().mean())
    return Figure(
        rows=list(torch.stack(columns, dim=1)),
        column_labels=[f"class {c}, {view}" for c, view in zip(classes, views, strict=True)],
        title=f"visual anagrams, guidance scale {guidance_scale}",
        metrics=metrics,
    )


def hybrid_task(
    module: DiffusionModule,
    num_samples: int,
    low_class: int,
    high_class: int,
    kernel_size: int,
    sigma: float,
    guidance_scale: float,
    generator: torch.Generator,
    classifier: Classifier | None = None,
) -> Figure:
    """Hybrid images (seed 004 1.9): low frequencies of class ``low_class``, high frequencies of
    ``high_class``; the blurred column shows what the image looks like from afar. With a
    ``classifier``, the share read as ``high_class`` as is and as ``low_class`` blurred."""
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise UserError(f"task.kernel_size must be odd and >= 1 and task.sigma > 0, got {kernel_size!r}, {sigma!r}.")
    low, high = _class_labels(module, [low_class, high_class], num_samples, "task.low_class/high_class")
    lowpass = functools.partial(gaussian_blur, kernel_size=[kernel_size, kernel_size], sigma=[sigma, sigma])
    model_fn = hybrid_eps(module.conditional_eps, low, high, guidance_scale, module.net.null_label, lowpass)
    samples = module.sample(num_samples, generator=generator, model_fn=model_fn)
    metrics = {}
    if classifier is not None:
        metrics[f"read_as_{high_class}"] = float((classifier(samples).argmax(dim=1).cpu() == high_class).float().mean())
        metrics[f"read_as_{low_class}_blurred"] = float(
            (classifier(lowpass(samples)).argmax(dim=1).cpu() == low_class).float().mean()
        )
    return Figure(
        metrics=metrics,
        rows=list(torch.stack([samples, lowpass(samples)], dim=1)),
        column_labels=[f"hybrid {low_class}/{high_class}", f"low-pass: {low_class}"],
        title=f"hybrid images (Gaussian low-pass: kernel {kernel_size}, sigma {sigma}), guidance {guidance_scale}",
    )


def denoiser_task(
    module: SingleStepDenoiser, images: torch.Tensor, sigmas: list[float], generator: torch.Generator
) -> Figure:
    """The single-step denoiser (seed 004 part B.1.2) at noise levels in and out of its training
    distribution: noisy and denoised images per level, with the error against the clean image."""
    if not sigmas or any(level < 0 for level in sigmas):
        raise UserError(f"task.sigmas must be noise levels >= 0, got {sigmas!r}.")
    noisy = [module.noisy(images, level, generator) for level in sigmas]
    denoised = [module.denoise(z) for z in noisy]
    rows, row_labels = [], []
    for index in range(images.shape[0]):
        rows += [torch.stack([z[index] for z in series]) for series in (noisy, denoised)]
        row_labels += ["noisy", "denoised"]
    labels = [f"sigma={level:g}" + (" (trained)" if level == module.sigma else "") for level in sigmas]
    metrics = {f"mse_sigma{level:g}": mse(d, images) for level, d in zip(sigmas, denoised, strict=True)}
    return Figure(rows, labels, f"single-step denoiser trained at sigma={module.sigma:g}", row_labels, metrics)
