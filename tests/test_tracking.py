"""Loggers and the sweep report: W&B offline runs (one finished run per multirun job, read back
from the run files), TensorBoard and CSV together, and `python -m diffusion_lit.report`."""

import csv
import json
import os
import struct
from pathlib import Path

import pytest

from diffusion_lit.runs.jobs import job_folder_name
from diffusion_lit.runs.tracking import has_wandb_credentials
from tests.conftest import run_cli

SMOKE = ["model=tiny", "debug=smoke"]
WANDB_BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of 32 KiB blocks


def wandb_records(path: Path):
    """The protobuf records of a W&B run file (``run-<id>.wandb``): a 7-byte file header, then
    chunks with a 7-byte header (CRC32C, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pending = 7, b""
    while position + 7 <= len(data):
        left_in_block = WANDB_BLOCK - position % WANDB_BLOCK
        if left_in_block < 7:  # block trailer padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_wandb_run(run_dir: Path) -> dict:
    """Group, history keys, config keys and exit code of an offline W&B run folder."""
    (run_file,) = run_dir.glob("run-*.wandb")
    run = {"history": [], "config": set(), "exit_code": None}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["group"], run["name"] = record.run.run_group, record.run.display_name
            run["config"] |= {item.key for item in record.run.config.update}
        elif kind == "config":
            run["config"] |= {item.key for item in record.config.update}
        elif kind == "history":
            run["history"].append(
                {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            )
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory):
    """A 2-job multirun logging to CSV, TensorBoard and W&B, on a machine without W&B credentials."""
    workdir = tmp_path_factory.mktemp("wandb_sweep")
    home = workdir / "home"  # no ~/.netrc here
    home.mkdir()
    saved = {key: os.environ.pop(key) for key in ("WANDB_API_KEY", "WANDB_MODE", "NETRC") if key in os.environ}
    os.environ["HOME"], old_home = str(home), os.environ.get("HOME")
    try:
        result = run_cli(
            "diffusion_lit.train", "-m", "schedule=linear,cosine", *SMOKE, "logger=[csv,tensorboard,wandb]",
            "eval.num_samples=8", "hydra.sweep.dir=sweeps/schedules", cwd=workdir,
        )  # fmt: skip
    finally:
        os.environ.update(saved)
        if old_home is not None:
            os.environ["HOME"] = old_home
    return workdir / "sweeps" / "schedules", result


def test_without_credentials_wandb_goes_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not has_wandb_credentials()
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert has_wandb_credentials()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert not has_wandb_credentials()
    monkeypatch.setenv("WANDB_API_KEY", "key")
    assert has_wandb_credentials()


def test_each_multirun_job_is_one_finished_wandb_run(wandb_sweep):
    sweep_dir, result = wandb_sweep
    assert "logging offline" in result.stdout and "wandb sync" in result.stdout
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 2
    groups = set()
    for job in jobs:
        (run_dir,) = (job / "wandb").glob("offline-run-*")  # one run per job, in the job's folder
        run = read_wandb_run(run_dir)
        assert run["exit_code"] == 0  # finished
        groups.add(run["group"])
        assert "=" in run["name"] and job.name.split("_", 1)[1] == job_folder_name(run["name"])  # the job's overrides
        assert {"schedule", "data", "model", "trainer", "optimizer"} <= run["config"]  # the resolved config
        keys = set().union(*run["history"])
        assert {"train/loss_step", "val/loss", "train/lr", "train/grad_norm", "train/images_per_sec"} <= keys
        assert {"samples", "forward_noising", "reverse_denoising", "samples_final", "final/val_loss"} <= {
            key.split("/_type")[0] for key in keys
        } | keys
        loss_values = [float(row["train/loss_step"]) for row in run["history"] if "train/loss_step" in row]
        assert len(loss_values) == 6  # every step of 2 epochs x 3 batches, once
        images = list((run_dir / "files" / "media" / "images").glob("*.png"))
        assert {image.name.split("_")[0] for image in images} >= {"samples", "forward", "reverse"}
    assert groups == {"sweeps-schedules"}  # the sweep folder's last two parts, shared by its jobs


def test_tensorboard_and_csv_log_alongside(wandb_sweep):
    sweep_dir, _ = wandb_sweep
    for job in (p for p in sweep_dir.iterdir() if p.is_dir()):
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        with (job / "csv" / "metrics.csv").open() as file:
            rows = list(csv.DictReader(file))
        assert len([row for row in rows if row["train/loss_step"]]) == 6
        assert [row for row in rows if row["train/lr"]] and [row for row in rows if row["train/grad_norm"]]
        assert "schedule" in (job / "csv" / "hparams.yaml").read_text()


def test_sweep_report_shows_every_job(wandb_sweep):
    sweep_dir, result = wandb_sweep
    assert "2 of 2 jobs completed" in result.stdout
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())  # one folder per job, in sweep order
    assert len(jobs) == 2 and jobs[0].startswith("0_") and "schedule-linear" in jobs[0]
    assert jobs[1].startswith("1_") and "schedule-cosine" in jobs[1]
    assert all((sweep_dir / job / "checkpoints" / "last.ckpt").is_file() for job in jobs)
    (sweep_dir / "report.html").unlink()
    run_cli("diffusion_lit.report", str(sweep_dir), cwd=sweep_dir.parent)
    markdown = (sweep_dir / "report.md").read_text()
    page = (sweep_dir / "report.html").read_text()
    for job in (p for p in sweep_dir.iterdir() if p.is_dir()):
        assert job.name in markdown and job.name in page
        assert f"({job.name}/samples_final.png)" in markdown
    assert "| linear | completed |" in markdown and "| cosine | completed |" in markdown
    assert "Every job: `model=tiny debug=smoke logger=[csv,tensorboard,wandb] eval.num_samples=8`" in markdown
    assert page.count("data:image/png;base64,") >= 7  # 2 jobs x 3 figures + the loss curves: self-contained
    assert (sweep_dir / "val_loss_curves.png").is_file()
    results = [json.loads((job / "results.json").read_text()) for job in sweep_dir.iterdir() if job.is_dir()]
    assert all(r["status"] == "completed" and r["last_logged"]["val/loss"] > 0 for r in results)


def test_report_of_a_folder_without_jobs_says_what_it_expects(tmp_path):
    result = run_cli("diffusion_lit.report", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "no job folders" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("diffusion_lit.report", str(tmp_path / "nope"), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "is not a folder" in result.stderr
