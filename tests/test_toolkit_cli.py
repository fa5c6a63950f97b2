"""The toolkit through the command line: a class-conditional v-prediction model with min-SNR
weighting and Huber loss, every sampler from the sample command, guidance, the likelihood
evaluation and the schedule plot."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from diffusion_lit.lit.build import load_checkpoint
from diffusion_lit.utils.paths import CONFIG_DIR
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory, mnist_root):
    """A smoke run of a class-conditional v-prediction VP model on MNIST (the stand-in digits if the
    real files are absent)."""
    workdir = tmp_path_factory.mktemp("conditional")
    root = mnist_root
    run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "data=mnist", f"data.root={root}", "formulation=vp",
        "data.num_val_samples=32", "model.num_classes=10", "model.prediction=v", "model.weighting=min_snr",
        "model.loss=huber", "hydra.run.dir=run", cwd=workdir,
    )  # fmt: skip
    return workdir, workdir / "run" / "checkpoints" / "last.ckpt", root


def test_conditional_checkpoint_stores_the_toolkit_choices(conditional_run):
    _, ckpt, _ = conditional_run
    config = torch.load(ckpt, map_location="cpu", weights_only=False)["diffusion_lit"]["config"]
    assert config["model"]["prediction"] == "v" and config["model"]["num_classes"] == 10
    assert config["model"]["weighting"] == "min_snr" and config["model"]["loss"] == "huber"


def test_sample_command_with_labels_and_guidance(conditional_run):
    workdir, ckpt, _ = conditional_run
    out = workdir / "dpm.png"
    run_cli(
        "diffusion_lit.sample", f"ckpt={ckpt}", "sampler=dpm_solver", "sampler.steps=4", "num_samples=4",
        "labels=[3,7]", "guidance_scale=2.0", f"out={out}", f"save_tensors={workdir / 'dpm.pt'}", cwd=workdir,
    )  # fmt: skip
    samples = torch.load(workdir / "dpm.pt")
    assert samples.shape == (4, 1, 16, 16) and torch.isfinite(samples).all() and out.is_file()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "strided", "dpm_solver", "sde", "ode"])
def test_every_sampler_config_samples_the_checkpoint(conditional_run, sampler):
    """Each conf/sampler option, composed as the sample command composes it, on the trained model."""
    _, ckpt, _ = conditional_run
    overrides = [f"sampler={sampler}", "ckpt=x"] + ([] if sampler == "strided" else ["sampler.steps=4"])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="sample", overrides=overrides)
    module = load_checkpoint(ckpt, sampler=cfg.sampler)
    labels = torch.tensor([3, 7, 3, 7])
    samples = module.sample(4, generator=torch.Generator().manual_seed(0), labels=labels, guidance_scale=2.0)
    assert samples.shape == (4, 1, 16, 16) and torch.isfinite(samples).all()
    assert module.sampler.func.__name__ == cfg.sampler._target_.rsplit(".", 1)[1]


def test_bad_labels_are_reported(conditional_run):
    workdir, ckpt, _ = conditional_run
    result = run_cli("diffusion_lit.sample", f"ckpt={ckpt}", "labels=12", "num_samples=2", cwd=workdir, check=False)
    assert result.returncode == 2 and "labels must be class indices in [0, 9]" in result.stderr


def test_evaluate_prints_the_bound_and_its_terms(conditional_run):
    workdir, ckpt, root = conditional_run
    out = workdir / "nll.json"
    result = run_cli(
        "diffusion_lit.evaluate", f"ckpt={ckpt}", "metrics=nll", "num_images=8", "batch_size=4",
        "nll.timesteps=3", f"data.root={root}", f"out={out}", cwd=workdir,
    )  # fmt: skip
    results = json.loads(out.read_text())
    assert results["nll_num_images"] == 8
    card = results["nll_protocol"]  # what the number means: which images, which bound, which checkpoint
    assert card["split"] == "val" and card["num_images"] == 8 and card["seed"] == 0
    assert card["timestep_estimator"].startswith("3 uniform random timesteps") and card["reverse_variance"] == "beta"
    assert card["checkpoint"] == str(ckpt.resolve()) and card["formulation"] == "VP"
    terms = results["prior_bpd"] + results["diffusion_bpd"] + results["decoder_bpd"]
    assert results["nll_bpd"] == pytest.approx(terms) and results["nll_bpd"] > 0
    assert "nll_bpd" in result.stdout
    bad = run_cli("diffusion_lit.evaluate", f"ckpt={ckpt}", "metrics=fidelity", cwd=workdir, check=False)
    assert bad.returncode == 2 and "metrics must be among" in bad.stderr


def test_conditional_model_on_unlabelled_data_is_refused(tmp_path):
    result = run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "model.num_classes=10", "hydra.run.dir=run",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "needs labelled data" in result.stderr


def test_plot_schedules_draws_the_chosen_schedules(tmp_path):
    out = tmp_path / "schedules.png"
    run_cli("diffusion_lit.plot_schedules", "schedule=linear,cosine", "power:power=10", "--out", str(out), cwd=tmp_path)
    assert out.stat().st_size > 10_000
    bad = run_cli("diffusion_lit.plot_schedules", "quadratic", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown schedule 'quadratic'" in bad.stderr
