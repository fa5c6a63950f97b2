"""Resuming with ckpt_path= continues a run exactly: same weights as never stopping."""

import torch

from tests.conftest import run_cli

SMOKE = ["model=tiny", "debug=smoke"]


def test_resumed_run_matches_the_uninterrupted_run(tmp_path):
    run_cli("diffusion_lit.train", *SMOKE, "trainer.max_epochs=2", "hydra.run.dir=straight", cwd=tmp_path)
    run_cli("diffusion_lit.train", *SMOKE, "trainer.max_epochs=1", "hydra.run.dir=first", cwd=tmp_path)
    run_cli(
        "diffusion_lit.train", *SMOKE, "trainer.max_epochs=2", "ckpt_path=first/checkpoints/last.ckpt",
        "hydra.run.dir=resumed", cwd=tmp_path,
    )  # fmt: skip
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
