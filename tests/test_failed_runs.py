"""A failed single run leaves a record in its folder, like a failed sweep job, and never damages
the checkpoint it wrote before failing."""

import json
import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict

from diffusion_lit.lit.build import load_checkpoint
from diffusion_lit.runs import training
from diffusion_lit.runs.jobs import run_job
from diffusion_lit.runs.training import train
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.paths import CONFIG_DIR


class PoisonAfterFirstEpoch(Callback):
    """Sets a weight to NaN when the second epoch starts, after the first epoch's checkpoint."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            with torch.no_grad():
                pl_module.net.conv_in.weight.fill_(float("nan"))


def test_a_nan_loss_is_recorded_and_the_last_good_checkpoint_stays_loadable(tmp_path):
    run_dir = tmp_path / "run"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["model=tiny", "debug=smoke", "logger=[]", f"paths.output_dir={run_dir}"]
        )
    with open_dict(cfg):
        cfg.callbacks.poison = {"_target_": f"{__name__}.PoisonAfterFirstEpoch"}
    with pytest.raises(FloatingPointError, match="lower optimizer.lr"):
        run_job(lambda: train(cfg), run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "FloatingPointError" in results["error"]
    assert "Traceback" in (run_dir / "error.txt").read_text()
    module = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # written at the end of epoch 1
    assert all(torch.isfinite(parameter).all() for parameter in module.parameters())


@pytest.mark.parametrize(
    "override, message",
    [
        ("sampler=ddim sampler.eta=2", "sampler.eta must lie in [0, 1]"),
        ("sampler.steps=0", "sampler.steps must be an integer >= 1"),
        ("sampler=dpm_solver sampler.spacing=log", "sampler.spacing must be one of"),
        ("optimizer.lr=-1", "optimizer: Invalid learning rate: -1"),
        ("optimizer.betas=[0.9,1.5]", "optimizer: Invalid beta parameter"),
        ("eval.metrics=[fid] eval.extractor=inception", "the feature network is chosen with the extractor group"),
    ],
)
def test_options_used_late_in_a_run_are_checked_before_the_data_is_loaded(tmp_path, override, message):
    """The sampler is first used by the first sample grid and the optimizer at the first step; a
    missing dataset would be the first error if they were checked later."""
    missing_mnist = ["data=mnist", f"data.root={tmp_path / 'nothing'}", "data.download=false"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["model=tiny", "debug=smoke", *missing_mnist, *override.split(), f"paths.output_dir={tmp_path}"],
        )
    with pytest.raises(UserError, match=re.escape(message)):
        train(cfg)


@pytest.mark.parametrize("folder", ["undecodable", "missing"])
def test_a_data_error_stops_the_run_before_the_model_is_built_or_timed(tmp_path, monkeypatch, folder):
    """A folder of files that are not images, or none at all: the error comes from the data, before
    the costly steps of a run (its model, the bf16 measurement of precision=auto, the trainer)."""
    images = tmp_path / folder
    if folder == "undecodable":
        images.mkdir()
        for index in range(4):
            (images / f"image{index}.png").write_bytes(b"not an image")
    built = []
    monkeypatch.setattr(training, "build_module", lambda *args, **kwargs: built.append(args))
    monkeypatch.setattr(training, "measured_bf16_speedup", lambda *args, **kwargs: built.append(args))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["data=folder", f"data.path={images}", "trainer.precision=auto", f"paths.output_dir={tmp_path}"],
        )
    with pytest.raises(UserError, match="is a usable image" if folder == "undecodable" else "does not exist"):
        train(cfg)
    assert built == []


def test_a_user_error_inside_the_run_is_recorded_too(tmp_path, capsys):
    run_dir = tmp_path / "run"
    missing_mnist = ["data=mnist", f"data.root={tmp_path / 'nothing'}", "data.download=false"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["model=tiny", "debug=smoke", *missing_mnist, f"paths.output_dir={run_dir}"]
        )
    with pytest.raises(SystemExit) as exited:  # what the train command does: one line, status 2
        run_job(lambda: train(cfg), run_dir)
    assert exited.value.code == 2
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and results["error"][:60] in capsys.readouterr().err
    assert (run_dir / "error.txt").read_text().strip() == results["error"]
