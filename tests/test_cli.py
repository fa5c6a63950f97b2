"""The command-line entry points, run as a user would (subprocesses, tiny configs)."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from diffusion_lit.diffusion.likelihood import variational_bound
from diffusion_lit.editing.tasks import sdedit_task
from diffusion_lit.lit.build import load_checkpoint
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.plot_schedules import schedule_options
from diffusion_lit.runs.reflow import draw_pairs
from diffusion_lit.runs.report import draw_run_losses, logged_curve
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.images import plt
from diffusion_lit.utils.overrides import options_of_checkpoint_group
from diffusion_lit.utils.paths import CONFIG_DIR
from tests.conftest import run_cli

SMOKE = ["model=tiny", "debug=smoke"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One smoke training run shared by the tests that need a checkpoint."""
    workdir = tmp_path_factory.mktemp("train")
    result = run_cli("diffusion_lit.train", *SMOKE, "hydra.run.dir=run", cwd=workdir)
    return workdir / "run", result


def test_train_writes_checkpoint_grids_curve_and_results(trained_run):
    run_dir, result = trained_run
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run_dir / "samples").glob("samples_epoch*.png")) == [
        "samples_epoch001.png",
        "samples_epoch002.png",
    ]
    assert (run_dir / "samples" / "forward_noising.png").is_file()
    assert list((run_dir / "samples").glob("reverse_denoising_epoch*.png"))
    assert (run_dir / "loss_curve.png").is_file()
    assert (run_dir / "samples_final.png").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_step"] == 6 and results["eval_num_samples"] == 8
    assert 0.0 <= results["triangle_validity"] <= 1.0
    assert results["checkpoint"].endswith("last.ckpt")
    assert str(run_dir) in result.stdout  # the run folder is printed


def test_loss_curve_logs_each_epochs_step_loss_range(trained_run):
    # The band of the loss figure: the smallest and largest step loss of every epoch.
    run_dir, _ = trained_run
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    epochs = [row for row in rows if row.get("train/loss_min_epoch")]
    assert len(epochs) == 2  # smoke: two epochs
    for epoch in epochs:
        in_epoch = [row for row in rows if row["epoch"] == epoch["epoch"] and row.get("train/loss_step")]
        steps = [float(row["train/loss_step"]) for row in in_epoch]
        assert len(steps) == 3  # smoke logs every step
        assert float(epoch["train/loss_min_epoch"]) == pytest.approx(min(steps))
        assert float(epoch["train/loss_max_epoch"]) == pytest.approx(max(steps))


def test_checkpoint_holds_ema_weights_and_config(trained_run):
    run_dir, _ = trained_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    stored = checkpoint["diffusion_lit"]
    assert stored["image_shape"] == [1, 16, 16]
    assert stored["config"]["schedule"]["num_timesteps"] == 50
    # WeightAveraging puts the EMA weights in state_dict and keeps the raw ones beside them.
    assert "current_model_state" in checkpoint
    ema, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(ema[key], raw[key]) for key in ema if key.startswith("net."))
    # what load_checkpoint gives for each
    for weights, expected in (("ema", ema), ("raw", raw)):
        loaded = load_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights=weights).state_dict()
        assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    with pytest.raises(UserError, match="weights"):
        load_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights="average")


def test_sample_reads_checkpoint_and_writes_grid_and_tensors(trained_run, tmp_path):
    run_dir, _ = trained_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    run_cli(
        "diffusion_lit.sample",
        f"ckpt={ckpt}",
        "num_samples=6",
        "out=grid.png",
        "save_tensors=raw.npz",
        "sampler.steps=5",
        cwd=tmp_path,
    )
    assert (tmp_path / "grid.png").is_file()
    samples = np.load(tmp_path / "raw.npz")["samples"]
    assert samples.shape == (6, 1, 16, 16) and samples.min() >= -1 and samples.max() <= 1
    assert not (tmp_path / "outputs").exists()  # sampling writes only what it was asked for


def test_evaluate_and_edit_change_the_checkpoints_sampler_without_naming_one(trained_run, tmp_path):
    """``sampler.steps=3`` without ``sampler=<name>``: the checkpoint's sampler (the default flow's
    flow_sde) with 3 steps; a bad option of it stops before any sampling."""
    ckpt = f"ckpt={trained_run[0] / 'checkpoints' / 'last.ckpt'}"
    out = tmp_path / "scores.json"
    common = ["metrics=triangles", "num_samples=4", "num_real=8", "sample_batch_size=4"]
    run_cli("diffusion_lit.evaluate", ckpt, *common, "sampler.steps=3", f"out={out}", cwd=tmp_path)
    scores = json.loads(out.read_text())
    assert scores["network_calls"] == 3 and scores["protocol"]["sampler_options"]["steps"] == 3
    assert scores["protocol"]["sampler"] == "flow_sde_sample"  # the checkpoint's, not a new one
    # edit takes the same path (its entry point rewrites the same overrides); a bad option stops it.
    assert options_of_checkpoint_group(["edit", "task=forward", "sampler.steps=0"], "sampler")[2] == "+sampler.steps=0"
    with pytest.raises(UserError, match="sampler.steps must be an integer >= 1"):
        load_checkpoint(trained_run[0] / "checkpoints" / "last.ckpt", sampler=OmegaConf.create({"steps": 0}))
    # With sampler=<name>, the group's keys exist: nothing is rewritten.
    assert options_of_checkpoint_group(["x", "sampler=ddim", "sampler.steps=5"], "sampler") == [
        "x", "sampler=ddim", "sampler.steps=5",
    ]  # fmt: skip


def test_sigma_samplers_run_on_the_default_checkpoint(trained_run):
    """The default (flow) checkpoint takes the samplers in sigma: the model is wrapped as a
    denoiser in sigma (VP checkpoints too: tests/test_sampler_accuracy.py)."""
    ckpt = trained_run[0] / "checkpoints" / "last.ckpt"
    for name in ("heun", "euler_ancestral", "dpmpp_3m_sde"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            sampler = compose(config_name="sample", overrides=["ckpt=x", f"sampler={name}", "sampler.steps=3"]).sampler
        module = load_checkpoint(ckpt, sampler=sampler)
        samples = module.sample(2, generator=torch.Generator().manual_seed(0))
        assert samples.shape == (2, 1, 16, 16) and torch.isfinite(samples).all()


def test_edm_formulation_trains_and_evaluates_with_every_kind_of_sampler(tmp_path):
    run_cli("diffusion_lit.train", *SMOKE, "formulation=edm", "hydra.run.dir=edm", cwd=tmp_path)
    ckpt = tmp_path / "edm" / "checkpoints" / "last.ckpt"
    module = load_checkpoint(ckpt)
    assert module.formulation.name == "edm" and module.schedule.sigmas[-1].item() == pytest.approx(80.0, rel=1e-4)
    assert module.schedule.num_timesteps == 50  # debug=smoke shortens the table like any schedule
    out = tmp_path / "scores.json"
    common = ["metrics=triangles", "num_samples=4", "num_real=8", "sample_batch_size=4", f"ckpt={ckpt}"]
    run_cli("diffusion_lit.evaluate", *common, "sampler=heun", "sampler.steps=3", f"out={out}", cwd=tmp_path)
    scores = json.loads(out.read_text())
    assert scores["network_calls"] == 5 and scores["protocol"]["sampler"] == "heun_sample"  # 2 * 3 - 1
    for name in ("ddim", "dpm_solver"):  # the timestep samplers run on EDM's table of levels
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            sampler = compose(config_name="sample", overrides=["ckpt=x", f"sampler={name}", "sampler.steps=4"]).sampler
        samples = load_checkpoint(ckpt, sampler=sampler).sample(2, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(samples).all()
    # An edit task (SDEdit from two levels) and the likelihood bound take the EDM model too.
    images = samples.clamp(-1, 1)
    figure = sdedit_task(module, images, [30, 15], torch.Generator().manual_seed(0), module.eps_fn())  # smoke: T=50
    assert figure is not None
    bound = variational_bound(module.eps_fn(), module.schedule, (images * 127.5).round() / 127.5, timesteps=3)
    assert all(math.isfinite(value) and value > 0 for value in bound.bits_per_dim().values())


def test_flow_trains_with_ot_evaluates_with_flow_samplers_and_reflows(tmp_path, monkeypatch):
    """formulation=flow end to end: training with OT pairs, the flow samplers and an edit task on
    its checkpoint, reflow pairs drawn (and an interrupted draw resumed) and a second flow trained
    on them from its weights."""
    run_cli("diffusion_lit.train", *SMOKE, "formulation=flow", "formulation.coupling=ot", "hydra.run.dir=flow",
            cwd=tmp_path)  # fmt: skip
    ckpt = tmp_path / "flow" / "checkpoints" / "last.ckpt"
    module = load_checkpoint(ckpt)
    assert module.formulation.name == "flow" and module.formulation.coupling == "ot" and module.schedule.continuous
    for name, calls in (("flow_heun", 5), ("flow_adaptive", None)):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            sampler = compose(config_name="sample", overrides=["ckpt=x", f"sampler={name}"]).sampler
        if calls:
            sampler.steps = 3
        samples = load_checkpoint(ckpt, sampler=sampler).sample(2, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(samples).all()
    figure = sdedit_task(module, samples, [30, 15], torch.Generator().manual_seed(0), module.eps_fn())  # smoke: T=50
    assert figure is not None
    bound = variational_bound(module.eps_fn(), module.schedule, (samples * 127.5).round() / 127.5, timesteps=3)
    assert all(math.isfinite(value) and value > 0 for value in bound.bits_per_dim().values())
    out = tmp_path / "ode_nll.json"  # the probability-flow likelihood through the evaluate command
    run_cli("diffusion_lit.evaluate", f"ckpt={ckpt}", "metrics=nll", "nll.method=ode", "nll.rtol=1e-3", "nll.atol=1e-3",
            "num_images=4", "batch_size=4", f"out={out}", cwd=tmp_path)  # fmt: skip
    ode = json.loads(out.read_text())
    assert ode["nll_num_images"] == 4 and ode["nll_velocity_evaluations"] > 0 and ode["hutchinson_std_bpd"] >= 0
    assert ode["nll_bpd"] == pytest.approx(ode["prior_bpd"] + ode["flow_bpd"] + ode["dequantization_bpd"])
    assert "Hutchinson, 2 Rademacher probes" in ode["nll_protocol"]["trace_estimator"]
    run_cli("diffusion_lit.reflow", f"ckpt={ckpt}", "num_pairs=24", "batch_size=8", "sampler.steps=2",
            "out=pairs.pt", cwd=tmp_path)  # fmt: skip
    pairs = torch.load(tmp_path / "pairs.pt", weights_only=True)
    assert pairs["images"].shape == pairs["noise"].shape == (24, 1, 16, 16)
    # Interrupted at its third batch (Ctrl-C), the draw has kept its first two in the partial file; a
    # draw of other pairs refuses that file, and the same draw resumes from it to the uninterrupted pairs.
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        overrides = [
            "num_pairs=24",
            "batch_size=8",
            "sampler.steps=2",
            "save_every=8",
            f"out={tmp_path / 'resumed.pt'}",
        ]
        cfg = compose(config_name="reflow", overrides=[f"ckpt={ckpt}", *overrides])
    sample, calls = DiffusionModule.sample, []

    def interrupted_at_third_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return sample(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(DiffusionModule, "sample", interrupted_at_third_batch)
        with pytest.raises(KeyboardInterrupt):
            draw_pairs(cfg)
    partial = tmp_path / "resumed.partial.pt"
    assert torch.equal(torch.load(partial, weights_only=True)["noise"], pairs["noise"][:16])
    assert not (tmp_path / "resumed.pt").exists()
    with pytest.raises(UserError, match="interrupted draw with other seed"):
        draw_pairs(OmegaConf.merge(cfg, {"seed": 1}))
    resumed = torch.load(draw_pairs(cfg), weights_only=True)
    assert torch.equal(resumed["noise"], pairs["noise"]) and not partial.exists()
    assert torch.allclose(resumed["images"], pairs["images"], atol=1e-5)
    run_cli("diffusion_lit.train", *SMOKE, "formulation=flow", "data=reflow_pairs", "data.path=pairs.pt",
            f"init_weights={ckpt}", "hydra.run.dir=reflow", cwd=tmp_path)  # fmt: skip
    assert json.loads((tmp_path / "reflow" / "results.json").read_text())["status"] == "completed"
    # Autoguided pairs: the ODE of the guided eps, so the same noise (seed, batch) gives other
    # images, each a function of its noise: the teacher guided by the reflow model, sampled from it.
    guide = tmp_path / "reflow" / "checkpoints" / "last.ckpt"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="reflow", overrides=[f"ckpt={ckpt}", "num_pairs=8", "batch_size=8", "sampler.steps=2",
                      f"out={tmp_path / 'guided.pt'}", f"guide_ckpt={guide}", "guide_scale=3.0"])  # fmt: skip
    guided = torch.load(draw_pairs(cfg), weights_only=True)
    assert torch.equal(guided["noise"], pairs["noise"][:8]) and not torch.allclose(
        guided["images"], pairs["images"][:8]
    )
    assert guided["autoguidance"] == {"guide_checkpoint": str(guide.resolve()), "guide_scale": 3.0}
    teacher = load_checkpoint(ckpt, sampler=cfg.sampler)
    teacher.set_guide(load_checkpoint(guide), 3.0)
    assert torch.allclose(guided["images"], teacher.sample(8, noise=guided["noise"]), atol=1e-5)


def test_sample_reports_missing_and_foreign_checkpoints(tmp_path):
    result = run_cli("diffusion_lit.sample", "ckpt=nope.ckpt", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "checkpoint not found" in result.stderr and "Traceback" not in result.stderr
    torch.save({"weights": 1}, tmp_path / "other.ckpt")
    result = run_cli("diffusion_lit.sample", "ckpt=other.ckpt", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "not a diffusion_lit checkpoint" in result.stderr


def test_cfg_job_and_help_show_the_composed_config(tmp_path):
    result = run_cli(
        "diffusion_lit.train", "schedule=cosine", "schedule.num_timesteps=200", "--cfg", "job", cwd=tmp_path
    )
    assert "cosine_betas" in result.stdout and "num_timesteps: 200" in result.stdout
    result = run_cli("diffusion_lit.train", "--help", cwd=tmp_path)
    assert "== Config groups ==" in result.stdout
    shipped = schedule_options()
    assert {"cosine", "edm", "flow", "linear", "sigmoid"} <= set(shipped)
    assert "schedule: " + ", ".join(shipped) in result.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("schedule=quadratic", "Could not find 'schedule/quadratic'"),  # Hydra's own, with the options
        ("schedule=linear schedule.beta_end=1.5", "beta_end must lie in the open interval (0, 1), got 1.5"),
    ],
)
def test_bad_config_values_stop_with_a_clear_message(tmp_path, override, message):
    """The command line's side of a wrong value (exit status, no traceback); the values themselves
    are checked in process by tests/test_config_schema.py."""
    result = run_cli("diffusion_lit.train", *SMOKE, *override.split(), "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output, output
    assert "Traceback" not in output


def test_full_fp32_precision_trains(tmp_path):
    """The default is bf16 autocast (the mixed-precision path GPUs use); full fp32 works too."""
    run_cli("diffusion_lit.train", *SMOKE, "trainer.precision=32-true", "hydra.run.dir=run", cwd=tmp_path)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["val_loss"] is not None and np.isfinite(results["val_loss"])


@pytest.mark.slow
def test_default_run_reaches_ninety_percent_valid_triangles(tmp_path):
    """The README's quality claim: `make train`'s config, 256 samples, >= 90% valid (~13 min)."""
    run_cli("diffusion_lit.train", "hydra.run.dir=run", cwd=tmp_path)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["eval_num_samples"] == 256
    assert results["triangle_validity"] >= 0.9, results


def test_drawn_step_losses_sit_at_their_fraction_of_the_epochs(trained_run):
    # report.draw_run_losses(steps=True): smoke logs 3 steps per epoch, so step k of the run is at k / 3.
    run_dir, _ = trained_run
    figure, axis = plt.subplots()
    draw_run_losses(axis, run_dir, steps=True)
    lines = {line.get_label(): line for line in axis.get_lines()}
    plt.close(figure)
    steps = lines["train (logged steps)"]
    assert list(steps.get_xdata()) == pytest.approx([k / 3 for k in range(1, 7)])
    logged = [value for *_, value in logged_curve(run_dir, "train/loss_step")]
    assert list(steps.get_ydata()) == pytest.approx(logged)
    assert list(lines["train (epoch mean)"].get_xdata()) == [1, 2]
