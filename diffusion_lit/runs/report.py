"""One page for a sweep (``python -m diffusion_lit.report multirun/<date>/<time>``).

Writes ``report.md`` (images linked from the job folders) and ``report.html`` (images embedded:
one file to mail or attach) into the sweep folder: a table of every job's overrides, status and
final metrics, the validation-loss curves of all jobs on one plot, and side by side each job's
final samples, loss curve and latest denoising strip. A sweep writes it by itself when it ends
(``hydra.callbacks.sweep_end``); run this command to rebuild it, e.g. after a job was re-run.
"""

from __future__ import annotations

import base64
import csv
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from diffusion_lit.runs.jobs import job_folders, read_results
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import atomic_write
from diffusion_lit.utils.images import plt

# Final metrics shown first when a job has them; other numeric results follow in name order.
LEADING_METRICS = ("val_loss", "triangle_validity", "digits_confident_share", "fit_seconds", "global_step")
# Logged metrics (results.json "last_logged") worth a column: sample quality, FID and friends.
LOGGED_PREFIXES = ("samples/", "fid/", "kid", "precision", "recall")
HIDDEN_RESULTS = {"eval_num_samples"}


@dataclass
class Job:
    folder: Path
    overrides: dict[str, str]
    results: dict[str, Any]
    figures: dict[str, Path] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.results.get("status", "unfinished"))

    def metrics(self) -> dict[str, float]:
        values = {
            key: value
            for key, value in self.results.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in HIDDEN_RESULTS
        }
        logged = self.results.get("last_logged", {})
        values.update({key: value for key, value in logged.items() if key.startswith(LOGGED_PREFIXES)})
        return values

    def val_loss_curve(self) -> list[tuple[int, float]]:
        """(epoch, val/loss) from the CSV logger's metrics.csv, if the job had one."""
        return [(epoch, value) for epoch, _, value in logged_curve(self.folder, "val/loss")]


def logged_curve(run_dir: Path, key: str) -> list[tuple[int, int, float]]:
    """(epoch counted from 1, optimizer steps done, value) of every row of the run's CSV-logger
    file (``csv/metrics.csv``) that has ``key``; empty if the run has no such file."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get(key)]
    return [(int(float(row["epoch"])) + 1, int(float(row["step"])) + 1, float(row[key])) for row in rows]


def _latest(folder: Path, pattern: str) -> Path | None:
    matches = sorted(folder.glob(pattern))
    return matches[-1] if matches else None


def read_job(folder: Path) -> Job:
    overrides_file = folder / ".hydra" / "overrides.yaml"
    overrides: dict[str, str] = {}
    if overrides_file.is_file():
        for item in yaml.safe_load(overrides_file.read_text()) or []:
            key, _, value = str(item).partition("=")
            overrides[key] = value
    figures = {
        "samples": (folder / "samples_final.png") if (folder / "samples_final.png").is_file() else None,
        "loss curve": (folder / "loss_curve.png") if (folder / "loss_curve.png").is_file() else None,
        "denoising": _latest(folder / "samples", "reverse_denoising_epoch*.png"),
    }
    if figures["samples"] is None:
        figures["samples"] = _latest(folder / "samples", "samples_epoch*.png")
    return Job(folder, overrides, read_results(folder), {name: path for name, path in figures.items() if path})


def read_sweep(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder: give a multirun folder, e.g. multirun/<date>/<time>.")
    jobs = [read_job(folder) for folder in job_folders(sweep_dir)]
    if not jobs:
        raise UserError(
            f"no job folders in {sweep_dir} (expected subfolders with .hydra/ or results.json, as "
            "`python -m diffusion_lit.train -m ...` writes them)."
        )
    return jobs


def common_overrides(jobs: list[Job]) -> dict[str, str]:
    """Overrides every job shares (e.g. model=tiny): stated once above the table."""
    first, *others = [job.overrides for job in jobs]
    return {key: value for key, value in first.items() if all(other.get(key) == value for other in others)}


def table_columns(jobs: list[Job]) -> tuple[list[str], list[str]]:
    """The override keys that differ between jobs (first-seen order) and the metric names."""
    common = common_overrides(jobs) if len(jobs) > 1 else {}
    override_keys = [key for key in dict.fromkeys(k for job in jobs for k in job.overrides) if key not in common]
    metric_names = set().union(*(job.metrics() for job in jobs))
    leading = [name for name in LEADING_METRICS if name in metric_names]
    return override_keys, leading + sorted(metric_names - set(leading))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def table_rows(jobs: list[Job]) -> tuple[list[str], list[list[str]]]:
    override_keys, metric_names = table_columns(jobs)
    header = ["job", *override_keys, "status", *metric_names]
    rows = []
    for job in jobs:
        metrics = job.metrics()
        status = job.status if job.status == "completed" else f"{job.status}: {job.results.get('error', '')}".strip()
        rows.append(
            [
                job.folder.name.split("_", 1)[0],
                *(job.overrides.get(key, "") for key in override_keys),
                status,
                *(_format(metrics.get(name)) for name in metric_names),
            ]
        )
    return header, rows


def draw_run_losses(axis: Any, run_dir: Path, name: str = "", steps: bool = False) -> None:
    """On a matplotlib ``axis``: one run's training loss per epoch (mean, and the band between
    its smallest and largest step loss, as LossCurve logs them) and its validation loss, read
    from the run's csv/metrics.csv; ``name`` prefixes the legend labels. ``steps`` adds the
    logged single-step losses, placed at their fraction of the epochs (for runs of few epochs)."""
    prefix = f"{name}, " if name else ""
    mean, val = logged_curve(run_dir, "train/loss_epoch"), logged_curve(run_dir, "val/loss")
    low, high = logged_curve(run_dir, "train/loss_min_epoch"), logged_curve(run_dir, "train/loss_max_epoch")
    color = None
    step_losses = logged_curve(run_dir, "train/loss_step") if steps and mean else []
    if step_losses:
        steps_per_epoch = mean[0][1] / mean[0][0]  # the first epoch's end: steps done / epochs done
        (line,) = axis.plot([step / steps_per_epoch for _, step, _ in step_losses], [v for *_, v in step_losses],
                            linewidth=0.6, alpha=0.6, label=f"{prefix}train (logged steps)")  # fmt: skip
        color = line.get_color()
    if mean:
        (line,) = axis.plot([e for e, _, _ in mean], [v for *_, v in mean], marker="o", markersize=3, color=color,
                            label=f"{prefix}train (epoch mean)")  # fmt: skip
        color = line.get_color()
    if low and high:
        axis.fill_between([e for e, _, _ in low], [v for *_, v in low], [v for *_, v in high], color=color,
                          alpha=0.2, label=f"{prefix}train (min-max of the steps)")  # fmt: skip
    if val:
        axis.plot([e for e, _, _ in val], [v for *_, v in val], "--", color=color, marker="o", markersize=3,
                  label=f"{prefix}validation (held out)")  # fmt: skip


def plot_loss_curves(jobs: list[Job], path: Path) -> Path | None:
    """All jobs' validation loss per epoch on one log-scale plot (None if no job logged any)."""
    curves = [(job, job.val_loss_curve()) for job in jobs]
    curves = [(job, curve) for job, curve in curves if curve]
    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for job, curve in curves:
        epochs, values = zip(*curve, strict=True)
        label = " ".join(f"{k}={v}" for k, v in job.overrides.items()) or job.folder.name
        axis.plot(epochs, values, marker="o", markersize=3, label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation loss (EMA weights where the run averages)")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def optuna_summary(sweep_dir: Path) -> dict[str, Any] | None:
    """Best value and parameters from the Optuna sweeper's optimization_results.yaml, if any."""
    path = sweep_dir / "optimization_results.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _common_text(jobs: list[Job]) -> str:
    return " ".join(f"{key}={value}" for key, value in common_overrides(jobs).items()) if len(jobs) > 1 else ""


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table (cells escaped so that a ``|`` in a value cannot split them)."""
    lines = ["| " + " | ".join(_markdown_cell(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in rows]


def render_markdown(sweep_dir: Path, jobs: list[Job], curves: Path | None) -> str:
    lines = [f"# Sweep report: {sweep_dir}", ""]
    completed = sum(job.status == "completed" for job in jobs)
    lines += [f"{completed} of {len(jobs)} jobs completed.", ""]
    if common := _common_text(jobs):
        lines += [f"Every job: `{common}`", ""]
    best = optuna_summary(sweep_dir)
    if best:
        lines += [f"Optuna best value: {best.get('best_value')}; parameters: {best.get('best_params')}", ""]
    lines += markdown_table(*table_rows(jobs))
    if curves:
        lines += ["", "## Validation loss of every job", "", f"![validation loss]({curves.relative_to(sweep_dir)})"]
    names = list(dict.fromkeys(name for job in jobs for name in job.figures))
    if names:
        lines += ["", "## Figures", "", "| job | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for job in jobs:
            cells = [
                f"![{name}]({job.figures[name].relative_to(sweep_dir)})" if name in job.figures else ""
                for name in names
            ]
            lines.append(f"| {_markdown_cell(job.folder.name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _embedded_image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


HTML_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f2f2f2; }
.jobs { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.job { border: 1px solid #ccc; padding: 0.5em; max-width: 420px; }
.job h3 { font-size: 0.95em; margin: 0 0 0.4em 0; word-break: break-all; }
.job img { max-width: 400px; display: block; margin-bottom: 0.4em; image-rendering: pixelated; }
.failed { color: #b00; }
"""


def render_html(sweep_dir: Path, jobs: list[Job], curves: Path | None) -> str:
    header, rows = table_rows(jobs)
    completed = sum(job.status == "completed" for job in jobs)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Sweep report: {html.escape(str(sweep_dir))}</title><style>{HTML_STYLE}</style></head><body>",
        f"<h1>Sweep report: {html.escape(str(sweep_dir))}</h1>",
        f"<p>{completed} of {len(jobs)} jobs completed.</p>",
    ]
    if common := _common_text(jobs):
        parts.append(f"<p>Every job: <code>{html.escape(common)}</code></p>")
    best = optuna_summary(sweep_dir)
    if best:
        parts.append(
            f"<p>Optuna best value: {html.escape(str(best.get('best_value')))}; "
            f"parameters: {html.escape(str(best.get('best_params')))}</p>"
        )
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(cell)}</th>" for cell in header) + "</tr>")
    for job, row in zip(jobs, rows, strict=True):
        css = "" if job.status == "completed" else " class='failed'"
        parts.append(f"<tr{css}>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</table>")
    if curves:
        parts += ["<h2>Validation loss of every job</h2>", _embedded_image(curves, "validation loss")]
    parts.append("<h2>Figures</h2><div class='jobs'>")
    for job in jobs:
        parts.append(f"<div class='job'><h3>{html.escape(job.folder.name)}</h3>")
        if job.status != "completed":
            error = html.escape(str(job.results.get("error", "")))
            parts.append(f"<p class='failed'>{html.escape(job.status)}: {error}</p>")
        for name, path in job.figures.items():
            parts.append(f"<div>{html.escape(name)}</div>{_embedded_image(path, name)}")
        parts.append("</div>")
    parts.append("</div></body></html>")
    return "\n".join(parts) + "\n"


def write_report(sweep_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``val_loss_curves.png`` into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    jobs = read_sweep(sweep_dir)
    curves = plot_loss_curves(jobs, sweep_dir / "val_loss_curves.png")
    markdown, page = sweep_dir / "report.md", sweep_dir / "report.html"
    texts = {markdown: render_markdown(sweep_dir, jobs, curves), page: render_html(sweep_dir, jobs, curves)}
    for path, text in texts.items():
        with atomic_write(path) as file:
            file.write(text.encode())
    return markdown, page
