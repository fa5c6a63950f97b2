"""Table of the convergence study: images seen until >= 90% of 256 samples are valid triangles.

    python experiments/convergence/table.py RUNS_DIR [--threshold 0.9]

RUNS_DIR holds one folder per run of ``experiment=triangles_convergence`` (see run.sh); each
run's ``csv/metrics.csv`` has ``samples/triangle_validity`` after every epoch. Prints a
Markdown table (run, overrides, images to the threshold, epochs, fit seconds, validity per
epoch) and writes ``convergence.png`` (validity against images seen) into RUNS_DIR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from diffusion_lit.runs.report import logged_curve
from diffusion_lit.utils.images import plt


def summarise(run: Path, threshold: float) -> dict:
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    batch = int(config["data"]["batch_size"])
    # One row per epoch end: optimizer steps done x batch size = training images seen.
    curve = [(steps * batch, validity) for _, steps, validity in logged_curve(run, "samples/triangle_validity")]
    reached = next((images for images, validity in curve if validity >= threshold), None)
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    shown = [item for item in overrides if not item.startswith(("experiment=", "hydra.", "callbacks.progress_bar="))]
    return {
        "run": run.name,
        "overrides": " ".join(shown) or "(defaults)",
        "images": reached,
        "epochs": len(curve),
        "fit_seconds": results.get("fit_seconds"),
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    runs = sorted(path for path in args.runs_dir.iterdir() if (path / "csv" / "metrics.csv").is_file())
    rows = [summarise(run, args.threshold) for run in runs]
    target = f"images to {args.threshold:.0%} valid"
    print(f"| run | overrides | {target} | epochs run | fit s | validity after each epoch |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        images = f"{row['images']:,}" if row["images"] is not None else f"not reached in {row['epochs']} epochs"
        curve = " ".join(f"{validity:.2f}" for _, validity in row["curve"])
        print(f"| {row['run']} | `{row['overrides']}` | {images} | {row['epochs']} | {row['fit_seconds']} | {curve} |")
    figure, axes = plt.subplots(figsize=(7, 4))
    for row in rows:
        images = [point[0] for point in row["curve"]]
        validity = [point[1] for point in row["curve"]]
        axes.plot(images, validity, marker="o", markersize=3, label=f"{row['run']}: {row['overrides']}")
    axes.axhline(args.threshold, color="grey", linestyle="--", linewidth=1)
    axes.set(xlabel="training images seen", ylabel="valid triangles (256 samples)", ylim=(0, 1))
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    out = args.runs_dir / "convergence.png"
    figure.savefig(out, dpi=120)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
