"""Autoguidance (Karras et al. 2024): eps = eps_guide + w (eps_model - eps_guide), the guide a
weaker model of the same data and schedule; checks of the formula, the module's use of it and
its refusal of guides that cannot guide it."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from diffusion_lit.diffusion.guidance import autoguided_eps
from diffusion_lit.lit.build import build_module
from diffusion_lit.runs.training import guide_for_final_samples
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.paths import CONFIG_DIR
from tests.conftest import run_cli


def _module(*overrides: str, seed: int = 0):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["model=tiny", "data.image_size=8", "schedule.num_timesteps=50", "sampler=ddim",
                       "sampler.steps=5", *overrides],
        )  # fmt: skip
    torch.manual_seed(seed)
    module = build_module(cfg, (1, 8, 8))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # zero-initialised convs would make every untrained net output zeros
        for parameter in module.net.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


def test_autoguided_eps_extrapolates_from_the_guide_to_the_model():
    x, t = torch.randn(2, 1, 4, 4), torch.tensor([3, 7])
    model_fn, guide_fn = (lambda x, t: x + 1.0), (lambda x, t: 2.0 * x)
    torch.testing.assert_close(autoguided_eps(model_fn, guide_fn, 3.0)(x, t), 2 * x + 3.0 * (1.0 - x))
    torch.testing.assert_close(autoguided_eps(model_fn, guide_fn, 0.0)(x, t), guide_fn(x, t))
    assert autoguided_eps(model_fn, guide_fn, 1) is model_fn  # w = 1: the model alone, one network call
    with pytest.raises(UserError, match="guide_scale must be a number >= 0"):
        autoguided_eps(model_fn, guide_fn, -1.0)


def test_a_guided_module_samples_with_both_nets_and_a_copy_of_itself_changes_nothing():
    model, weaker = _module(), _module(seed=1)
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    plain = model.sample(3, noise=noise, generator=torch.Generator().manual_seed(3))

    model.set_guide(weaker, 2.5)
    assert model.guide is weaker and model.autoguidance["guide_scale"] == 2.5
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 20, 45])
    with torch.no_grad():
        own, guide = model.conditional_eps(x, t, None), weaker.conditional_eps(x, t, None)
        torch.testing.assert_close(model.eps_fn()(x, t), guide + 2.5 * (own - guide))
    guided = model.sample(3, noise=noise, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(guided, plain)

    twin = _module()  # the same weights: eps_guide = eps_model, so any w gives the model's samples
    model.set_guide(twin, 4.0)
    torch.testing.assert_close(model.sample(3, noise=noise, generator=torch.Generator().manual_seed(3)), plain)
    model.set_guide(None)
    assert model.guide is None and model.autoguidance is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["schedule.num_timesteps=60"], "another noise schedule"),
        (["schedule=sigmoid"], "another noise schedule"),
        (["model.num_classes=3"], "the guide has 3 classes, this model 0"),
    ],
)
def test_a_guide_of_another_schedule_or_classes_is_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        _module().set_guide(_module(*overrides), 2.0)


def test_a_guide_of_another_image_size_or_a_negative_scale_is_refused():
    model = _module()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=tiny", "data.image_size=16", "schedule.num_timesteps=50"])
    with pytest.raises(UserError, match=r"the guide draws \(1, 16, 16\) images"):
        model.set_guide(build_module(cfg, (1, 16, 16)), 2.0)
    with pytest.raises(UserError, match="guide_scale must be a number >= 0"):
        model.set_guide(_module(seed=1), -0.5)
    assert model.guide is None


def test_a_training_run_autoguides_its_final_samples_by_its_own_snapshot(tmp_path):
    snapshots = (
        "+callbacks.snapshots={_target_: lightning.pytorch.callbacks.ModelCheckpoint, dirpath: snaps, "
        "filename: 'step{step:04d}', auto_insert_metric_name: false, every_n_train_steps: 2, save_top_k: -1}"
    )
    run_cli(
        "diffusion_lit.train", "model=tiny", "debug=smoke", snapshots, "eval.guide=snaps/step0002.ckpt",
        "eval.guide_scale=3", "hydra.run.dir=.", cwd=tmp_path,
    )  # fmt: skip
    snapshots_written = sorted(path.name for path in (tmp_path / "snaps").iterdir())
    assert snapshots_written == ["step0002.ckpt", "step0004.ckpt", "step0006.ckpt"]
    results = json.loads((tmp_path / "results.json").read_text())
    guide = str((tmp_path / "snaps" / "step0002.ckpt").resolve())
    assert results["eval_autoguidance"] == {"guide_checkpoint": guide, "guide_scale": 3.0}
    assert 0.0 <= results["triangle_validity"] <= 1.0


def test_a_run_that_ended_before_its_guide_snapshot_samples_unguided_and_says_so(tmp_path, capsys):
    model = _module()
    cfg = OmegaConf.create({"guide": str(tmp_path / "snapshots" / "step0300.ckpt"), "guide_scale": 2.0})
    assert guide_for_final_samples(model, cfg) is None
    assert "without autoguidance" in capsys.readouterr().out and model.guide is None
    assert guide_for_final_samples(model, OmegaConf.create({"guide": None})) is None
