"""Resuming with ckpt_path= continues a run exactly: same weights as never stopping."""

import pytest
import torch

from tests.conftest import run_cli

SMOKE = ["model=tiny", "debug=smoke"]


@pytest.mark.parametrize("lr_decay", ["cosine", "none"])
def test_resumed_run_matches_the_uninterrupted_run(tmp_path, lr_decay):
    # The run resumes from the uninterrupted run's own end-of-epoch-1 checkpoint, with the same
    # command line: a run stopped by a shorter max_epochs would be a different run under the
    # cosine decay, whose horizon is the run's length.
    options = [*SMOKE, f"lr_decay={lr_decay}", "trainer.max_epochs=2", "callbacks.checkpoint.save_top_k=-1"]
    run_cli("diffusion_lit.train", *options, "hydra.run.dir=straight", cwd=tmp_path)
    first = tmp_path / "straight" / "checkpoints" / "epoch000.ckpt"
    assert torch.load(first, weights_only=False)["global_step"] == 3
    run_cli("diffusion_lit.train", *options, f"ckpt_path={first}", "hydra.run.dir=resumed", cwd=tmp_path)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == straight["global_step"] == 6
    for key in ("state_dict", "current_model_state"):  # EMA weights and raw weights
        for name, value in straight[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=0, atol=0, msg=f"{key}.{name}")
    # The loss curve callback's history travels with the checkpoint: the resumed run plots both epochs.
    curve_state = next(value for key, value in resumed["callbacks"].items() if key.startswith("LossCurve"))
    assert [epoch for epoch, _ in curve_state["train_loss"]] == [1, 2]
    assert [epoch for epoch, _, _ in curve_state["train_range"]] == [1, 2]
