"""The practical's loss figure (its figure 3) from one run's logged losses: every logged step
loss, the epoch means with the band of their smallest and largest step, and the validation loss.

    python experiments/practica_mnist/draw_loss.py <run folder> experiments/practica_mnist/loss_curve.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusion_lit.runs.report import draw_run_losses
from diffusion_lit.utils.images import plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="folder of an experiment=practica_mnist run (has csv/metrics.csv)")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args()
    if not (args.run_dir / "csv" / "metrics.csv").is_file():
        raise SystemExit(f"{args.run_dir} has no csv/metrics.csv: pass the folder of a run trained with the CSV logger")
    figure, axis = plt.subplots(figsize=(6, 3.6))
    draw_run_losses(axis, args.run_dir, steps=True)
    axis.set(xlabel="epoch", ylabel="noise-prediction MSE", yscale="log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    plt.close(figure)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
