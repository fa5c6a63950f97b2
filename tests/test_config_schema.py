"""The config schema (runs/config_schema.py, utils/config_types.py) and the checks before a run
(runs/config_checks.py): every shipped config passes, every wrong input of the catalogue fails
with its one-line message before any data is loaded, and random overrides never escape as a
traceback."""

import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from diffusion_lit.runs.config_checks import check_formulation_sampler, check_train_config
from diffusion_lit.runs.config_schema import EditConfig, EvaluateConfig, SampleConfig, check_config_types
from diffusion_lit.runs.jobs import run_job
from diffusion_lit.runs.training import train
from diffusion_lit.utils.config_types import check_instantiated, locate
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.overrides import null_groups_removed
from diffusion_lit.utils.paths import CONFIG_DIR

GROUPS = ["schedule", "formulation", "data", "model", "sampler", "trainer", "logger", "callbacks", "extractor",
          "paths", "hydra", "experiment", "hparams_search", "debug"]  # fmt: skip
OPTIONS = {group: sorted(path.stem for path in (Path(CONFIG_DIR) / group).glob("*.yaml")) for group in GROUPS}


def compose_train(*overrides: str, output_dir="/tmp/unused"):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def test_every_shipped_config_passes_the_schema():
    """Every option of every group (experiments also under debug=smoke, which they combine with in
    the tests), and every command's defaults and edit task; one Hydra initialisation for all."""
    train_cases = [[f"{group}={option}"] for group, options in OPTIONS.items() for option in options]
    train_cases += [[f"experiment={option}", "debug=smoke"] for option in OPTIONS["experiment"]]
    tasks = sorted(path.stem for path in (Path(CONFIG_DIR) / "task").glob("*.yaml"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for overrides in train_cases:
            cfg = compose(config_name="train", overrides=["paths.output_dir=/tmp/unused", *overrides])
            assert "_target_" in cfg.schedule and "_target_" in cfg.model.net and "_target_" in cfg.data
            assert cfg.optimizer._partial_ and cfg.sampler._partial_
            check_config_types(cfg)
        for name, schema in (("sample", SampleConfig), ("evaluate", EvaluateConfig)):
            check_config_types(compose(config_name=name, overrides=["ckpt=x.ckpt"]), schema)
        for task in tasks:
            check_config_types(compose(config_name="edit", overrides=["ckpt=x.ckpt", f"task={task}"]), EditConfig)


# Wrong inputs of a training run that the checks catch before the data is loaded: overrides and a
# part of the message. The full catalogue, with the time each error takes from the command line,
# is experiments/wrong_inputs (docs/wrong_inputs.md).
WRONG_TRAINING_INPUTS = [
    ("trainer.max_epochs=abc", "trainer.max_epochs='abc' is not valid: Value 'abc' of type 'str' could not be"),
    ("+sampler.etaa=0.5", "sampler.etaa is not an option of flow_sde_sample. Did you mean sampler.eta?"),
    ("+trainer.max_epoch=3", "Did you mean trainer.max_epochs?"),
    ("+foo=1", "foo is not an option of this command's config"),
    ("model.num_classes=two", "model.num_classes='two' is not valid"),
    ("model.prediction=noise", "model.prediction must be one of ['eps', 'x0', 'v']"),
    ("lr_decay=linear", "lr_decay must be one of ['none', 'cosine']"),
    ("model.loss=mae", "model.loss must be one of ['mse', 'l1', 'huber', 'pseudo_huber']"),
    ("model.sample_precision=16-mixed", "model.sample_precision must be one of ['32-true', 'bf16-mixed', 'auto']"),
    ("seed=abc", "seed='abc' is not valid"),
    ("data.batch_size=1.5", "data.batch_size=1.5 is not valid"),
    ("model.net.base_channels=wide", "model.net.base_channels='wide' is not valid"),
    ("eval.num_samples=many", "eval.num_samples='many' is not valid"),
    ("sampler=ddpm_fast sampler.spacing=log", "sampler.spacing must be one of ['time', 'logsnr', 'karras']"),
    ("sampler=ddim sampler.eta=2", "sampler.eta must lie in [0, 1]"),
    ("sampler.steps=0", "sampler.steps must be an integer >= 1"),
    ("schedule.num_timesteps=0", "schedule.num_timesteps must be an integer >= 1"),
    ("formulation=vp schedule.max_beta=1.5", "max_beta must lie in (0, 1), got 1.5"),
    ("data.image_size=15", "image_size=15"),
    ("optimizer.lr=-1", "optimizer: Invalid learning rate: -1"),
    ("trainer.devices=0", "trainer: `Trainer(devices=0)` value is not a valid input"),
    ("trainer.precision=fp8", "trainer: Precision 'fp8' is invalid"),
    ("trainer.accelerator=tpu", "trainer:"),
    ("model.guidance_scale=-1", "model.guidance_scale must be >= 0"),
    ("model.cond_drop_prob=1.5", "model.cond_drop_prob must lie in [0, 1)"),
    ("lr_warmup_steps=-1", "lr_warmup_steps must be >= 0"),
    ("callbacks.ema.decay=2", "callbacks.ema.decay must lie in [0, 1)"),
    ("data.val_fraction=0", "data.val_fraction=0 leaves no validation images"),
    ("eval.guide_scale=-2", "eval.guide_scale must be >= 0"),
    ("eval.num_samples=-1", "eval.num_samples must be >= 0"),
    ("eval.metrics=[fidd]", "fidd"),
    ("eval.reference_split=test", "eval.reference_split must be one of ['train', 'val']"),
    ("callbacks.fid.reference_split=test", "callbacks.fid.reference_split must be one of ['train', 'val']"),
    ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path=/nonexistent/last.ckpt is not a file"),
    ("data.image_size=7", "image_size"),
    ("model.net.channel_mults=[1,0]", "channel_mults"),
    ("float32_matmul_precision=low", "float32_matmul_precision must be one of"),
    ("~sampler", "a training run needs sampler"),
    ("formulation=blackout", "formulation=blackout trains on counts: set data.counts.lambda"),
    ("formulation=blackout data.counts.lambda=20 sampler=ddim", "samples counts: use sampler=blackout"),
    ("sampler=blackout", "sampler=blackout samples counts: it needs formulation=blackout"),
    ("data.counts.lambda=-1", "data.counts.lambda must be a number in (0, 1e6]"),
    ("+data.counts.rate=5", "data.counts takes only lambda"),
    ("formulation=blackout data.counts.lambda=5 formulation.weighting=snr", "formulation.weighting must be one of"),
    ("callbacks.fid.every_n_epochs=1 paths.data_dir={empty}", "python -m diffusion_lit.train_features"),
]  # fmt: skip


@pytest.mark.parametrize("overrides, message", WRONG_TRAINING_INPUTS, ids=[case[0] for case in WRONG_TRAINING_INPUTS])
def test_a_wrong_training_input_stops_the_run_before_its_data_is_loaded(tmp_path, overrides, message):
    overrides = overrides.format(empty=tmp_path / "empty")
    cfg = compose_train("model=tiny", "debug=smoke", *overrides.split(), output_dir=tmp_path / "run")
    with pytest.raises(UserError) as raised:
        check_train_config(cfg)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)  # one line


def test_a_checkpoint_to_resume_from_must_be_one(tmp_path):
    corrupt = tmp_path / "last.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="could not be read as a checkpoint"):
        check_train_config(
            compose_train("model=tiny", "debug=smoke", f"ckpt_path={corrupt}", output_dir=tmp_path / "run")
        )


def test_the_run_folder_must_take_files(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match="is not writable .* hydra.run.dir"):
        check_train_config(compose_train("model=tiny", "debug=smoke", output_dir=blocker / "run"))


def test_group_null_is_hydras_remove_override():
    argv = ["train.py", "logger=null", "sampler.steps=null", "+seed=null", "schedule=cosine", "nothing=null"]
    assert null_groups_removed(argv, CONFIG_DIR) == [
        "train.py", "~logger", "sampler.steps=null", "+seed=null", "schedule=cosine", "nothing=null"
    ]  # fmt: skip


def test_a_targets_options_are_its_signature():
    node = OmegaConf.create({"_target_": "diffusion_lit.diffusion.samplers.ddim_sample", "_partial_": True, "steps": 5})
    check_instantiated(node, "sampler")
    node.eta = "half"
    with pytest.raises(UserError, match=r"sampler.eta='half' is not valid: .* expected float \(ddim_sample\)"):
        check_instantiated(node, "sampler")
    node.eta, node.spacing = 0.5, "evenly"
    with pytest.raises(UserError, match=r"sampler.spacing must be one of \['time', 'logsnr', 'karras'\]"):
        check_instantiated(node, "sampler")
    node._target_ = "diffusion_lit.diffusion.samplers.no_such_sampler"
    with pytest.raises(UserError, match="cannot be imported"):
        check_instantiated(node, "sampler")
    assert locate("diffusion_lit.models.unet.UNet").__name__ == "UNet"


def _random_override(rng: random.Random) -> list[str]:
    """A group option, a key of the composed default set to a value of another type or out of its
    range, or both."""
    picks = []
    if rng.random() < 0.7:
        group = rng.choice(["schedule", "formulation", "sampler", "model", "logger"])
        # (logger=wandb names its run by ${hydra:job.name}: only a real command line resolves it)
        options = [option for option in OPTIONS[group] if option != "wandb"]
        picks.append(f"{group}={rng.choice(options)}")
    key = rng.choice(["sampler.steps", "schedule.num_timesteps", "data.batch_size", "optimizer.lr", "model.prediction",
                      "eval.num_samples", "trainer.max_epochs", "model.guidance_scale", "data.val_fraction",
                      "callbacks.ema.decay", "lr_warmup_steps", "model.net.dropout"])  # fmt: skip
    value = rng.choice(["0", "-1", "2", "0.5", "abc", "null", "[1,2]", "1e9", "true"])
    picks.append(f"{key}={value}")
    return picks


def _checked_or_refused(overrides: list[str], output_dir: Path):
    """The composed config if it passes every pre-run check; None if Hydra refuses the override
    (its own message, e.g. a list for a scalar) or a check fails with a one-line UserError."""
    try:
        cfg = compose_train("model=tiny", "debug=smoke", "logger=[]", *overrides, output_dir=output_dir)
    except Exception as error:
        assert type(error).__module__.startswith(("hydra", "omegaconf")), (overrides, error)
        return None
    try:
        check_train_config(cfg)
    except UserError as error:
        assert "\n" not in str(error), overrides
        return None
    return cfg


@pytest.mark.parametrize("seed", range(12))
def test_random_overrides_pass_the_checks_or_fail_with_a_user_error(tmp_path, seed):
    """The fuzz test's fast half: composition and every pre-run check; never another exception."""
    rng = random.Random(seed)
    for _ in range(4):
        _checked_or_refused(_random_override(rng), tmp_path / "run")


def _train_what_passes(tmp_path: Path, seeds: range, runs: int) -> int:
    """Train (debug=smoke) the first ``runs`` random configs that pass the checks: each finishes or
    stops with a UserError, or with the divergence error that names its fix (an absurd lr)."""
    trained = 0
    for seed in seeds:
        overrides = _random_override(random.Random(seed))
        cfg = _checked_or_refused(overrides, tmp_path / f"run{seed}")
        if cfg is None:
            continue
        try:
            run_job(lambda cfg=cfg: train(cfg), cfg.paths.output_dir)
        except SystemExit as error:  # a UserError after the checks: printed as one line, status 2
            pytest.fail(f"{overrides} passed the checks but failed later (exit {error.code})")
        except FloatingPointError as error:
            assert "lower optimizer.lr" in str(error), overrides
        trained += 1
        if trained == runs:
            break
    return trained


def test_random_overrides_that_pass_the_checks_train(tmp_path):
    assert _train_what_passes(tmp_path, range(100, 200), runs=2) == 2


@pytest.mark.slow
def test_many_random_overrides_that_pass_the_checks_train(tmp_path):
    assert _train_what_passes(tmp_path, range(1000, 1400), runs=25) == 25


def test_the_default_flow_says_what_a_vp_schedule_given_alone_does(capsys):
    """formulation=flow is the default: `schedule=cosine` alone does not make a DDPM, and the run says
    so (only then: the flow's own table and formulation=vp are silent)."""
    for overrides, noted in ((["schedule=cosine"], True), ([], False), (["formulation=vp", "schedule=cosine"], False)):
        check_formulation_sampler(compose_train("model=tiny", *overrides))
        out = capsys.readouterr().out
        assert ("For a DDPM on this schedule add formulation=vp" in out) == noted, (overrides, out)
