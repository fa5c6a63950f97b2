"""Scale paths on the CPU: DDP with two gloo processes (alone and inside a multirun), bf16
autocast, sweeps with Optuna and a failing job, and the cluster launcher config."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from diffusion_lit.lit.build import build_module
from diffusion_lit.runs.training import optimized_value
from diffusion_lit.utils.paths import CONFIG_DIR
from tests.conftest import run_cli

SMOKE = ["model=tiny", "debug=smoke"]
LOGGED_KEYS = ("train/loss_step", "train/loss_epoch", "val/loss", "samples/triangle_validity")


def logged_steps(run_dir: Path) -> dict[str, list[int]]:
    """For each key, the steps at which the CSV logger recorded it (one entry per write)."""
    with (run_dir / "csv" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    return {key: [int(row["step"]) for row in rows if row.get(key)] for key in LOGGED_KEYS}


def files_of(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts}


def test_ddp_on_two_cpu_processes_writes_and_logs_like_one_process_also_inside_a_multirun(tmp_path):
    """trainer=ddp_cpu, each job of a two-job sweep: the files and logged steps of a one-process
    run (rank 1 adds only its own log, nothing is logged twice). Lightning re-runs the command line
    for ranks > 0: in a sweep that must be the job, not the sweep, and the second job must not
    reuse the first job's process group or environment."""
    run_cli("diffusion_lit.train", *SMOKE, "hydra.run.dir=single", cwd=tmp_path)
    run_cli(
        "diffusion_lit.train", "-m", "schedule=linear,cosine", *SMOKE, "trainer=ddp_cpu", "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )  # fmt: skip
    single = tmp_path / "single"
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == 2
    assert not list((tmp_path / "sweep").glob("*/*/results.json"))  # no rank started a sweep of its own
    for ddp in jobs:
        assert files_of(ddp) - files_of(single) == {"train_ddp_process_1.log"}
        assert files_of(single) <= files_of(ddp)
        assert logged_steps(ddp) == logged_steps(single)
        results = json.loads((ddp / "results.json").read_text())
        assert results["status"] == "completed" and results["global_step"] == 6 and results["eval_num_samples"] == 8
        # Each process had a batch of 16: the global throughput counts both.
        assert results["last_logged"]["train/images_per_sec"] > 0
    assert logged_steps(single)["train/loss_step"] == [0, 1, 2, 3, 4, 5]


def _smoke_module():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*SMOKE, "sampler=ddpm"])
    torch.manual_seed(0)  # the same initial weights whatever ran before (the bf16 error bound depends on them)
    module = build_module(cfg, (1, 16, 16))
    for parameter in module.net.parameters():  # the final conv starts at zero: give it weights
        parameter.data.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0)))
    return module.eval()


def test_bf16_autocast_keeps_the_schedule_maths_in_float32():
    """trainer.precision=bf16-mixed: the net runs in bf16, but q_sample, the loss and every
    sampler update stay float32 (autocast only lowers matmuls and convolutions)."""
    module = _smoke_module()
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net_dtype = module.net(x0, torch.zeros(4, dtype=torch.long)).dtype
        loss = module.diffusion_loss(x0, generator=torch.Generator().manual_seed(0))
        steps = []
        samples = module.sample(4, generator=torch.Generator().manual_seed(0), callback=steps.append)
    assert net_dtype == torch.bfloat16  # autocast is really on
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(buffer.dtype == torch.float32 for buffer in module.schedule.buffers())
    assert samples.dtype == torch.float32 and torch.isfinite(samples).all()
    assert steps and all(step.x.dtype == torch.float32 for step in steps)
    reference = module.sample(4, generator=torch.Generator().manual_seed(0))
    error = (samples - reference).abs().max()
    assert 0 < error < 0.1, error  # bf16 net outputs in a float32 chain: close to fp32, not equal


def test_bf16_mixed_training_has_finite_losses(tmp_path):
    run_cli("diffusion_lit.train", *SMOKE, "trainer.precision=bf16-mixed", "hydra.run.dir=run", cwd=tmp_path)
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as file:
        losses = [float(row["train/loss_step"]) for row in csv.DictReader(file) if row["train/loss_step"]]
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)


def test_optuna_search_runs_two_trials_and_writes_its_result(tmp_path):
    run_cli(
        "diffusion_lit.train", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *SMOKE, "eval.num_samples=0",
        "hydra.sweep.dir=optuna", cwd=tmp_path,
    )  # fmt: skip
    sweep = tmp_path / "optuna"
    trials = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(trials) == 2
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in best and "optimizer.lr" in best
    values = [json.loads((trial / "results.json").read_text())["val_loss"] for trial in trials]
    assert f"best_value: {min(values)}" in best  # the sweeper minimised what train returned
    assert (sweep / "report.html").is_file()


def test_a_failing_job_is_reported_and_the_sweep_goes_on(tmp_path):
    result = run_cli(
        "diffusion_lit.train", "-m", "optimizer.lr=-1,1e-3", *SMOKE, "eval.num_samples=0", "hydra.sweep.dir=sweep",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 1  # the sweep says that a job failed
    failed, completed = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    failure = json.loads((failed / "results.json").read_text())
    # A user error (the optimizer is checked before training): its message, no traceback.
    assert failure["status"] == "failed" and failure["error"].startswith("optimizer: Invalid learning rate: -1")
    assert (failed / "error.txt").read_text().strip() == failure["error"]
    assert json.loads((completed / "results.json").read_text())["status"] == "completed"
    assert "job 0 failed: optimizer: Invalid learning rate: -1" in result.stderr
    assert "1 of 2 jobs completed" in result.stdout
    assert "failed: optimizer: Invalid learning rate: -1" in (tmp_path / "sweep" / "report.md").read_text()


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm"])
def test_cluster_launcher_configs_compose(launcher):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"hydra/launcher={launcher}", "trainer=multinode", "hparams_search=optuna"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.params
    assert cfg.trainer.strategy == "ddp"
    if launcher == "slurm":
        assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == 1


def test_optimized_metric_must_be_a_result():
    results = {"val_loss": 0.5, "triangle_validity": 0.9, "run_dir": "x"}
    assert optimized_value(results, "triangle_validity") == 0.9
    assert optimized_value(results, None) is None
    with pytest.raises(Exception, match="available: triangle_validity, val_loss"):
        optimized_value(results, "fid/domain")


def test_job_folder_names_are_one_short_path_component_usable_in_an_override():
    from diffusion_lit.runs.jobs import MAX_JOB_NAME, job_folder_name

    name = job_folder_name("data.root=../shared/datasets,logger=[csv,wandb],optimizer.lr=-1")
    assert name == "data.root-.._shared_datasets+logger-_csv+wandb_+optimizer.lr--1"
    long_a = ",".join(f"option{i}.value={i}" for i in range(40))
    long_b = long_a.replace("option39.value=39", "option39.value=40")
    name_a, name_b = job_folder_name(long_a), job_folder_name(long_b)
    assert len(name_a) == MAX_JOB_NAME and "/" not in name_a
    assert name_a != name_b  # the hash of the whole keeps jobs that differ only at the end apart


def test_a_checkpoint_in_a_sweep_job_folder_can_be_passed_unquoted(tmp_path):
    from diffusion_lit.runs.jobs import job_folder_name

    folder = tmp_path / f"0_{job_folder_name('schedule=linear,optimizer.lr=0.001,logger=[csv,wandb]')}"
    result = run_cli("diffusion_lit.sample", f"ckpt={folder}/checkpoints/last.ckpt", cwd=tmp_path, check=False)
    assert "checkpoint not found" in result.stdout + result.stderr  # parsed as a path, not an override error
