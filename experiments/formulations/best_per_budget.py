"""The formulation study's table and figure: for each trained model, the best triangle validity
any of its sampler configurations reaches within each budget of network calls.

    python experiments/formulations/best_per_budget.py --studies vp=<dir> flow=<dir> ... \
        [--budgets 1 2 4 8 16 35 100] [--metric triangle_validity] [--out experiments/formulations/flow]

Each <dir> holds a results.json of experiments/samplers/compare.py, or is such a .json file
(several merge: ``name=<dir>+<file.json>``). A cell is the best row with network_calls <= budget, shown with its
binomial standard error and the sampler that reached it; best is the highest value, or the lowest for
distances (fid, kid). Writes best_per_budget.md/.json and
best_per_budget.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from combine import check_one_feature_network  # the script beside this one

from diffusion_lit.utils.errors import UserError, report_user_errors
from diffusion_lit.utils.images import plt


def load(spec: str) -> tuple[str, list[dict]]:
    name, _, folders = spec.partition("=")
    rows = []
    for folder in folders.split("+"):
        path = Path(folder) if folder.endswith(".json") else Path(folder) / "results.json"
        if not name or not path.is_file():
            raise UserError(f"--studies entries are name=<folder or .json>[+...] of compare.py results, got {spec!r}.")
        rows += json.loads(path.read_text())
    return name, rows


LOWER_IS_BETTER = ("fid", "kid")


def best_within(rows: list[dict], budget: int, metric: str) -> dict | None:
    eligible = [row for row in rows if row["network_calls"] <= budget and metric in row]
    best = min if metric.startswith(LOWER_IS_BETTER) else max
    return best(eligible, key=lambda row: row[metric]) if eligible else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", nargs="+", required=True)
    parser.add_argument("--budgets", nargs="+", type=int, default=[1, 2, 4, 8, 16, 35, 100])
    parser.add_argument("--metric", default="triangle_validity")
    parser.add_argument("--out", type=Path, default=Path("experiments/formulations/flow"))
    args = parser.parse_args()
    studies = dict(load(spec) for spec in args.studies)
    check_one_feature_network(studies, args.metric)
    table: dict[str, dict[int, dict | None]] = {
        name: {budget: best_within(rows, budget, args.metric) for budget in args.budgets}
        for name, rows in studies.items()
    }
    lines = ["| model | " + " | ".join(f"<= {budget} calls" for budget in args.budgets) + " |",
             "|---|" + "---|" * len(args.budgets)]  # fmt: skip
    for name, cells in table.items():
        texts = []
        for cell in cells.values():
            if cell is None:
                texts.append("")
                continue
            error = cell.get(f"{args.metric}_se")
            value = f"{cell[args.metric]:.3f}" + (f" ± {error:.3f}" if error is not None else "")
            texts.append(f"{value}<br>{cell['label']} ({cell['network_calls']})")
        lines.append(f"| {name} | " + " | ".join(texts) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "best_per_budget.md").write_text("\n".join(lines) + "\n")
    summary = {name: {str(budget): cell for budget, cell in cells.items()} for name, cells in table.items()}
    (args.out / "best_per_budget.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(lines))
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, cells in table.items():
        points = [(budget, cell[args.metric]) for budget, cell in cells.items() if cell is not None]
        axis.plot(*zip(*points, strict=True), marker="o", label=name)
    axis.set(xscale="log", xlabel="network calls per sample (at most)", ylabel=f"best {args.metric}")
    axis.set_xticks(args.budgets, [str(budget) for budget in args.budgets])
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out / "best_per_budget.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    report_user_errors(main)
