"""Learning-rate schedule: linear warm-up, then constant or half a cosine down to zero."""

import csv
import math

import pytest

from diffusion_lit.lit.base import check_lr_decay, lr_factor
from diffusion_lit.utils.errors import UserError
from tests.conftest import run_cli


def test_warmup_is_linear_then_constant_without_decay():
    assert [lr_factor(step, 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(0, 0) == 1.0


def test_cosine_decay_halves_at_the_middle_and_ends_at_zero():
    warmup, total = 10, 110
    assert lr_factor(warmup, warmup, "cosine", total) == pytest.approx(1.0)
    assert lr_factor(warmup + 50, warmup, "cosine", total) == pytest.approx(0.5)
    assert lr_factor(total, warmup, "cosine", total) == pytest.approx(0.0, abs=1e-12)
    # between: 0.5 (1 + cos(pi p)) with p the share of the post-warm-up steps done
    assert lr_factor(35, warmup, "cosine", total) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_unknown_decay_is_a_clear_error():
    with pytest.raises(UserError, match="lr_decay must be one of"):
        check_lr_decay("step")


def test_training_follows_the_cosine_schedule_step_by_step(tmp_path):
    """debug=smoke: 2 epochs x 3 batches = 6 optimizer steps, 2 of warm-up; train/lr is logged per step."""
    run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "lr_decay=cosine", "optimizer.lr=0.01",
        "eval.num_samples=0", "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()))
    logged = {int(row["step"]): float(row["train/lr"]) for row in rows if row.get("train/lr")}
    assert sorted(logged) == list(range(6))
    for step, lr in logged.items():
        assert lr == pytest.approx(0.01 * lr_factor(step, 2, "cosine", 6), abs=1e-9)
