"""The table of time_to_quality.sh's runs: training images, fit and sampling seconds, validity.

    python experiments/default_run/time_to_quality.py RUNS [--json OUT.json]

Validity is the final evaluation's (256 samples from the EMA weights unless the run says
otherwise) with its binomial standard error sqrt(p (1 - p) / n). Seconds are the run's own:
compare them only between runs that had the machine to themselves.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml


def rows(runs: Path) -> list[dict]:
    table = []
    for results_path in sorted(runs.glob("*/results.json")):
        run = results_path.parent
        config_path = run / ".hydra" / "config.yaml"
        if not config_path.exists():
            continue  # not a training run (e.g. a compare.py --out beside the runs)
        results = json.loads(results_path.read_text())
        overrides_path = run / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.exists() else []
        config = yaml.safe_load(config_path.read_text())
        overrides = [o for o in overrides if not o.startswith(("hydra.", "callbacks.progress_bar"))]
        validity, n = results.get("triangle_validity"), results.get("eval_num_samples") or 0
        table.append({
            "run": run.name,
            "overrides": " ".join(overrides),
            "training_images": results["global_step"] * config["data"]["batch_size"],
            "fit_seconds": results["fit_seconds"],
            "eval_seconds": results.get("eval_sampling_seconds"),
            "eval_samples": n,
            "validity": validity,
            "validity_se": math.sqrt(validity * (1 - validity) / n) if validity is not None and n else None,
        })  # fmt: skip
    return table


def markdown(table: list[dict]) -> str:
    lines = [
        "| run | overrides | training images | fit s | sampling s | valid (256 samples) |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        valid = "" if row["validity"] is None else f"{row['validity']:.3f} ± {row['validity_se']:.3f}"
        lines.append(
            f"| {row['run']} | `{row['overrides']}` | {row['training_images']:,} | {row['fit_seconds']:.0f} | "
            f"{row['eval_seconds'] or 0:.0f} | {valid} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    table = rows(args.runs)
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
