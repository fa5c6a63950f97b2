"""Figures and numbers of the course project's MNIST models, from one multirun of experiment=cs180_mnist.

    python experiments/cs180_mnist/make_figures.py SWEEP_DIR [--data-root ../shared/datasets]
        [--scales 0 1 2 3 5 7] [--num-samples 500] [--steps 50] [--out experiments/cs180_mnist]

SWEEP_DIR is the multirun folder of ``python -m diffusion_lit.train -m experiment=cs180_mnist``
(a time-conditioned job, model.num_classes=0, and a class-conditioned one, model.num_classes=10).
Writes to --out:

* ``epochs_<model>.png``: the sample grids the run drew after every epoch, side by side;
* ``loss.png``: both models' training loss per epoch (band: smallest-largest step) and
  validation loss;
* ``guidance.png`` + ``guidance.json``: for the class-conditioned model, domain FID, share of
  recognisable digits and class accuracy (share classified as the digit asked for) against the
  classifier-free guidance scale, with a protocol card per scale; the time-conditioned model's
  numbers at the same protocol as the reference line;
* ``guidance_samples.png``: one row per scale, digits 0-9 from the same starting noise.

The sweep samples with DDPM respaced to --steps steps (sigma^2 = beta, as the project) to fit
the CPU budget; the run's own grids used all 300 steps. Needs the domain MNIST classifier
(``python -m diffusion_lit.train_features data=mnist data.root=...``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

from diffusion_lit.lit.build import data_module_for, load_checkpoint
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.lit.sample_metrics import SampleMetrics, card_for, sample_metrics_config
from diffusion_lit.runs.report import Job, draw_run_losses, read_sweep
from diffusion_lit.utils.images import plt, save_strips

MODEL_NAMES = {"0": "time-conditioned", "10": "class-conditioned"}


def jobs_by_model(sweep_dir: Path) -> dict[str, Job]:
    return {MODEL_NAMES.get(job.overrides.get("model.num_classes", "10"), "?"): job for job in read_sweep(sweep_dir)}


def epoch_grids(job: Job, path: Path) -> None:
    grids = sorted((job.folder / "samples").glob("samples_epoch*.png"))
    if not grids:
        return
    figure, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.5), squeeze=False)
    for axis, grid in zip(axes[0], grids, strict=True):
        axis.imshow(Image.open(grid), cmap="gray")
        axis.set_title(f"epoch {int(grid.stem.removeprefix('samples_epoch'))}", fontsize=10)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def loss_figure(jobs: dict[str, Job], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 3.6))
    for name, job in jobs.items():
        draw_run_losses(axis, job.folder, name, steps=True)
    axis.set(xlabel="epoch", ylabel="noise-prediction MSE", yscale="log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def score(module: DiffusionModule, metrics: SampleMetrics, args: argparse.Namespace, scale: float | None,
          sampler: dict, checkpoint: Path) -> dict:  # fmt: skip
    """Domain FID, recognisable share and class accuracy of the samples at guidance ``scale``."""
    count, seed = args.num_samples, args.seed
    generator = torch.Generator().manual_seed(seed)
    samples = module.sample_in_batches(count, 250, generator=generator, guidance_scale=scale)
    values = metrics(samples, module.default_labels(count))  # sample_in_batches asked for 0..9 in turn
    values["protocol"] = card_for(module, metrics, sampler, count, seed, scale, str(checkpoint.resolve()))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--data-root", default=None, help="MNIST folder, if not the runs'")
    parser.add_argument("--scales", type=float, nargs="*", default=[0.0, 1.0, 2.0, 3.0, 5.0, 7.0])
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--num-real", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=50, help="DDPM steps of the guidance sweep (respaced)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("experiments/cs180_mnist"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_by_model(args.sweep_dir)
    for name, job in jobs.items():
        epoch_grids(job, args.out / f"epochs_{name.split('-')[0]}.png")
    loss_figure(jobs, args.out / "loss.png")

    sampler = OmegaConf.create({"_target_": "diffusion_lit.diffusion.samplers.ddpm_sample", "_partial_": True,
                                "steps": args.steps, "variance": "beta", "clip_x0": True})  # fmt: skip
    rows: dict[str, list[dict]] = {}
    strips, labels = [], []
    for name, job in jobs.items():
        checkpoint = job.folder / "checkpoints" / "last.ckpt"
        module = load_checkpoint(checkpoint, sampler=sampler)
        datamodule = data_module_for(module, {"root": args.data_root})
        metrics = SampleMetrics(["fid", "digits"], module, datamodule, sample_metrics_config(args.num_real))
        scales = args.scales if module.num_classes else [None]
        rows[name] = []
        for scale in scales:
            print(f"{name}, guidance {scale} ...", flush=True)
            values = score(module, metrics, args, scale, OmegaConf.to_container(sampler), checkpoint)
            row = {"guidance_scale": scale, **values}
            rows[name].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "protocol"}), flush=True)
            if module.num_classes:
                noise = torch.randn((10, *module.image_shape), generator=torch.Generator().manual_seed(args.seed))
                digits = module.sample(10, noise=noise, labels=torch.arange(10), guidance_scale=scale,
                                       generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
                strips.append(digits.cpu())
                labels.append(f"scale {scale:g}")
    (args.out / "guidance.json").write_text(json.dumps(rows, indent=2))
    if strips:
        title = "class-conditioned model: digits 0-9 from one noise, per guidance scale"
        save_strips(strips, [str(d) for d in range(10)], args.out / "guidance_samples.png", title, row_labels=labels)
    guidance_plot(rows, args.out / "guidance.png")
    print(f"wrote figures, guidance.json to {args.out}")


def guidance_plot(rows: dict[str, list[dict]], path: Path) -> None:
    conditional = rows.get("class-conditioned", [])
    reference = (rows.get("time-conditioned") or [None])[0]
    panels = (("fid", "domain FID"), ("digits_confident_share", "recognisable (conf. > 0.9)"),
              ("digits_label_accuracy", "classified as asked"))  # fmt: skip
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for axis, (key, title) in zip(axes[0], panels, strict=True):
        points = [(row["guidance_scale"], row[key]) for row in conditional if key in row]
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", label="class-conditioned")
        if reference is not None and key in reference:
            axis.axhline(reference[key], color="grey", linestyle="--", label="time-conditioned")
        axis.set(xlabel="guidance scale", title=title)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
