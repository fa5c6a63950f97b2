"""Triangle rendering, the cached TrianglesDataModule, the image base class and the validity metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffusion_lit.data.triangles as triangles_module
from diffusion_lit.data.base import ImageDataModule, TensorImageDataset
from diffusion_lit.data.triangles import (
    VARIANTS,
    TrianglesDataModule,
    _render_binary,
    render_triangles,
    sample_triangle_vertices,
)
from diffusion_lit.metrics.triangles import triangle_validity


def to_signed(images01: np.ndarray) -> torch.Tensor:
    """(N, H, W) in [0, 1] -> (N, 1, H, W) in [-1, 1], the layout the metric takes."""
    return torch.from_numpy(images01).float().unsqueeze(1) * 2 - 1


# ----------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("variant", VARIANTS)
def test_render_is_deterministic_per_seed(variant):
    a = render_triangles(40, 16, variant, supersample_size=160, seed=3)
    b = render_triangles(40, 16, variant, supersample_size=160, seed=3)
    c = render_triangles(40, 16, variant, supersample_size=160, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_first_images_do_not_depend_on_the_count():
    np.testing.assert_array_equal(render_triangles(50, 16, "binary")[:20], render_triangles(20, 16, "binary"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_render_shape_and_range(variant):
    images = render_triangles(60, 24, variant, supersample_size=240, seed=1)
    assert images.shape == (60, 24, 24) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert (images.reshape(60, -1).max(axis=1) > 0).all(), "every image shows a triangle"
    assert (images.reshape(60, -1).min(axis=1) == 0).all(), "no triangle fills the canvas"


@pytest.mark.parametrize("variant", ["aliased", "binary"])
def test_aliased_and_binary_are_two_valued(variant):
    assert set(np.unique(render_triangles(60, 32, variant)).tolist()) == {0.0, 1.0}


def test_supersampled_has_grey_edges_on_a_1_over_255_grid():
    images = render_triangles(60, 32, "supersampled", supersample_size=360)
    grey = (images > 0) & (images < 1)
    assert grey.reshape(60, -1).sum(axis=1).min() >= 4, "every triangle has anti-aliased edge pixels"
    np.testing.assert_allclose(images * 255, np.rint(images * 255), atol=1e-4)
    # Grey levels cover the range, not just one or two values.
    assert len(np.unique(images[grey])) > 50


def test_variants_draw_the_same_triangles():
    # Same seed, same vertices: the supersampled coverage thresholded at 1/2 must match the
    # pixel-centre rendering up to a few edge pixels (this catches x/y or half-pixel slips).
    binary = render_triangles(100, 32, "binary", seed=2)
    supersampled = render_triangles(100, 32, "supersampled", seed=2)
    aliased = render_triangles(100, 32, "aliased", seed=2)
    assert (binary != (supersampled > 0.5)).sum(axis=(1, 2)).mean() < 3
    # The mean coverage equals the mean triangle area (box filter preserves area).
    vertices = sample_triangle_vertices(100, 0.02, np.random.default_rng(2))
    e1, e2 = vertices[:, 1] - vertices[:, 0], vertices[:, 2] - vertices[:, 0]
    areas = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) * 32 * 32
    np.testing.assert_allclose(supersampled.sum(axis=(1, 2)), areas, rtol=0.1, atol=3)
    # PIL's fill paints boundary pixels too, so aliased triangles contain the binary ones' interior.
    assert (aliased >= binary).mean() > 0.99


def test_binary_pixel_centre_rule():
    # Right triangle (0,0), (4,0), (0,4) on a 4 x 4 canvas: centre (c+.5, r+.5) is inside iff
    # r + c <= 3; centres on the hypotenuse (r + c = 3) count as inside.
    image = _render_binary(np.array([[[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]]), 4)[0]
    rows, cols = np.indices((4, 4))
    np.testing.assert_array_equal(image, (rows + cols <= 3).astype(np.uint8))
    # Winding order must not matter.
    flipped = _render_binary(np.array([[[0.0, 0.0], [0.0, 4.0], [4.0, 0.0]]]), 4)[0]
    np.testing.assert_array_equal(image, flipped)


def test_small_triangles_are_rejected():
    vertices = sample_triangle_vertices(500, 0.05, np.random.default_rng(0))
    e1, e2 = vertices[:, 1] - vertices[:, 0], vertices[:, 2] - vertices[:, 0]
    assert (0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) >= 0.05).all()
    assert (vertices >= 0).all() and (vertices < 1).all()
    unfiltered = sample_triangle_vertices(500, 0.0, np.random.default_rng(0))
    e1, e2 = unfiltered[:, 1] - unfiltered[:, 0], unfiltered[:, 2] - unfiltered[:, 0]
    assert (0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) < 0.05).any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "smooth"}, "'smooth'"),
        ({"image_size": 3}, "image_size must be an integer >= 4, got 3"),
        ({"image_size": 32, "supersample_size": 16}, "supersample_size must be >= data.image_size=32"),
        ({"min_area_fraction": 0.5}, "min_area_fraction must lie in [0, 0.5)"),
        ({"min_area_fraction": 0.45}, "too large"),
    ],
)
def test_render_argument_errors(kwargs, message):
    with pytest.raises(ValueError) as err:
        render_triangles(10, **kwargs)
    assert message in str(err.value)


# ----------------------------------------------------------------------------- data module


def small_module(tmp_path, **overrides) -> TrianglesDataModule:
    kwargs = dict(num_images=120, image_size=16, supersample_size=128, batch_size=32)
    kwargs.update(overrides)
    return TrianglesDataModule(str(tmp_path), **kwargs)


def test_datamodule_batches_and_split(tmp_path):
    dm = small_module(tmp_path, val_fraction=0.25)
    assert dm.num_channels == 1 and dm.image_size == 16
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 90 and len(dm.val_set) == 30
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, torch.Tensor) and batch.shape == (32, 1, 16, 16) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1 and batch.min() == -1 and batch.max() == 1
    # 90 training images in batches of 32: the ragged batch of 26 is dropped for training only.
    assert [b.shape[0] for b in dm.train_dataloader()] == [32, 32]
    assert [b.shape[0] for b in dm.val_dataloader()] == [30]
    # Train and validation together are exactly the rendered images, rescaled to [-1, 1].
    expected = to_signed(render_triangles(120, 16, "supersampled", supersample_size=128))
    together = torch.cat([dm.train_set.images, dm.val_set.images])
    assert together.shape == expected.shape
    torch.testing.assert_close(together.sum(dim=(1, 2, 3)).sort().values, expected.sum(dim=(1, 2, 3)).sort().values)
    # Validation is fixed-order; train is shuffled.
    first_val = [b for b in dm.val_dataloader()][0]
    torch.testing.assert_close(first_val, dm.val_set.images)


def test_split_is_deterministic_per_seed(tmp_path):
    a, b, c = small_module(tmp_path), small_module(tmp_path), small_module(tmp_path, seed=1)
    for dm in (a, b, c):
        dm.prepare_data()
        dm.setup()
    torch.testing.assert_close(a.val_set.images, b.val_set.images)
    assert not torch.equal(a.val_set.images, c.val_set.images)


def test_num_samples_trains_on_a_seeded_subset_of_the_training_split(tmp_path):
    full, subset, again = (
        small_module(tmp_path),
        small_module(tmp_path, num_samples=20),
        small_module(tmp_path, num_samples=20),
    )
    for dm in (full, subset, again):
        dm.prepare_data()
        dm.setup()
    assert len(subset.train_set) == 20 and torch.equal(subset.val_set.images, full.val_set.images)
    assert torch.equal(subset.train_set.images, again.train_set.images)
    # Every subset image is one of the full training images.
    sums = set(full.train_set.images.sum(dim=(1, 2, 3)).tolist())
    assert set(subset.train_set.images.sum(dim=(1, 2, 3)).tolist()) <= sums


def test_small_set_keeps_its_only_batch(tmp_path):
    dm = small_module(tmp_path, num_images=10, batch_size=64, val_fraction=0.1)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) == 9 and len(dm.val_set) == 1
    assert [b.shape[0] for b in dm.train_dataloader()] == [9]


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    dm = small_module(tmp_path)
    dm.prepare_data()
    assert dm.cache_path.parent == tmp_path / "triangles"
    assert dm.cache_path.is_file()
    assert list(dm.cache_path.parent.iterdir()) == [dm.cache_path], "no temporary files left behind"
    dm.setup()

    def must_not_render(*args, **kwargs):
        raise AssertionError("render_triangles called although the cache exists")

    monkeypatch.setattr(triangles_module, "render_triangles", must_not_render)
    again = small_module(tmp_path)
    again.prepare_data()
    again.setup()
    torch.testing.assert_close(again.train_set.images, dm.train_set.images)
    # Any generation parameter gives another file name, hence a fresh render.
    names = {
        small_module(tmp_path, **change).cache_path.name
        for change in (
            {},
            {"num_images": 121},
            {"image_size": 20},
            {"variant": "binary"},
            {"supersample_size": 256},
            {"min_area_fraction": 0.03},
            {"seed": 1},
        )
    }
    assert len(names) == 7
    with pytest.raises(AssertionError, match="cache exists"):
        small_module(tmp_path, seed=1).prepare_data()


def test_setup_without_prepare_data_generates(tmp_path):
    dm = small_module(tmp_path, variant="binary")
    dm.setup()
    assert dm.cache_path.is_file()
    assert set(torch.unique(dm.train_set.images).tolist()) == {-1.0, 1.0}


def test_interrupted_write_leaves_no_cache(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(triangles_module.np, "savez_compressed", crash)
    dm = small_module(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert not dm.cache_path.exists()
    assert list((tmp_path / "triangles").iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "jagged"}, "data.variant must be one of ['aliased', 'supersampled', 'binary'], got 'jagged'"),
        ({"image_size": 2}, "data.image_size must be an integer >= 4"),
        ({"num_images": 1}, "data.num_images must be an integer >= 2"),
        ({"val_fraction": 1.0}, "data.val_fraction must lie in [0, 1), got 1.0"),
        ({"val_fraction": -0.1}, "data.val_fraction must lie in [0, 1), got -0.1"),
        ({"image_size": 64, "supersample_size": 32}, "data.supersample_size must be >= data.image_size=64"),
        ({"batch_size": 0}, "data.batch_size must be an integer >= 1, got 0"),
        ({"num_workers": -1}, "data.num_workers must be an integer >= 0"),
    ],
)
def test_datamodule_argument_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as err:
        small_module(tmp_path, **kwargs)
    assert message in str(err.value)


def test_base_class_contract(tmp_path):
    with pytest.raises(TypeError):
        ImageDataModule()  # abstract: num_channels and image_size are missing
    dm = small_module(tmp_path, num_workers=1)
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()
    dm.setup()
    assert dm.train_dataloader().persistent_workers and dm.val_dataloader().dataset is dm.val_set
    assert isinstance(dm.train_set, TensorImageDataset) and dm.train_set[0].shape == (1, 16, 16)


def test_sample_metrics_reports_validity(tmp_path):
    dm = small_module(tmp_path, image_size=32, supersample_size=256)
    dm.setup()
    assert dm.sample_metrics(dm.val_set.images) == {"triangle_validity": 1.0}
    assert dm.sample_metrics(torch.randn(8, 1, 32, 32)) == {"triangle_validity": 0.0}


# ----------------------------------------------------------------------------- validity metric


@pytest.mark.parametrize("variant", VARIANTS)
def test_real_triangles_are_valid(variant):
    result = triangle_validity(to_signed(render_triangles(200, 32, variant, seed=11)))
    assert result.rate >= 0.95
    assert result.valid.shape == (200,) and result.valid.dtype == torch.bool
    assert result.iou.shape == (200,) and result.rate == pytest.approx(result.valid.float().mean().item())
    assert (result.iou[result.valid] >= 0.9).all()


def _disc(size: int, radius: float) -> np.ndarray:
    rows, cols = np.indices((size, size)) + 0.5
    return (((rows - size / 2) ** 2 + (cols - size / 2) ** 2) <= radius**2).astype(np.float32)


def _non_triangles(size: int = 32) -> dict[str, np.ndarray]:
    blank = np.zeros((size, size), np.float32)
    square = blank.copy()
    square[8:20, 10:22] = 1
    # Two triangles in opposite quadrants, far apart.
    two = blank.copy()
    small = render_triangles(2, size // 2, "binary", seed=3)
    two[: size // 2, : size // 2] = small[0]
    two[size // 2 :, size // 2 :] = small[1]
    rows, cols = np.indices((size, size)) + 0.5
    diamond = (np.abs(rows - size / 2) + np.abs(cols - size / 2) <= size / 3).astype(np.float32)
    return {"blank": blank, "square": square, "two triangles": two, "disc": _disc(size, 8), "diamond": diamond}


@pytest.mark.parametrize("name", ["blank", "square", "two triangles", "disc", "diamond"])
def test_non_triangles_are_invalid(name):
    image = _non_triangles()[name]
    result = triangle_validity(to_signed(image[None]))
    assert not result.valid[0] and result.rate == 0.0
    if name == "two triangles":
        assert result.num_regions[0] == 2
    if name == "blank":
        assert result.num_regions[0] == 0 and result.iou[0] == 0


def test_a_triangle_cut_in_two_is_one_region_only_across_small_gaps():
    # A big right triangle with rows 24-26 erased: the shape still fits the triangle (IoU > 0.9)
    # but its tip is 3 background rows away, so the connectivity rule alone decides.
    image = _render_binary(np.array([[[0.0, 0.0], [32.0, 0.0], [0.0, 32.0]]]), 32)[0].astype(np.float32)
    whole = triangle_validity(to_signed(image[None]))
    assert whole.valid[0] and whole.iou[0] == 1.0
    image[24:27] = 0
    cut = triangle_validity(to_signed(image[None]))
    assert cut.iou[0] > 0.9 and cut.num_regions[0] == 2 and not cut.valid[0]
    bridged = triangle_validity(to_signed(image[None]), max_gap=3)
    assert bridged.num_regions[0] == 1 and bridged.valid[0]


def test_noise_is_invalid():
    noise = torch.randn(64, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert triangle_validity(noise).rate == 0.0


def test_threshold_and_strictness_matter():
    images = to_signed(render_triangles(50, 32, "supersampled", seed=2))
    assert triangle_validity(images).rate > 0.9
    # Everything above -1 is foreground: the whole canvas, not a triangle.
    assert triangle_validity(images + 0.001, threshold=-1.0).rate == 0.0
    # Plain IoU and strict 8-connectivity fail some real triangles the tolerant rule accepts.
    strict = triangle_validity(to_signed(render_triangles(200, 32, "binary", seed=2)), max_gap=0, boundary_tolerance=0)
    assert strict.rate < 0.95


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: triangle_validity(torch.zeros(4, 3, 8, 8)), "(N, 1, H, W), got (4, 3, 8, 8)"),
        (lambda: triangle_validity(torch.zeros(0, 1, 8, 8)), "empty"),
        (lambda: triangle_validity(torch.zeros(1, 1, 8, 8), min_iou=1.5), "min_iou must lie in [0, 1], got 1.5"),
        (lambda: triangle_validity(torch.zeros(1, 1, 8, 8), threshold=1.0), "threshold must lie in [-1, 1)"),
        (lambda: triangle_validity(torch.zeros(1, 1, 8, 8), max_gap=-1), "max_gap must be an integer >= 0"),
    ],
)
def test_metric_argument_errors(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)
