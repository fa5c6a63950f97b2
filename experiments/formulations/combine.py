"""One table and one figure from the sampler studies of several checkpoints (experiments/samplers/
compare.py run once per formulation): quality against network calls, side by side.

    python experiments/formulations/combine.py --studies vp=<dir> edm=<dir> [--metric triangle_validity] \
        [--out experiments/formulations]

Each <dir> holds a compare.py results.json (or is that file); rows are matched by their label (sampler, steps and
options). Writes results.md (one column per study, with the standard error where the metric is a
share) and quality_vs_calls.png (one colour per sampler configuration, one marker per study).
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
        path = Path(folder) if folder.endswith(".json") else Path(folder) / "results.json"
        if not name or not path.is_file():
            raise UserError(
                f"--studies entries are name=<folder with a compare.py results.json, or the file>, got {spec!r}."
            )
        studies[name] = json.loads(path.read_text())
    return studies


# Metrics measured in a feature network's space: their values depend on which network it is.
FEATURE_METRICS = ("fid", "kid", "precision", "recall")


def check_one_feature_network(studies: dict[str, list[dict]], metric: str) -> None:
    """Refuses a table of feature metrics scored by different feature networks: each machine trains
    its own domain classifier, and FID in two of them is on two scales (500 real MNIST test digits
    scored 35.9 in one and 54.4 in another), so such rows are not comparable."""
    if not metric.startswith(FEATURE_METRICS):
        return
    networks = {
        row.get("protocol", {}).get("extractor_sha256") for rows in studies.values() for row in rows if metric in row
    }
    if len(networks) > 1:
        names = ", ".join(str(sha)[:8] for sha in sorted(networks, key=str))
        raise UserError(
            f"--metric {metric}: the studies were scored by {len(networks)} different feature networks "
            f"(extractor_sha256 {names}), whose values are not comparable. Rescore them with one "
            "(compare.py on each checkpoint on the same machine, or with the same extractor weights)."
        )


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
    """One panel: the metric against network calls, one colour per sampler configuration (the
    same in every study) and one marker per study, the legend outside the axes."""
    configurations = list(dict.fromkeys(row["sampler"] for rows in studies.values() for row in rows))
    colours = {name: plt.cm.tab20(index % 20) for index, name in enumerate(configurations)}
    markers = ["o", "^", "s", "D", "v", "P"]
    figure, axis = plt.subplots(figsize=(11, 4.8))
    for rows, marker in zip(studies.values(), markers, strict=False):
        for sampler in configurations:
            points = sorted((row["network_calls"], row[metric]) for row in rows if row["sampler"] == sampler)
            if points:
                face = colours[sampler] if marker == "o" else "none"
                axis.plot(*zip(*points, strict=True), marker=marker, markersize=7, linestyle="none",
                          color=colours[sampler], markerfacecolor=face)  # fmt: skip
    for sampler in configurations:
        axis.plot([], [], marker="s", linestyle="none", color=colours[sampler], label=sampler)
    for study, marker in zip(studies, markers, strict=False):
        axis.plot([], [], marker=marker, linestyle="none", color="black", markerfacecolor="none", label=study)
    axis.set(xscale="log", xlabel="network calls per sample", ylabel=metric)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--studies", nargs="+", required=True, help="name=<compare.py output folder or results .json> entries"
    )
    parser.add_argument("--metric", default="triangle_validity")
    parser.add_argument("--out", type=Path, default=Path("experiments/formulations"))
    args = parser.parse_args()
    studies = load_studies(args.studies)
    check_one_feature_network(studies, args.metric)
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_table(studies, args.metric, args.out))
    plot(studies, args.metric, args.out / "quality_vs_calls.png")


if __name__ == "__main__":
    report_user_errors(main)
