"""One table and one figure from the sampler studies of several checkpoints (experiments/samplers/
compare.py run once per formulation): quality against network calls, side by side.

    python experiments/formulations/combine.py --studies vp=<dir> edm=<dir> [--metric triangle_validity] \
        [--out experiments/formulations]

Each <dir> holds a compare.py results.json; rows are matched by their label (sampler, steps and
options). Writes results.md (one column per study, with the standard error where the metric is a
share) and quality_vs_calls.png (one panel per study, one line per sampler).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffusion_lit.utils.errors import UserError, report_user_errors
from diffusion_lit.utils.images import plt


def load_studies(specs: list[str]) -> dict[str, list[dict]]:
    studies = {}
    for spec in specs:
        name, _, folder = spec.partition("=")
        path = Path(folder) / "results.json"
        if not name or not path.is_file():
            raise UserError(f"--studies entries are name=<folder with a compare.py results.json>, got {spec!r}.")
        studies[name] = json.loads(path.read_text())
    return studies


def write_table(studies: dict[str, list[dict]], metric: str, out: Path) -> str:
    names = list(studies)
    by_label = {name: {row["label"]: row for row in rows} for name, rows in studies.items()}
    labels = list(dict.fromkeys(row["label"] for rows in studies.values() for row in rows))
    lines = [f"| sampler | network calls | {' | '.join(f'{name} {metric}' for name in names)} |",
             "|---|---|" + "---|" * len(names)]  # fmt: skip
    for label in labels:
        rows = [by_label[name].get(label) for name in names]
        calls = next(row["network_calls"] for row in rows if row is not None)
        cells = []
        for row in rows:
            if row is None or metric not in row:
                cells.append("")
                continue
            error = row.get(f"{metric}_se")
            cells.append(f"{row[metric]:.3f}" + (f" ± {error:.3f}" if error is not None else ""))
        lines.append(f"| {label} | {calls} | {' | '.join(cells)} |")
    table = "\n".join(lines) + "\n"
    (out / "results.md").write_text(table)
    return table


def plot(studies: dict[str, list[dict]], metric: str, path: Path) -> None:
    figure, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 4), squeeze=False, sharey=True)
    for axis, (name, rows) in zip(axes[0], studies.items(), strict=True):
        for sampler in dict.fromkeys(row["sampler"] for row in rows):
            points = sorted((row["network_calls"], row[metric]) for row in rows if row["sampler"] == sampler)
            axis.plot(*zip(*points, strict=True), marker="o", markersize=4, label=sampler)
        axis.set(xscale="log", xlabel="network calls per sample", title=name)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", nargs="+", required=True, help="name=<compare.py output folder> entries")
    parser.add_argument("--metric", default="triangle_validity")
    parser.add_argument("--out", type=Path, default=Path("experiments/formulations"))
    args = parser.parse_args()
    studies = load_studies(args.studies)
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_table(studies, args.metric, args.out))
    plot(studies, args.metric, args.out / "quality_vs_calls.png")


if __name__ == "__main__":
    report_user_errors(main)
