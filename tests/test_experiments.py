"""Every experiment config (conf/experiment/*.yaml) composes and trains one debug=smoke run, so
that no study's config can rot unnoticed (the lightning-hydra-template ``experiment=glob(*)``
pattern, one test per config)."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from diffusion_lit.data.pairs import pairs_record
from diffusion_lit.utils.paths import CONFIG_DIR
from tests.conftest import REPO_ROOT, run_cli

EXPERIMENTS = sorted(path.stem for path in (REPO_ROOT / "conf" / "experiment").glob("*.yaml"))


def write_images(folder, count):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{index}.png")


def write_pairs(path, data_dir):
    """A reflow pairs file as python -m diffusion_lit.reflow writes it (runs/reflow.py), at smoke size."""
    source = {"_target_": "diffusion_lit.data.triangles.TrianglesDataModule", "data_dir": str(data_dir),
              "num_images": 40, "image_size": 16, "variant": "aliased"}  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((48, 1, 16, 16), generator=generator) * 2 - 1
    noise = torch.randn((48, 1, 16, 16), generator=generator)
    torch.save(pairs_record(images, noise, None, 0, source), path)


def test_there_are_experiments_to_check():
    assert "mnist_fast" in EXPERIMENTS


# experiment=cats trains four smoke jobs in test_cats_study_figures_from_a_smoke_sweep: not again here.
@pytest.mark.parametrize("name", [name for name in EXPERIMENTS if name != "cats"])
def test_experiment_runs_a_smoke_step(name, mnist_root, tmp_path):
    # MNIST experiments read <paths.data_dir>/MNIST/raw/ when data.root is null: point it at the test's copy.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "MNIST").symlink_to(mnist_root / "MNIST", target_is_directory=True)
    write_images(data_dir / "cats", count=24)  # the folder the cat experiment reads by default
    pairs = []
    if name.startswith("reflow"):  # the reflow experiments train on pairs drawn by diffusion_lit.reflow
        write_pairs(tmp_path / "pairs.pt", data_dir)
        pairs = [f"data.path={tmp_path / 'pairs.pt'}"]
    run_cli(
        "diffusion_lit.train", f"experiment={name}", "debug=smoke", f"paths.data_dir={data_dir}", *pairs,
        "eval.metrics=[]",  # the sample scores need a trained domain network (tested in test_evaluation_cli)
        "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "completed" and results["global_step"] > 0


@pytest.mark.parametrize(("name", "num_jobs"), [("thesis_schedules", 15), ("cats", 4), ("cs180_mnist", 2)])
def test_study_sweeps_list_their_jobs_and_every_job_composes(name, num_jobs):
    # `-m experiment=<name>` takes its job list from hydra.sweeper.params: every combination
    # must compose (e.g. each schedule preset exists), and the count is the study's.
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        params = compose("train", overrides=[f"experiment={name}"], return_hydra_config=True).hydra.sweeper.params
        choices = {key: str(value).split(",") for key, value in params.items()}
        jobs = list(itertools.product(*choices.values()))
        assert len(jobs) == num_jobs
        for values in jobs:
            overrides = [f"{key}={value}" for key, value in zip(choices, values, strict=True)]
            cfg = compose("train", overrides=[f"experiment={name}", *overrides])
            for key, value in zip(choices, values, strict=True):
                if "." in key:  # a value (a group choice like schedule=sine has no single key to read)
                    assert str(OmegaConf.select(cfg, key)) == value


def test_cats_study_figures_from_a_smoke_sweep(tmp_path):
    # The whole cats pipeline at smoke size: the 4-job multirun, then make_figures.py's report,
    # figures and results table (one row per loss x transform).
    write_images(tmp_path / "images", count=24)
    run_cli(
        "diffusion_lit.train", "-m", "experiment=cats", "debug=smoke", f"data.path={tmp_path / 'images'}",
        "eval.metrics=[]", "hydra.sweep.dir=sweep", cwd=tmp_path,
    )  # fmt: skip
    out = tmp_path / "figures"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "experiments" / "cats" / "make_figures.py"), "sweep", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("training_images.png", "samples.png", "loss.png", "results.md"):
        assert (out / name).is_file(), name
    assert (tmp_path / "sweep" / "report.html").is_file()
    rows = [line.split(" | ") for line in (out / "results.md").read_text().splitlines()[2:]]
    expected = [("l1", "edges"), ("l1", "none"), ("mse", "edges"), ("mse", "none")]
    assert sorted((row[1], row[2]) for row in rows) == expected
