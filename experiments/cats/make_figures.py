"""Figures and the results table of the cat slides' study, from one multirun of experiment=cats.

    python experiments/cats/make_figures.py SWEEP_DIR [--data-path FOLDER] [--out experiments/cats]

SWEEP_DIR is the multirun folder of ``python -m diffusion_lit.train -m experiment=cats
data.path=...`` (model.loss in l1, mse x data.transform in none, edges). Writes the sweep's own
report (``report.md``, ``report.html``: ``python -m diffusion_lit.report``) and, to --out:

* ``training_images.png``: eight training images as each job saw them (plain and edge maps);
* ``samples.png``: the final samples of the four jobs, one panel each;
* ``loss.png``: the training loss per epoch (band: smallest-largest step) and the validation
  loss of each job, one panel per loss function (L1 and MSE values are not on one scale);
* ``results.md``: the table of the report (FID of the final samples per job, with the
  protocol's reference set: each job's own preprocessed training images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from diffusion_lit.data.base import first_batches
from diffusion_lit.runs.report import Job, draw_run_losses, markdown_table, read_sweep, table_rows, write_report
from diffusion_lit.utils.images import plt, save_strips

LOSSES = ("l1", "mse")
TRANSFORMS = ("none", "edges")


def job_name(job: Job) -> str:
    return f"loss={job.overrides.get('model.loss', '?')}, transform={job.overrides.get('data.transform', '?')}"


def training_images(jobs: list[Job], data_path: str | None, path: Path, count: int = 8) -> None:
    """The first ``count`` training images under each transform (one job per transform)."""
    rows, labels = [], []
    for transform in TRANSFORMS:
        job = next((job for job in jobs if job.overrides.get("data.transform") == transform), None)
        if job is None:
            continue
        data_cfg = OmegaConf.load(job.folder / ".hydra" / "config.yaml").data
        if data_path is not None:
            data_cfg.path = data_path
        batch = next(first_batches(instantiate(data_cfg), "train", count, count))
        rows.append(batch[0] if isinstance(batch, list | tuple) else batch)  # (image, label) with class subfolders
        labels.append(transform)
    if rows:
        save_strips(rows, [""] * count, path, title="training images as the model sees them", row_labels=labels)


def samples_figure(jobs: list[Job], path: Path) -> None:
    figure, axes = plt.subplots(len(LOSSES), len(TRANSFORMS), figsize=(7, 7.4), squeeze=False)
    for job in jobs:
        loss, transform = job.overrides.get("model.loss"), job.overrides.get("data.transform")
        if loss not in LOSSES or transform not in TRANSFORMS or "samples" not in job.figures:
            continue
        axis = axes[LOSSES.index(loss)][TRANSFORMS.index(transform)]
        axis.imshow(Image.open(job.figures["samples"]), cmap="gray")
        fid = job.metrics().get("fid/domain", job.metrics().get("fid/inception"))
        axis.set_title(f"{job_name(job)}" + (f"\nFID {fid:.1f}" if fid is not None else ""), fontsize=9)
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def loss_figure(jobs: list[Job], path: Path) -> None:
    figure, axes = plt.subplots(1, len(LOSSES), figsize=(5.2 * len(LOSSES), 3.6), squeeze=False)
    for axis, loss in zip(axes[0], LOSSES, strict=True):
        for job in jobs:
            if job.overrides.get("model.loss") == loss:
                draw_run_losses(axis, job.folder, f"transform={job.overrides.get('data.transform')}")
        axis.set(xlabel="epoch", ylabel=f"{loss} loss on the noise", yscale="log", title=f"model.loss={loss}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--data-path", default=None, help="image folder, if not the runs' data.path")
    parser.add_argument("--out", type=Path, default=Path("experiments/cats"))
    args = parser.parse_args()
    jobs = read_sweep(args.sweep_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown, page = write_report(args.sweep_dir)
    training_images(jobs, args.data_path, args.out / "training_images.png")
    samples_figure(jobs, args.out / "samples.png")
    loss_figure(jobs, args.out / "loss.png")
    (args.out / "results.md").write_text("\n".join(markdown_table(*table_rows(jobs))) + "\n")  # the report's table
    print(f"wrote {markdown}, {page}; training_images.png, samples.png, loss.png, results.md to {args.out}")


if __name__ == "__main__":
    main()
