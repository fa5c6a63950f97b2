"""One page for a sweep: ``python -m diffusion_lit.report multirun/<date>/<time>``.

Writes ``report.md`` (images linked from the job folders) and ``report.html`` (images embedded:
one file to mail or attach) into the sweep folder: a table of every job's overrides, status and
final metrics, the validation-loss curves of all jobs on one plot, and side by side each job's
final samples, loss curve and latest denoising strip. A sweep writes it by itself when it ends
(``hydra.callbacks.sweep_end``); run this command to rebuild it, e.g. after a job was re-run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusion_lit.runs.report import write_report
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import report_user_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m diffusion_lit.report",
        description="Turn a multirun folder into one page: report.md and a self-contained report.html "
        "(overrides and final metrics of every job, loss curves and sample grids side by side).",
    )
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder, e.g. multirun/2026-11-23/10-00-00")
    args = parser.parse_args(argv)
    markdown, page = report_user_errors(lambda: write_report(args.sweep_dir))
    console.print(f"wrote {page} and {markdown}", highlight=False)


if __name__ == "__main__":
    main()
