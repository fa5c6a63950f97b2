"""Diffusion on counts (issue 25) against closed forms: the blackout process's forward marginals,
its rates, the tau-leaping sampler on data whose reverse process is known exactly (one Poisson
rate; a two-rate mixture), the bound's tightness under the exact model, the photon-count data,
and the module, configs and commands that carry the formulation."""

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from diffusion_lit.data.mnist import MNISTDataModule
from diffusion_lit.data.triangles import TrianglesDataModule
from diffusion_lit.diffusion.count_mixture import PoissonMixture
from diffusion_lit.diffusion.count_samplers import tau_leaping_sample
from diffusion_lit.diffusion.counts import (
    Blackout,
    birth_rate,
    bregman,
    count_bound,
    count_max,
    counts_to_images,
    images_to_counts,
    marginal_moments,
    reborn_fraction,
    survival,
    thin,
)
from diffusion_lit.diffusion.likelihood import discretized_gaussian_nll
from diffusion_lit.lit.build import build_module
from diffusion_lit.lit.count_module import CountDiffusionModule
from diffusion_lit.metrics.counts import count_histogram, total_variation
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.paths import CONFIG_DIR
from tests.conftest import run_cli

FORMULATION = Blackout(count_rate=20)
TIMES = [0.05, 0.2, 0.5, 0.8, 0.95]


def histogram_tv(samples: torch.Tensor, mixture: PoissonMixture, maximum: int = 80) -> float:
    return total_variation(count_histogram(samples, maximum), mixture.pmf(maximum))


@pytest.mark.parametrize("s", TIMES)
def test_the_forward_marginal_has_the_closed_form_mean_and_variance_at_every_time(s):
    mixture = PoissonMixture.of([2.0, 30.0], [0.7, 0.3])
    counts = mixture.sample((40000, 1, 2, 2), torch.Generator().manual_seed(1))
    alive = thin(counts, torch.full((counts.shape[0],), s), torch.Generator().manual_seed(2))
    mean, variance = marginal_moments(survival(torch.tensor(s, dtype=torch.float64)), mixture.mean, mixture.variance)
    # The closed forms of the data (not its sample moments), so the tolerance covers both draws.
    assert float(alive.mean()) == pytest.approx(float(mean), rel=0.02, abs=0.01)
    assert float(alive.var()) == pytest.approx(float(variance), rel=0.04, abs=0.01)
    assert (alive <= counts).all() and (alive >= 0).all() and torch.equal(alive, alive.round())


def test_thinned_poisson_counts_stay_poisson_with_the_thinned_rate():
    counts = torch.poisson(torch.full((50000, 4), 12.0), generator=torch.Generator().manual_seed(0))
    alive = thin(counts, torch.full((50000,), 0.5), torch.Generator().manual_seed(1))
    assert histogram_tv(alive, PoissonMixture.of([12.0 * float(survival(torch.tensor(0.5)))], [1.0])) < 0.01


def test_the_survival_ends_and_the_rates_are_its_derivative():
    s = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    assert float(survival(torch.tensor(0.0))) == 1.0 and float(survival(torch.tensor(1.0))) < 1e-30
    step = 1e-6
    derivative = (survival(s + step) - survival(s - step)) / (2 * step)
    torch.testing.assert_close(birth_rate(s), -derivative / (1 - survival(s)))
    # Over a small step, the share reborn is the rate times the step; over the whole way, all of them.
    torch.testing.assert_close(reborn_fraction(s, s - step) / step, birth_rate(s), rtol=1e-4, atol=0)
    torch.testing.assert_close(reborn_fraction(s, torch.zeros_like(s)), torch.ones_like(s))


def test_the_bregman_divergence_is_zero_only_at_the_mean_and_its_minimiser_is_the_mean():
    y = torch.tensor([0.0, 1.0, 5.0, 5.0])
    assert torch.equal(bregman(y, torch.tensor([0.0 + 1e-30, 1.0, 5.0, 5.0])).round(decimals=6), torch.zeros(4))
    assert (bregman(y, torch.tensor([0.5, 2.0, 4.0, 7.0])) > 0).all()
    draws = torch.poisson(torch.full((20000,), 3.0), generator=torch.Generator().manual_seed(0))
    means = torch.linspace(2.0, 4.0, 201)
    risk = torch.stack([bregman(draws, m.expand_as(draws)).mean() for m in means])
    assert float(means[risk.argmin()]) == pytest.approx(float(draws.mean()), abs=0.011)


@pytest.mark.parametrize("steps", [1, 2, 10])
def test_on_one_poisson_rate_the_sampler_is_exact_at_any_step_count(steps):
    """Given x_s the dead counts are Poisson(r (1 - p)), so Poisson births of the exact mean are
    the true reverse step: Poisson(r) comes back after one step as after many."""
    mixture = PoissonMixture.of([7.0], [1.0])
    samples = tau_leaping_sample(mixture.expected_dead, FORMULATION, (20000, 1, 2, 2), torch.Generator().manual_seed(0),
                                 steps=steps)  # fmt: skip
    assert float(samples.mean()) == pytest.approx(7.0, rel=0.01)
    assert float(samples.var()) == pytest.approx(7.0, rel=0.03)
    assert histogram_tv(samples, mixture) < 0.01


def test_on_a_two_rate_mixture_the_sampler_converges_to_the_data_and_few_steps_show_their_error():
    mixture = PoissonMixture.of([1.0, 15.0], [0.6, 0.4])
    generator = torch.Generator().manual_seed(0)
    many = tau_leaping_sample(mixture.expected_dead, FORMULATION, (20000, 1, 2, 2), generator, steps=100)
    assert float(many.mean()) == pytest.approx(mixture.mean, rel=0.02)
    assert float(many.var()) == pytest.approx(mixture.variance, rel=0.04)
    assert histogram_tv(many, mixture) < 0.015
    few = tau_leaping_sample(mixture.expected_dead, FORMULATION, (20000, 1, 2, 2), generator, steps=4)
    assert histogram_tv(few, mixture) > 0.1  # the check can fail: a coarse chain is visibly off


def test_the_bound_under_the_exact_model_is_the_exact_negative_log_likelihood():
    """The continuous-time bound is tight when the model's rates are the true reverse rates, so its
    Monte-Carlo mean is -log p(n_0) of each image (here averaged over images)."""
    mixture = PoissonMixture.of([1.0, 15.0], [0.6, 0.4])
    counts = mixture.sample((3000, 1, 2, 2), torch.Generator().manual_seed(3))
    terms = count_bound(mixture.expected_dead, counts, levels=32, generator=torch.Generator().manual_seed(4))
    exact = -mixture.log_pmf(counts).flatten(1).sum(dim=1)
    error = (terms.total - exact).std() / math.sqrt(len(exact))
    assert float(terms.total.mean()) == pytest.approx(float(exact.mean()), abs=4 * float(error))
    # A wrong model pays: rates from the single-rate fit of the same mean.
    single = PoissonMixture.of([mixture.mean], [1.0])
    worse = count_bound(single.expected_dead, counts, levels=32, generator=torch.Generator().manual_seed(4))
    assert float(worse.total.mean()) > float(exact.mean()) + 10 * float(error)
    assert terms.bits_per_dim()["nll_bpd"] == pytest.approx(float(terms.total.mean()) / (4 * math.log(2)))


def test_count_grid_and_the_discretised_gaussian_on_it():
    assert [count_max(rate) for rate in (5, 20, 100)] == [19, 45, 151]
    counts = torch.arange(46.0)
    torch.testing.assert_close(images_to_counts(counts_to_images(counts, 45), 45), counts)
    # The bins of a 45-count grid cover the line once: their probabilities sum to 1.
    probabilities = (
        -discretized_gaussian_nll(counts_to_images(counts, 45), torch.tensor(0.1), torch.tensor(0.3), bins=45)
    ).exp()
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-6)
    for wrong in (0, -1, True, "5"):
        with pytest.raises(UserError, match="data.counts.lambda must be a number"):
            count_max(wrong)


def test_photon_count_triangles_are_poisson_of_the_intensity_seeded_and_scored_as_counts(isolated_data_root):
    options = dict(data_dir=str(isolated_data_root), num_images=200, image_size=16, variant="binary")
    dm = TrianglesDataModule(**options, counts={"lambda": 5})
    plain = TrianglesDataModule(**options, counts={"lambda": None})
    dm.setup("fit")
    plain.setup("fit")
    counts = dm.train_set.counts.float()
    intensity = (plain.train_set.images + 1) / 2
    assert counts.shape == intensity.shape and dm.photon_counts.count_max == 19
    assert (counts[intensity == 0] == 0).all()  # the binary background has no photons
    lit = counts[intensity == 1]
    assert float(lit.mean()) == pytest.approx(5.0, rel=0.05) and float(lit.var()) == pytest.approx(5.0, rel=0.1)
    item = dm.train_set[0]
    torch.testing.assert_close(item, counts_to_images(dm.train_set.counts[0], 19))
    again = TrianglesDataModule(**options, counts={"lambda": 5})
    again.setup("fit")
    assert torch.equal(again.train_set.counts, dm.train_set.counts)  # seeded: the same counts every run
    metrics = dm.sample_metrics(counts_to_images(dm.val_set.counts, 19))
    assert metrics["count_histogram_tv"] == 0.0 and metrics["mean_count"] == metrics["data_mean_count"]
    assert set(metrics) == {"count_histogram_tv", "mean_count", "data_mean_count", "triangle_validity"}


def compose_train(*overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["model=tiny", *overrides])


def test_a_class_conditional_count_model_trains_a_step_samples_with_guidance_and_refuses_gaussian_tasks():
    cfg = compose_train("formulation=blackout", "data.counts.lambda=5", "model.num_classes=3", "sampler.steps=3")
    module = build_module(cfg, (1, 16, 16))
    assert isinstance(module, CountDiffusionModule) and module.formulation == Blackout(count_rate=5)
    images = counts_to_images(torch.poisson(torch.full((4, 1, 16, 16), 2.0)).clamp(max=19), 19)
    loss = module.diffusion_loss(images, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and module.net.class_embed.weight.grad is not None
    calls = []
    samples = module.sample(3, generator=torch.Generator().manual_seed(0), labels=[0, 1, 2], guidance_scale=2.0,
                            callback=calls.append)  # fmt: skip
    assert samples.shape == (3, 1, 16, 16) and len(calls) == 3
    assert torch.equal(images_to_counts(samples, 19), images_to_counts(samples, 19).round())  # on the count grid
    bound = module.variational_bound(images, torch.tensor([0, 1, 2, 0]), levels=2, generator=None)
    assert torch.isfinite(bound.total).all() and (bound.total > 0).all()
    with pytest.raises(UserError, match="editing task needs a Gaussian formulation"):
        module.sample(2, edit=object())
    with pytest.raises(UserError, match="noise predictor"):
        module.eps_fn()


@pytest.mark.parametrize("formulation", ["blackout", "vp"])
def test_count_data_trains_samples_and_gets_its_bound_from_the_commands(tmp_path, formulation):
    """debug=smoke on photon-count triangles: the count process and, on the same counts, the Gaussian
    DDPM (whose bound's decoder then sits on the 45-count grid); evaluate's nll for both."""
    run_cli("diffusion_lit.train", "model=tiny", "debug=smoke", f"formulation={formulation}", "data.counts.lambda=20",
            "hydra.run.dir=run", cwd=tmp_path)  # fmt: skip
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0.0 <= results["count_histogram_tv"] <= 1.0 and 0.0 <= results["triangle_validity"] <= 1.0
    assert (tmp_path / "run" / "samples" / "forward_noising.png").is_file()
    out = tmp_path / "nll.json"
    run_cli("diffusion_lit.evaluate", f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", "metrics=[nll]",
            "num_images=8", "nll.timesteps=3", f"out={out}", cwd=tmp_path)  # fmt: skip
    nll = json.loads(out.read_text())
    assert nll["nll_num_images"] == 8 and 0 < nll["nll_bpd"] < 100
    if formulation == "blackout":
        assert nll["prior_bpd"] == 0.0 and nll["decoder_bpd"] == 0.0
    else:  # a Gaussian checkpoint refuses the count sampler
        result = run_cli("diffusion_lit.sample", f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                         "sampler=blackout", "num_samples=2", cwd=tmp_path, check=False)  # fmt: skip
        assert result.returncode == 2 and "sampler=blackout samples counts" in result.stderr


def test_photon_count_digits_keep_their_labels(mnist_standin_root, isolated_data_root):
    dm = MNISTDataModule(data_dir=str(isolated_data_root), root=str(mnist_standin_root), download=False,
                         num_samples=64, num_val_samples=32, counts={"lambda": 100})  # fmt: skip
    dm.setup("fit")
    image, label = dm.train_set[3]
    assert image.shape == (1, 28, 28) and int(label) == int(dm.train_set.labels[3])
    counts = images_to_counts(image, 151)
    assert torch.equal(counts, dm.train_set.counts[3].float()) and counts.max() <= 151
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 1, 28, 28) and labels.shape == (64,)
    # Cached reference features are keyed by the split's signature: counts are other pixels.
    assert dm.split_signature("val")["counts_lambda"] == 100.0
    plain = MNISTDataModule(data_dir=str(isolated_data_root), root=str(mnist_standin_root), download=False)
    assert "counts_lambda" not in plain.split_signature("val")
