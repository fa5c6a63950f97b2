"""A run stopped by SIGTERM mid-epoch saves where it stands, says so, and resumes to the same
number of optimizer steps as a run that was never stopped."""

import json
import os
import signal

import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict

from diffusion_lit.runs.jobs import run_job
from diffusion_lit.runs.training import PREEMPTED_EXIT_STATUS, train
from diffusion_lit.utils.paths import CONFIG_DIR

EPOCHS, BATCHES = 3, 3  # debug=smoke: 3 batches per epoch


class SigtermAtStep(Callback):
    """Sends this process SIGTERM after optimizer step ``step``, as a scheduler would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def smoke_config(run_dir, *overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            config_name="train",
            overrides=["debug=smoke", "logger=[]", f"trainer.max_epochs={EPOCHS}", "eval.num_samples=0",
                       f"paths.output_dir={run_dir}", *overrides],
        )  # fmt: skip


def test_sigterm_mid_epoch_saves_and_the_resumed_run_takes_the_remaining_steps(tmp_path):
    run_dir = tmp_path / "run"
    cfg = smoke_config(run_dir)
    with open_dict(cfg):
        cfg.callbacks.sigterm = {"_target_": f"{__name__}.SigtermAtStep", "step": BATCHES + 1}  # in epoch 2
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            run_job(lambda: train(cfg), run_dir)
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert stopped.value.code == PREEMPTED_EXIT_STATUS
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "preempted" and results["global_step"] == BATCHES + 1
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == BATCHES + 1

    resumed = smoke_config(run_dir, "ckpt_path=last")  # the same command line, plus ckpt_path=last
    run_job(lambda: train(resumed), run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["global_step"] == EPOCHS * BATCHES  # what a run never stopped takes
