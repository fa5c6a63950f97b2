"""Figures and tables of the thesis' schedule comparison, from one multirun of experiment=thesis_schedules.

    python experiments/thesis_schedules/make_figures.py SWEEP_DIR [--out experiments/thesis_schedules] [--seed 0]

SWEEP_DIR is the multirun folder (``python -m diffusion_lit.train -m experiment=thesis_schedules``
prints it). For every data variant V it writes to --out:

* ``reverse_V.png``: one row per schedule, x_t along the full T-step ancestral chain from one
  starting noise, the same noise for every schedule (thesis figures 6.1 / 6.3 / 6.5);
* ``starts_V.png``: one row per schedule, the samples from five starting noises, the same five
  for every schedule (figures 6.2 / 6.4 / 6.6);
* ``loss_V.png``: one panel per schedule, the training loss per epoch (mean, and the band of its
  smallest and largest step) and the held-out validation loss (figures 6.7 / 6.8);

and ``results.md``: the triangle validity of each job's final 256 samples (schedule x variant)
and the W1 distances of the valid triangles' shapes to the training triangles'. Sampling here
is the thesis' own: all T steps of Ho et al.'s Algorithm 2 with sigma_t^2 = beta_t and no
clipping of the x0 estimate (seed 001, section 4.2), from the EMA weights.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import torch

from diffusion_lit.diffusion.samplers import SamplerStep, ddpm_sample
from diffusion_lit.lit.build import data_module_for, load_checkpoint
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.lit.sample_metrics import real_images
from diffusion_lit.metrics.triangles import triangle_validity
from diffusion_lit.runs.report import Job, draw_run_losses, read_sweep
from diffusion_lit.utils.images import plt, save_strips

SCHEDULES = ("linear", "sine", "power1_5", "power2", "power10")
SCHEDULE_LABELS = {"linear": "linear", "sine": "sine wave", "power1_5": "x^1.5", "power2": "x^2", "power10": "x^10"}
VARIANTS = ("aliased", "supersampled", "binary")
NUM_STARTS = 5
NUM_COLUMNS = 8  # of the reverse-process strip: the noise, then 7 points of the chain
THESIS_SAMPLER = functools.partial(ddpm_sample, steps=None, variance="beta", clip_x0=False)


def jobs_by_setting(sweep_dir: Path) -> dict[tuple[str, str], Job]:
    jobs = {}
    for job in read_sweep(sweep_dir):
        schedule = job.overrides.get("schedule", "linear")
        variant = job.overrides.get("data.variant", "supersampled")
        jobs[(schedule, variant)] = job
    return jobs


def chain_and_samples(module: DiffusionModule, noise: torch.Tensor) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """x_t of the first noise at NUM_COLUMNS - 1 points of the chain (with column labels), and
    the final samples of all the noises."""
    recorded: list[torch.Tensor] = []

    def record(step: SamplerStep) -> None:
        recorded.append(step.x[0].detach().cpu())

    generator = torch.Generator().manual_seed(0)  # the chain's own noise z_t, the same for every job
    samples = module.sample(noise.shape[0], generator=generator, callback=record, noise=noise, sampler=THESIS_SAMPLER)
    picks = [round(i * (len(recorded) - 1) / (NUM_COLUMNS - 2)) for i in range(NUM_COLUMNS - 1)]
    chain = torch.stack([noise[0], *(recorded[index].clamp(-1, 1) for index in picks)])
    labels = ["x_T (noise)", *(f"step {index + 1}/{len(recorded)}" for index in picks)]
    return chain, labels, samples.cpu()


def loss_figure(jobs: dict[tuple[str, str], Job], variant: str, path: Path) -> None:
    figure, axes = plt.subplots(1, len(SCHEDULES), figsize=(3.0 * len(SCHEDULES), 2.8), sharey=True, squeeze=False)
    for axis, schedule in zip(axes[0], SCHEDULES, strict=True):
        axis.set_title(SCHEDULE_LABELS[schedule], fontsize=9)
        job = jobs.get((schedule, variant))
        if job is None:
            continue
        draw_run_losses(axis, job.folder)
        axis.set_yscale("log")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("noise-prediction MSE")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"loss per epoch, {variant} triangles", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def real_validity(module: DiffusionModule, count: int = 256) -> float:
    """Validity of ``count`` held-out training-set images of the module's data variant: the
    ceiling of the samples' rate (the metric is strict about ragged edges)."""
    datamodule = data_module_for(module, None)
    return triangle_validity(real_images(datamodule, "val", count)).rate


def results_table(jobs: dict[tuple[str, str], Job], ceilings: dict[str, float]) -> str:
    def cell(schedule: str, variant: str, key: str, digits: int) -> str:
        job = jobs.get((schedule, variant))
        value = job.results.get(key) if job else None
        return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    lines = ["Triangle validity of the final 256 samples (DDPM, 100 respaced steps, EMA weights):", ""]
    lines += ["| schedule | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    lines += [f"| {SCHEDULE_LABELS[s]} | " + " | ".join(cell(s, v, "triangle_validity", 3) for v in VARIANTS) + " |"
              for s in SCHEDULES]  # fmt: skip
    ceiling_cells = " | ".join(f"{ceilings[v]:.3f}" if v in ceilings else "—" for v in VARIANTS)
    lines.append(f"| *real held-out images* | {ceiling_cells} |")
    distances = ("w1_area", "w1_min_angle", "w1_max_angle", "w1_centroid_x", "w1_centroid_y")
    lines += ["", "Shape distances of the valid samples to the training triangles (W1; area and centroid in canvas "
              "fractions, angles in degrees) and validation loss:", ""]  # fmt: skip
    lines += ["| schedule | variant | " + " | ".join(distances) + " | val loss | fit s |"]
    lines += ["|---|---|" + "---|" * (len(distances) + 2)]
    for schedule in SCHEDULES:
        for variant in (variant for variant in VARIANTS if (schedule, variant) in jobs):
            values = [cell(schedule, variant, key, 3) for key in distances]
            values += [cell(schedule, variant, "val_loss", 4), cell(schedule, variant, "fit_seconds", 0)]
            lines.append(f"| {SCHEDULE_LABELS[schedule]} | {variant} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("experiments/thesis_schedules"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noises (shared by all schedules)")
    parser.add_argument("--sample-variants", nargs="*", default=list(VARIANTS), choices=VARIANTS,
                        help="variants whose reverse/starts figures are drawn (1,000 steps per schedule)")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_by_setting(args.sweep_dir)
    ceilings: dict[str, float] = {}
    for variant in VARIANTS:
        present = [schedule for schedule in SCHEDULES if (schedule, variant) in jobs]
        if not present:
            continue
        first = load_checkpoint(jobs[(present[0], variant)].folder / "checkpoints" / "last.ckpt")
        ceilings[variant] = real_validity(first)
        loss_figure(jobs, variant, args.out / f"loss_{variant}.png")
        if variant not in args.sample_variants:
            continue
        chains, starts = [], []
        for schedule in present:
            print(f"sampling {schedule} / {variant} ...", flush=True)
            module = load_checkpoint(jobs[(schedule, variant)].folder / "checkpoints" / "last.ckpt")
            noise = torch.randn((NUM_STARTS, *module.image_shape), generator=torch.Generator().manual_seed(args.seed))
            chain, column_labels, samples = chain_and_samples(module, noise)
            chains.append(chain)
            starts.append(samples)
        labels = [SCHEDULE_LABELS[schedule] for schedule in present]
        save_strips(chains, column_labels, args.out / f"reverse_{variant}.png",
                    title=f"reverse process, {variant} triangles (one starting noise)", row_labels=labels)  # fmt: skip
        save_strips(starts, [f"noise {i + 1}" for i in range(NUM_STARTS)], args.out / f"starts_{variant}.png",
                    title=f"five starting noises, {variant}", row_labels=labels)  # fmt: skip
    (args.out / "results.md").write_text(results_table(jobs, ceilings))
    print((args.out / "results.md").read_text())
    print(f"wrote figures and results.md to {args.out}")


if __name__ == "__main__":
    main()
