"""Jobs of Hydra runs and multiruns: which job is running, its results files, keeping a sweep going
past a failed job, and DDP inside a sweep job.

Each job writes ``results.json`` into its folder (``"status": "completed"`` or ``"failed"`` with
the error); the end-of-sweep callback (:mod:`diffusion_lit.runs.sweep_end`) and the sweep report
read those files, so they work the same whether the jobs ran in this process (basic launcher,
Optuna) or on a cluster (submitit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, read_write
from rich.markup import escape

from diffusion_lit.utils.console import error_console
from diffusion_lit.utils.errors import UserError, exit_with, find_user_error
from diffusion_lit.utils.files import atomic_write

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
ERROR_FILE = "error.txt"
MAX_JOB_NAME = 160  # characters of a job folder's name (file systems stop at 255 bytes)
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def job_folder_name(overrides: str) -> str:
    """A job folder name from Hydra's ``override_dirname`` (``key=value,key=value``).

    ``key-value+key-value`` with any other character (``/`` of a path, brackets, quotes) as ``_``:
    one path component that a later command takes unquoted (``ckpt=<job>/checkpoints/last.ckpt``;
    Hydra's override grammar rejects ``=`` and ``,`` in a value). Names longer than
    MAX_JOB_NAME keep their start and a hash of the whole.
    """
    name = _UNSAFE_IN_NAME.sub("_", overrides.replace("=", "-").replace(",", "+"))
    if len(name) <= MAX_JOB_NAME:
        return name
    digest = hashlib.sha256(overrides.encode()).hexdigest()[:8]
    return f"{name[: MAX_JOB_NAME - 9]}+{digest}"


# conf/hydra/default.yaml names sweep job folders ${hydra.job.num}_${job_folder:${hydra.job.override_dirname}}.
if not OmegaConf.has_resolver("job_folder"):
    OmegaConf.register_new_resolver("job_folder", job_folder_name)


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``, or a config that sets ``hydra.mode``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_name() -> str | None:
    """The sweep's name in a multirun, from the last two parts of its folder
    (multirun/2026-11-23/10-00-00 -> "2026-11-23-10-00-00"), else None."""
    if not in_multirun():
        return None
    return "-".join(Path(HydraConfig.get().sweep.dir).parts[-2:])


def job_name() -> str | None:
    """The job's overrides in a multirun (``schedule=linear,seed=1``), else None."""
    if not in_multirun():
        return None
    job = HydraConfig.get().job
    return job.override_dirname or f"job{job.num}"


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path) as file:
        file.write((json.dumps(data, indent=2) + "\n").encode())


def record_failure(error: BaseException, output_dir: str | Path) -> tuple[str, UserError | None]:
    """Write what a failed run leaves behind in its folder: ``error.txt`` (the user error's message,
    or the traceback) and ``results.json`` with ``"status": "failed"``, so that scripts reading
    results can tell a failed run from one that never started. Returns (message, user error)."""
    user_error = find_user_error(error)
    message = str(user_error) if user_error else f"{type(error).__name__}: {error}"
    output_dir = Path(output_dir)
    try:
        with atomic_write(output_dir / ERROR_FILE) as file:
            file.write((message + "\n" if user_error else traceback.format_exc()).encode())
        write_json(output_dir / RESULTS_FILE, {"status": "failed", "error": message, "run_dir": str(output_dir)})
    except OSError as write_error:  # e.g. an unwritable output folder: the run's own error comes first
        log.warning("could not record the failure in %s: %s", output_dir, write_error)
    return message, user_error


def run_job(task: Callable[[], float | None], output_dir: str | Path) -> float | None:
    """Run one training job; a failure is recorded in its folder (:func:`record_failure`).

    A single run then reports a user error as one line (exit status 2) and lets other errors
    raise. In a multirun a failing job must not end the sweep: one line is printed and NaN is
    returned (Optuna records the trial as failed; the basic sweeper moves on). Ctrl-C still
    stops the run or the sweep.
    """
    try:
        return task()
    except Exception as error:
        message, user_error = record_failure(error, output_dir)
        if not in_multirun():
            if user_error is None:
                raise
            exit_with(user_error)
        log.error("job failed: %s", message)
        error_console.print(
            f"[bold red]job {HydraConfig.get().job.num} failed:[/bold red] {escape(message)}\n"
            f"  details: {escape(str(Path(output_dir) / ERROR_FILE))}; the other jobs of the sweep go on.",
            highlight=False,
            soft_wrap=True,
        )
        return math.nan


@contextlib.contextmanager
def ddp_processes_rerun_this_job() -> Iterator[None]:
    """Let Lightning's DDP launcher start its extra processes for this job only.

    Lightning starts ranks 1..N-1 by re-running the command line with ``hydra.run.dir`` set to
    the current run folder. Inside a multirun that command line is the whole sweep (``-m`` and
    every value), so each rank would start a sweep of its own. For the duration of the block
    the command line is this job's overrides and the run folder is this job's folder; at its
    end the environment is restored and the job's process group closed.
    """
    if not in_multirun():
        yield
        return
    hydra_cfg = HydraConfig.get()
    saved_argv, saved_run_dir, saved_environ = sys.argv, hydra_cfg.run.dir, dict(os.environ)
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved_run_dir
        # Lightning's launcher leaves LOCAL_RANK, WORLD_SIZE, MASTER_PORT, ... in the environment
        # (the next job would take them for an external launcher and start no processes) and the
        # process group up (the next job's ranks are new processes).
        os.environ.clear()
        os.environ.update(saved_environ)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders of a multirun folder, in job order (Hydra names them ``<num>_...``)."""

    def job_number(folder: Path) -> tuple[int, str]:
        prefix = folder.name.split("_", 1)[0]
        return (int(prefix) if prefix.isdigit() else sys.maxsize, folder.name)

    def is_job(folder: Path) -> bool:
        return folder.is_dir() and ((folder / ".hydra").is_dir() or (folder / RESULTS_FILE).is_file())

    return sorted(filter(is_job, sweep_dir.iterdir()), key=job_number)


def read_results(job_dir: Path) -> dict[str, Any]:
    """A job's results.json; a job that wrote none (killed, still running) is ``"unfinished"``."""
    try:
        return json.loads((job_dir / RESULTS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {"status": "unfinished"}
