"""The end of a Hydra multirun (``hydra.callbacks.sweep_end`` in conf/hydra/default.yaml): which
jobs completed or failed, the sweep report, and a failing exit status when a job failed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig
from rich.markup import escape

from diffusion_lit.runs.jobs import job_folders, read_results
from diffusion_lit.runs.report import write_report
from diffusion_lit.utils.console import console, error_console


class SweepEnd(HydraCallback):
    """At the end of a multirun: print which jobs completed or failed, write the sweep report
    (``report.md`` and ``report.html``, see :mod:`diffusion_lit.runs.report`), and exit with status 1
    when a job failed, so that scripts and schedulers notice."""

    def __init__(self, report: bool = True) -> None:
        self.report = report

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        jobs = [(folder, read_results(folder)) for folder in job_folders(sweep_dir)]
        failed = [(folder, results) for folder, results in jobs if results.get("status") != "completed"]
        console.rule("sweep finished")
        console.print(f"  {len(jobs) - len(failed)} of {len(jobs)} jobs completed: {sweep_dir}", highlight=False)
        for folder, results in failed:
            error_console.print(
                f"  [bold red]{results.get('status', 'failed')}:[/bold red] "
                f"{escape(folder.name)}: {escape(str(results.get('error', '')))}",
                highlight=False,
                soft_wrap=True,
            )
        if self.report and jobs:
            markdown, html = write_report(sweep_dir)
            console.print(f"  report: {html} (and {markdown.name})", highlight=False)
        if failed:
            sys.exit(1)
