"""Issue 25's study table and figures from the runs of experiments/count_diffusion/run.sh.

    python experiments/count_diffusion/summarize.py --runs outputs/count_diffusion \
        [--out experiments/count_diffusion] [--num-samples 64] [--seed 1234]

For each photon rate lambda, the count process (formulation=blackout) and the Gaussian DDPM
(formulation=vp) trained on the same count images: from each run's results.json (256 final
samples: triangle validity of the intensity estimate n / lambda, the count histogram's total
variation to the validation counts', fit time) and nll.json (the bound in bits per dimension on
256 validation count images), beside the data's own validity at that lambda (what a perfect
model scores). Draws ``--num-samples`` fresh samples of each model (seed ``--seed``, each
checkpoint's own sampler) for the count-histogram figure and eight of them for the samples figure.

Writes results.md, results.json, samples.png and histograms.png into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from diffusion_lit.diffusion.counts import counts_to_images, images_to_counts
from diffusion_lit.lit.build import data_module_for, load_checkpoint
from diffusion_lit.metrics.counts import count_histogram
from diffusion_lit.utils.errors import UserError, report_user_errors
from diffusion_lit.utils.images import plt

FORMULATIONS = {"blackout": "count process (blackout)", "vp": "Gaussian DDPM, rounded"}


def run_dirs(runs: Path) -> dict[float, dict[str, Path]]:
    """{lambda: {formulation: run folder}} of the folders named <formulation>_lambda<L>."""
    found: dict[float, dict[str, Path]] = {}
    for folder in sorted(runs.glob("*_lambda*")):
        formulation, _, rate = folder.name.rpartition("_lambda")
        if formulation in FORMULATIONS and (folder / "results.json").is_file():
            found.setdefault(float(rate), {})[formulation] = folder
    if not found:
        raise UserError(f"no finished runs <formulation>_lambda<L>/results.json under {runs}: run run.sh first.")
    return found


def binomial_se(rate: float, count: int) -> float:
    return math.sqrt(max(rate * (1.0 - rate), 0.0) / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("outputs/count_diffusion"))
    parser.add_argument("--out", type=Path, default=Path("experiments/count_diffusion"))
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, shown, histograms = [], {}, {}
    for rate, runs in sorted(run_dirs(args.runs).items()):
        first = load_checkpoint(next(iter(runs.values())) / "checkpoints" / "last.ckpt")
        datamodule = data_module_for(first, None)
        datamodule.setup("fit")
        reference = datamodule.val_set.counts[: args.num_samples]
        maximum = datamodule.photon_counts.count_max
        data_metrics = datamodule.sample_metrics(counts_to_images(reference, maximum))
        shown[(rate, "data")] = reference[:8].float()
        histograms[(rate, "data")] = count_histogram(reference, maximum)
        for formulation, folder in sorted(runs.items()):
            results = json.loads((folder / "results.json").read_text())
            nll_path = folder / "nll.json"
            nll = json.loads(nll_path.read_text()) if nll_path.is_file() else {}
            module = load_checkpoint(folder / "checkpoints" / "last.ckpt")
            generator = torch.Generator().manual_seed(args.seed)
            samples = module.sample_in_batches(args.num_samples, 256, generator=generator)
            counts = images_to_counts(samples, maximum)
            shown[(rate, formulation)] = counts[:8]
            histograms[(rate, formulation)] = count_histogram(counts, maximum)
            validity = results["triangle_validity"]
            rows.append({
                "lambda": rate, "count_max": maximum, "formulation": formulation,
                "triangle_validity": validity, "validity_se": binomial_se(validity, results["eval_num_samples"]),
                "data_validity": data_metrics["triangle_validity"],
                "count_histogram_tv": results["count_histogram_tv"], "mean_count": results["mean_count"],
                "data_mean_count": results["data_mean_count"], "nll_bpd": nll.get("nll_bpd"),
                "nll_num_images": nll.get("nll_num_images"), "global_step": results["global_step"],
                "batch_size": module.run_config["data"]["batch_size"],
                "fit_seconds": results["fit_seconds"], "eval_sampling_seconds": results["eval_sampling_seconds"],
                "sampler": module.run_config["sampler"],
            })  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_table(rows, args.out / "results.md")
    draw_samples(shown, args.out / "samples.png")
    draw_histograms(histograms, args.out / "histograms.png")
    print((args.out / "results.md").read_text())


def write_table(rows: list[dict], path: Path) -> None:
    lines = [
        "| lambda | model | training images | triangle validity (data's own) | count histogram TV | mean count (data) "
        "| bits/dim | fit |",
        "|---:|---|---:|---|---:|---|---:|---:|",
    ]
    for row in rows:
        bpd = "-" if row["nll_bpd"] is None else f"{row['nll_bpd']:.3f}"
        lines.append(
            f"| {row['lambda']:g} | {FORMULATIONS[row['formulation']]} | {row['global_step'] * row['batch_size']:,} | "
            f"{row['triangle_validity']:.3f} ± "
            f"{row['validity_se']:.3f} ({row['data_validity']:.3f}) | {row['count_histogram_tv']:.4f} | "
            f"{row['mean_count']:.3f} ({row['data_mean_count']:.3f}) | {bpd} | {row['fit_seconds'] / 60:.1f} min |"
        )
    path.write_text("\n".join(lines) + "\n")


def draw_samples(shown: dict, path: Path) -> None:
    rates = sorted({rate for rate, _ in shown})
    columns = ["data", "blackout", "vp"]
    figure, axes = plt.subplots(len(rates), len(columns), figsize=(3.2 * len(columns), 1.0 * len(rates) + 0.6),
                                squeeze=False)  # fmt: skip
    for row, rate in enumerate(rates):
        for column, name in enumerate(columns):
            axis = axes[row][column]
            axis.axis("off")
            counts = shown.get((rate, name))
            if counts is None:
                continue
            strip = torch.cat(list(counts[:, 0].float()), dim=1)  # 8 images side by side, counts as grey levels
            axis.imshow(strip.numpy(), cmap="gray", vmin=0, vmax=float(rate) * 1.2, interpolation="nearest")
            title = "data" if name == "data" else FORMULATIONS[name]
            axis.set_title(f"lambda={rate:g}: {title}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def draw_histograms(histograms: dict, path: Path) -> None:
    rates = sorted({rate for rate, _ in histograms})
    figure, axes = plt.subplots(1, len(rates), figsize=(4.2 * len(rates), 3.2), squeeze=False)
    for axis, rate in zip(axes[0], rates, strict=True):
        for name, style in (("data", "k-"), ("blackout", "C0.-"), ("vp", "C1.-")):
            histogram = histograms.get((rate, name))
            if histogram is not None:
                label = "data" if name == "data" else FORMULATIONS[name]
                axis.semilogy(range(len(histogram)), histogram.clamp_min(1e-7).numpy(), style, label=label, lw=1, ms=3)
        axis.set_title(f"lambda = {rate:g}", fontsize=9)
        axis.set_xlabel("count per pixel")
        axis.set_ylabel("share of pixels")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


if __name__ == "__main__":
    report_user_errors(main)
