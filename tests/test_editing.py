"""Editing tasks (seed 004 part A) and the single-step denoiser (part B.1): the guidance
compositions against plain CFG, the sampler hooks, inpainting's exactness, the blur baseline
against torchvision, inputs, and every task's command on tiny trained models."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from diffusion_lit.diffusion.guidance import anagram_eps, guided_eps, hybrid_eps
from diffusion_lit.diffusion.samplers import Edit, ddim_sample, ddpm_sample, dpm_solver_sample
from diffusion_lit.diffusion.schedules import NoiseSchedule, linear_betas
from diffusion_lit.editing import tasks
from diffusion_lit.editing.inputs import load_image_file, make_mask
from diffusion_lit.lit.build import build_module, load_checkpoint
from diffusion_lit.runs.editing import edit
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.paths import CONFIG_DIR
from tests.conftest import run_cli
from tests.test_guidance import _randomise_zero_initialised, toy_eps

NULL = 3


def _module(num_classes: int = 3):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["model=tiny", "data.image_size=8", f"model.num_classes={num_classes}",
                       "schedule.num_timesteps=50", "sampler=ddpm", "sampler.steps=10"],
        )  # fmt: skip
    module = build_module(cfg, (1, 8, 8))
    _randomise_zero_initialised(module.net)
    return module.eval()


def test_anagram_of_identical_conditions_in_the_same_view_is_plain_cfg():
    x, t = torch.randn(4, 1, 6, 6), torch.tensor([1, 2, 3, 4])
    labels = torch.tensor([0, 1, 2, 1])
    plain = guided_eps(toy_eps, labels, 2.5, NULL)(x, t)
    same = anagram_eps(toy_eps, [(labels, "identity"), (labels, "identity")], 2.5, NULL)(x, t)
    torch.testing.assert_close(same, plain)
    torch.testing.assert_close(anagram_eps(toy_eps, [(labels, "identity")], 2.5, NULL)(x, t), plain)


def test_anagram_averages_each_view_transformed_back():
    x, t = torch.randn(2, 1, 6, 6), torch.tensor([3, 3])
    first, second = torch.tensor([0, 0]), torch.tensor([2, 2])
    combined = anagram_eps(toy_eps, [(first, "identity"), (second, "rot180")], 2.0, NULL)(x, t)
    rotate = lambda image: image.flip(-2, -1)  # noqa: E731
    expected = 0.5 * guided_eps(toy_eps, first, 2.0, NULL)(x, t) + 0.5 * rotate(
        guided_eps(toy_eps, second, 2.0, NULL)(rotate(x), t)
    )
    torch.testing.assert_close(combined, expected)
    # Seen through the second view, the anagram of (c1, c2) is the anagram of (c2, c1).
    swapped = anagram_eps(toy_eps, [(second, "identity"), (first, "rot180")], 2.0, NULL)(rotate(x), t)
    torch.testing.assert_close(rotate(combined), swapped)
    with pytest.raises(UserError, match="view must be one of"):
        anagram_eps(toy_eps, [(first, "sideways")], 2.0, NULL)


def test_hybrid_of_identical_conditions_is_plain_cfg_and_splits_frequencies():
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([5, 9])
    labels = torch.tensor([1, 2])
    lowpass = lambda e: gaussian_blur(e, [5, 5], [1.5, 1.5])  # noqa: E731
    plain = guided_eps(toy_eps, labels, 3.0, NULL)(x, t)
    torch.testing.assert_close(hybrid_eps(toy_eps, labels, labels, 3.0, NULL, lowpass)(x, t), plain)
    low, high = torch.tensor([0, 0]), torch.tensor([2, 2])
    mixed = hybrid_eps(toy_eps, low, high, 3.0, NULL, lowpass)(x, t)
    eps_low, eps_high = (guided_eps(toy_eps, c, 3.0, NULL)(x, t) for c in (low, high))
    torch.testing.assert_close(mixed, lowpass(eps_low) + eps_high - lowpass(eps_high))


def test_start_timestep_runs_only_the_steps_below_it():
    schedule = NoiseSchedule(linear_betas(100))
    seen = []
    ddpm_sample(lambda x, t: 0 * x, schedule, torch.zeros(2, 1, 4, 4), steps=20, callback=lambda s: seen.append(s.t),
                edit=Edit(t_start=40))  # fmt: skip
    full = []
    ddpm_sample(lambda x, t: 0 * x, schedule, torch.zeros(2, 1, 4, 4), steps=20, callback=lambda s: full.append(s.t))
    assert seen == [40] + [t for t in full if t < 40]
    with pytest.raises(UserError, match="start timestep must be an integer in"):
        ddim_sample(lambda x, t: x, schedule, torch.zeros(1, 1, 2, 2), edit=Edit(t_start=100))


def test_resampling_repeats_every_step_but_the_last():
    schedule = NoiseSchedule(linear_betas(100))
    calls = []

    def model_fn(x, t):
        calls.append(int(t[0]))
        return 0 * x

    ddpm_sample(model_fn, schedule, torch.zeros(1, 1, 4, 4), steps=5, generator=torch.Generator().manual_seed(0),
                edit=Edit(resample=3))  # fmt: skip
    assert len(calls) == 4 * 3 + 1  # 4 steps to a noisier-than-clean level, 3 times each, then the last once
    with pytest.raises(UserError, match="single-step sampler"):
        dpm_solver_sample(model_fn, schedule, torch.zeros(1, 1, 2, 2), edit=Edit(resample=2))


@pytest.mark.parametrize("resample", [1, 2])
def test_inpainting_keeps_the_unmasked_pixels_exactly(resample):
    module = _module()
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    mask = make_mask("center", (1, 8, 8))
    model_fn = tasks.editing_eps(module, None, None)
    figure = tasks.inpaint_task(module, images, mask, 2, resample, torch.Generator().manual_seed(0), model_fn)
    inpainted = torch.stack([row[3] for row in figure.rows])
    keep = mask[0] == 0
    assert torch.equal(inpainted[:, keep], images[:, keep])
    assert figure.metrics["max_change_outside_mask"] == 0.0
    assert not torch.allclose(inpainted[:, ~keep], images[:, ~keep])  # the masked centre was generated


def test_blur_baseline_is_torchvisions_gaussian_blur_of_the_noisy_image():
    module = _module()
    images = torch.rand(1, 1, 8, 8) * 2 - 1
    figure = tasks.blur_baseline_task(
        module, images, [10, 30], 3, 1.2, torch.Generator().manual_seed(7), tasks.editing_eps(module, None, None)
    )
    noisy = [tasks.noised(module, images, t, g) for g in [torch.Generator().manual_seed(7)] for t in (10, 30)]
    rows = dict(zip(figure.row_labels, figure.rows, strict=True))
    for column, x_t in enumerate(noisy, start=1):
        torch.testing.assert_close(rows["noisy"][column], x_t[0], rtol=0, atol=0)
        torch.testing.assert_close(rows["blurred"][column], gaussian_blur(x_t, [3, 3], [1.2, 1.2])[0], rtol=0, atol=0)
    assert set(figure.metrics) == {"mse_blur_t10", "mse_one_step_t10", "mse_blur_t30", "mse_one_step_t30"}


def test_image_files_and_masks_are_converted_to_the_model(tmp_path):
    drawing = Image.new("L", (64, 48), 255)  # a dark stroke on white, as people draw digits
    for x in range(20, 44):
        for y in range(20, 28):
            drawing.putpixel((x, y), 0)
    drawing.save(tmp_path / "drawing.png")
    image = load_image_file(tmp_path / "drawing.png", (1, 28, 28))
    assert image.shape == (1, 1, 28, 28) and image.min() >= -1 and image.max() <= 1
    assert image[0, 0, 0, 0] == -1.0 and image.max() > 0  # inverted: light stroke on black, like MNIST
    rgb = load_image_file(tmp_path / "drawing.png", (3, 16, 16))
    assert rgb.shape == (1, 3, 16, 16)
    Image.new("L", (10, 10), 0).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="no white pixels"):
        make_mask(str(tmp_path / "empty.png"), (1, 8, 8))
    assert make_mask("top", (1, 8, 8))[0, 0, :4].all() and not make_mask("top", (1, 8, 8))[0, 0, 4:].any()
    with pytest.raises(UserError, match="mask must be one of"):
        make_mask("middle", (1, 8, 8))
    with pytest.raises(UserError, match="image file not found"):
        load_image_file(tmp_path / "nope.png", (1, 8, 8))


@pytest.fixture(scope="module")
def conditional_mnist(mnist_root, tmp_path_factory):
    """A class-conditional tiny model on MNIST (smoke budget) and a single-step denoiser."""
    workdir = tmp_path_factory.mktemp("edit_models")
    common = ["model=tiny", "debug=smoke", f"data.root={mnist_root}", "data.num_val_samples=32"]
    run_cli("diffusion_lit.train", *common, "data=mnist", "model.num_classes=10", "hydra.run.dir=cond", cwd=workdir)
    run_cli("diffusion_lit.train", *common, "experiment=single_step_denoiser", "hydra.run.dir=den", cwd=workdir)
    return workdir, mnist_root


TASK_OPTIONS = {
    "forward": [],
    "blur_baseline": [],
    "one_step": ["task.timesteps=[5,25,45]"],
    "iterative": ["task.stride=5"],
    "sdedit": ["labels=3", "guidance_scale=2"],
    "inpaint": ["mask=bottom", "task.num_variants=2"],
    "anagram": ["task.num_samples=2"],
    "hybrid": ["task.num_samples=2", "task.kernel_size=3", "task.sigma=1"],
}


@pytest.mark.parametrize("task", sorted(TASK_OPTIONS))
def test_every_task_writes_its_figure(conditional_mnist, task, tmp_path):
    workdir, root = conditional_mnist
    overrides = [f"task={task}", f"ckpt={workdir / 'cond' / 'checkpoints' / 'last.ckpt'}", f"out={tmp_path / 'f.png'}",
                 f"data.root={root}", "indices=[0,1]", *TASK_OPTIONS[task]]  # fmt: skip
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="edit", overrides=overrides)
    out = edit(cfg)
    with Image.open(out) as figure:
        assert figure.width > 100 and figure.height > 100


def test_denoiser_trains_and_is_drawn_at_other_noise_levels(conditional_mnist, tmp_path):
    workdir, root = conditional_mnist
    assert (workdir / "den" / "denoising_sigmas.png").is_file()  # written at the end of training
    result = run_cli(
        "diffusion_lit.edit", "task=denoiser", f"ckpt={workdir / 'den' / 'checkpoints' / 'last.ckpt'}",
        "task.sigmas=[0,0.5,1]", f"data.root={root}", "out=den.png", cwd=tmp_path,
    )  # fmt: skip
    assert "mse_sigma0.5" in result.stdout and (tmp_path / "den.png").is_file()
    # A denoiser cannot sample, and diffusion tasks need a diffusion model: clear messages.
    with pytest.raises(UserError, match="holds a single-step denoiser, which does not sample"):
        load_checkpoint(workdir / "den" / "checkpoints" / "last.ckpt")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="edit", overrides=["task=anagram", f"ckpt={workdir / 'den' / 'checkpoints' / 'last.ckpt'}"]
        )
    with pytest.raises(UserError, match="task=denoiser needs a single-step denoiser checkpoint"):
        edit(cfg)
