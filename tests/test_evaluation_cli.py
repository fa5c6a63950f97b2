"""Evaluation through the command line on MNIST (real files when present, a tiny IDX set
otherwise): the domain feature network, the evaluate command with its protocol card and step
sweep, and FID logged during training."""

import csv
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, run_cli


@pytest.fixture(scope="module")
def domain_network(mnist_root, tmp_path_factory, isolated_data_root):
    """The MNIST classifier, trained briefly on a subset, saved under the session data root."""
    workdir = tmp_path_factory.mktemp("features")
    result = run_cli(
        "diffusion_lit.train_features", f"data.root={mnist_root}", "data.num_samples=1024",
        "data.num_val_samples=256", "epochs=1", cwd=workdir,
    )  # fmt: skip
    assert "test accuracy" in result.stdout
    path = isolated_data_root / "features" / "mnist_classifier.pt"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def mnist_checkpoint(mnist_root, domain_network, tmp_path_factory):
    """A smoke run on MNIST with the FID callback on every epoch."""
    workdir = tmp_path_factory.mktemp("run")
    run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "data=mnist", f"data.root={mnist_root}",
        "data.num_val_samples=32", "callbacks.fid.every_n_epochs=1", "callbacks.fid.num_samples=32",
        "callbacks.fid.num_real=128", "callbacks.fid.batch_size=32", "callbacks.fid.kid=true",
        "hydra.run.dir=run", cwd=workdir,
    )  # fmt: skip
    return workdir / "run"


def test_training_scores_its_final_samples_with_the_evaluate_metrics(mnist_root, domain_network, tmp_path):
    run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "data=mnist", f"data.root={mnist_root}",
        "data.num_val_samples=32", "eval.num_samples=16", "eval.metrics=[digits,fid]", "eval.num_real=64",
        "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0.0 <= results["digits_confident_share"] <= 1.0
    assert 1 <= results["digits_classes_present"] <= 10
    assert results["fid/domain"] > 0
    card = results["metrics_protocol"]
    assert card["num_generated"] == 16 and card["num_real"] == 64 and card["extractor"] == "domain"


def test_training_with_eval_metrics_but_no_domain_network_stops_before_training(mnist_root, tmp_path):
    result = run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "data=mnist", f"data.root={mnist_root}",
        f"paths.data_dir={tmp_path / 'empty'}", "eval.metrics=[digits]", "hydra.run.dir=run", cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "diffusion_lit.train_features" in result.stderr + result.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_eval_metric_is_named(tmp_path):
    result = run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "eval.metrics=[fdi]", "hydra.run.dir=run", cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "eval.metrics must be among" in result.stderr + result.stdout


def test_fid_is_logged_during_training(mnist_checkpoint):
    rows = list(csv.DictReader((mnist_checkpoint / "csv" / "metrics.csv").open()))
    fids = [float(row["fid/domain"]) for row in rows if row.get("fid/domain")]
    assert len(fids) == 2 and all(value > 0 for value in fids)  # one per epoch
    assert any(row.get("kid/domain") for row in rows)
    hparams = (mnist_checkpoint / "csv" / "hparams.yaml").read_text()
    assert "fid_protocol" in hparams and "extractor_sha256" in hparams


def test_evaluate_writes_every_number_with_its_protocol_card(mnist_checkpoint, mnist_root, tmp_path):
    out = tmp_path / "results.json"
    run_cli(
        "diffusion_lit.evaluate", f"ckpt={mnist_checkpoint / 'checkpoints' / 'last.ckpt'}",
        "metrics=[fid,kid,precision_recall,digits,memorization]", "num_samples=40", "num_real=200",
        "sampler=ddim", "sampler.steps=5", f"data.root={mnist_root}", f"gallery={tmp_path / 'gallery.png'}",
        f"out={out}", cwd=tmp_path,
    )  # fmt: skip
    results = json.loads(out.read_text())
    for key in ("fid", "kid", "kid_std", "precision", "recall", "digits_confident_share", "nn_distance_ratio"):
        assert isinstance(results[key], float), key
    card = results["protocol"]
    assert card["extractor"] == "domain" and len(card["extractor_sha256"]) == 64
    assert card["num_real"] == 200 and card["num_generated"] == 40 and card["reference_split"] == "train"
    assert card["sampler"] == "ddim_sample" and card["sampler_options"]["steps"] == 5
    assert card["ema_weights"] is True and card["seed"] == 0 and "torchmetrics" in card["versions"]
    assert results["network_calls"] == 5
    assert (tmp_path / "gallery.png").is_file()


def test_evaluate_with_a_guide_checkpoint_autoguides_and_says_so(mnist_checkpoint, mnist_root, tmp_path):
    ckpt = mnist_checkpoint / "checkpoints" / "last.ckpt"
    common = ("metrics=fid", "num_samples=24", "num_real=200", "sampler=ddim", "sampler.steps=4")
    common += (f"data.root={mnist_root}",)
    rows = {}
    for name, guide in (("plain", ()), ("self", (f"guide_ckpt={ckpt}", "guide_scale=3"))):
        out = tmp_path / f"{name}.json"
        run_cli("diffusion_lit.evaluate", f"ckpt={ckpt}", *common, *guide, f"out={out}", cwd=tmp_path)
        rows[name] = json.loads(out.read_text())
    # Guided by itself, the model draws the same samples (eps_guide = eps), with twice the calls.
    assert rows["self"]["network_calls"] == 2 * rows["plain"]["network_calls"] == 8
    assert rows["self"]["fid"] == pytest.approx(rows["plain"]["fid"], rel=1e-4)
    assert rows["plain"]["protocol"]["autoguidance"] is None
    assert rows["self"]["protocol"]["autoguidance"] == {"guide_checkpoint": str(ckpt.resolve()), "guide_scale": 3.0}


def test_the_guide_screen_script_scores_each_guide_and_scale(mnist_checkpoint, mnist_root, domain_network):
    # experiments/mnist_fast/screen_guides.py on the smoke run, its last checkpoint as the guide.
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "experiments" / "mnist_fast" / "screen_guides.py"), str(mnist_checkpoint),
         "--guides", "last", "--scales", "1", "2", "--samples", "20", "--num-real", "200", "--root", str(mnist_root)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(row["guide"], row["scale"], row["samples"]) for row in rows] == [("last", 1.0, 20), ("last", 2.0, 20)]
    # Guided by itself the model draws the same samples at any scale.
    assert rows[0]["recognised"] == rows[1]["recognised"] and rows[0]["fid_domain"] == rows[1]["fid_domain"]


def test_digit_label_accuracy_scores_images_against_the_classes_asked_for(
    mnist_checkpoint, mnist_standin_root, each_mnist_root, isolated_data_root, domain_network, tmp_path
):
    # Test digits stand in for a conditional model's samples: with their own labels nearly all
    # are "as asked"; with every label shifted by one, nearly none are. On each MNIST source in
    # turn (the real files, the stand-in), with the classifier trained on that source.
    from diffusion_lit.lit.build import data_module_for, load_checkpoint
    from diffusion_lit.lit.sample_metrics import SampleMetrics, real_batches, sample_metrics_config

    data_dir = isolated_data_root  # domain_network: one epoch on 1,024 real digits is enough
    if each_mnist_root == mnist_standin_root:  # 1,200 stand-in digits take five epochs (0.99 accuracy)
        data_dir = tmp_path / "data"
        run_cli(
            "diffusion_lit.train_features", f"data.root={each_mnist_root}", "data.num_val_samples=256", "epochs=5",
            f"paths.data_dir={data_dir}", cwd=tmp_path,
        )  # fmt: skip
    module = load_checkpoint(mnist_checkpoint / "checkpoints" / "last.ckpt")
    datamodule = data_module_for(module, {"root": str(each_mnist_root), "data_dir": str(data_dir)})
    images, labels = next(real_batches(datamodule, "val", 32, 32))
    metrics = SampleMetrics(["digits"], module, datamodule, sample_metrics_config(64))
    assert metrics(images, labels)["digits_label_accuracy"] > 0.7  # the briefly trained classifier
    assert metrics(images, (labels + 1) % 10)["digits_label_accuracy"] < 0.2
    assert "digits_label_accuracy" not in metrics(images)  # unconditional samples: no classes asked for


def test_evaluate_sweeps_sampler_steps(mnist_checkpoint, mnist_root, tmp_path):
    out = tmp_path / "sweep.json"
    run_cli(
        "diffusion_lit.evaluate", f"ckpt={mnist_checkpoint / 'checkpoints' / 'last.ckpt'}", "metrics=fid",
        "num_samples=24", "num_real=200", "sampler=dpm_solver", "sweep_steps=[2,4]", f"data.root={mnist_root}",
        f"out={out}", cwd=tmp_path,
    )  # fmt: skip
    rows = json.loads(out.read_text())["sweep"]
    assert [row["network_calls"] for row in rows] == [2, 4] and all(row["fid"] > 0 for row in rows)
    assert (tmp_path / "sweep.png").is_file()


def test_evaluate_without_a_domain_network_says_how_to_train_it(mnist_checkpoint, mnist_root, tmp_path):
    result = run_cli(
        "diffusion_lit.evaluate", f"ckpt={mnist_checkpoint / 'checkpoints' / 'last.ckpt'}", "metrics=fid",
        f"data.root={mnist_root}", f"data.data_dir={tmp_path / 'empty_root'}", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "diffusion_lit.train_features data=mnist" in result.stderr


def test_fid_callback_under_ddp_on_two_cpu_processes(mnist_root, domain_network, tmp_path):
    """trainer=ddp_cpu: two gloo processes each generate half of the samples; the FID logged is
    computed from both halves (and the run finishes with its results on rank 0)."""
    run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", "trainer=ddp_cpu", "data=mnist", f"data.root={mnist_root}",
        "data.num_val_samples=32", "callbacks.fid.every_n_epochs=1", "callbacks.fid.num_samples=32",
        "callbacks.fid.num_real=128", "callbacks.fid.batch_size=16", "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert len([row for row in rows if row.get("fid/domain")]) == 2
    assert json.loads((run / "results.json").read_text())["global_step"] == 6
