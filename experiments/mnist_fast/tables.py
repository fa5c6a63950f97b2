"""Tables of the mnist_fast study (experiments/mnist_fast/README.md), from the run folders.

    python experiments/mnist_fast/tables.py trials SWEEP_DIR     # the Optuna trials, best first
    python experiments/mnist_fast/tables.py seeds MULTIRUN_DIR   # the full-epoch runs: each, then mean and spread

SWEEP_DIR is the folder of ``train experiment=mnist_fast hparams_search=mnist_fast``;
MULTIRUN_DIR that of ``train -m experiment=mnist_fast seed=0,1,2``. Prints Markdown.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from diffusion_lit.runs.report import Job, read_sweep

SCORE = "digits_confident_share"
NOT_SEARCHED = ("experiment", "hparams_search", "data.root", "callbacks.progress_bar", "seed", "hydra.")


def _short(key: str) -> str:
    return key.replace("callbacks.", "").replace("model.net.", "").replace("model.", "").replace("optimizer.", "")


def _value(key: str, value: str) -> str:
    if key == "optimizer.lr":
        return f"{float(value):.2g}"
    return value


def trials(jobs: list[Job]) -> None:
    keys = [key for key in dict.fromkeys(k for job in jobs for k in job.overrides) if not key.startswith(NOT_SEARCHED)]
    ranked = sorted(jobs, key=lambda job: job.metrics().get(SCORE, -1.0), reverse=True)
    header = " | ".join(_short(key) for key in keys)
    print(f"| rank | trial | {header} | recognised | class share min-max | val loss | fit s |")
    print("|---" * (len(keys) + 6) + "|")
    for rank, job in enumerate(ranked, 1):
        m = job.metrics()
        score = f"{m[SCORE]:.3f}" if SCORE in m else job.status
        spread = f"{m.get('digits_class_share_min', 0):.2f}-{m.get('digits_class_share_max', 0):.2f}"
        values = " | ".join(_value(k, job.overrides.get(k, "")) for k in keys)
        print(f"| {rank} | {job.folder.name.split('_', 1)[0]} | {values} | {score} | {spread} | "
              f"{m.get('val_loss', float('nan')):.4f} | {m.get('fit_seconds', float('nan')):.0f} |")  # fmt: skip


def wall_seconds(job: Job) -> float | None:
    """Start of the job (Hydra writes .hydra/config.yaml first) to its results.json."""
    start, end = job.folder / ".hydra" / "config.yaml", job.folder / "results.json"
    return end.stat().st_mtime - start.stat().st_mtime if start.is_file() and end.is_file() else None


def seeds(jobs: list[Job]) -> None:
    names = [SCORE, "digits_class_share_min", "digits_class_share_max", "fid/domain", "val_loss", "fit_seconds"]
    if any("digits_label_accuracy" in job.metrics() for job in jobs):  # conditional runs: the share drawn as asked
        names.insert(1, "digits_label_accuracy")
    names.append("wall_seconds")
    print("| run | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    columns: dict[str, list[float]] = {name: [] for name in names}
    for job in jobs:
        m = {**job.metrics(), "wall_seconds": wall_seconds(job)}
        m = {name: value for name, value in m.items() if value is not None}
        for name in names:
            if name in m:
                columns[name].append(float(m[name]))
        label = " ".join(f"{k}={v}" for k, v in job.overrides.items() if k == "seed") or job.folder.name
        print(f"| {label} | " + " | ".join(f"{m[name]:.4g}" if name in m else "" for name in names) + " |")
    cells = []
    for name in names:
        values = columns[name]
        spread = f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else ""
        cells.append(f"**{statistics.mean(values):.4g}**{spread}" if values else "")
    print("| mean ± sd | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["trials", "seeds"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    jobs = read_sweep(args.folder)
    trials(jobs) if args.table == "trials" else seeds(jobs)


if __name__ == "__main__":
    main()
