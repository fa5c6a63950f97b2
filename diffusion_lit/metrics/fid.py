"""FID, KID and precision/recall of generated images against cached real features.

Features come from an extractor of :mod:`diffusion_lit.metrics.features`. The distances are
torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance``, fed with
features rather than images (through :class:`PrecomputedFeatures`, an identity "network"), so
that real features are extracted once per (dataset, split, extractor, resolution, count) and
cached under ``<data root>/fid_features/``, and so that feature extraction, not the metric,
decides the batch size (the metric states are float64 sums: the result does not depend on it).

Precision and recall are those of Kynkaanniemi et al. 2019: each real (generated) feature
vector gets a ball reaching its k-th nearest real (generated) neighbour; precision is the share
of generated vectors inside some real ball, recall the share of real vectors inside some
generated ball (k = 3 as in the paper).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from diffusion_lit.utils.errors import UserError

# Chunk of rows for pairwise distances: bounds memory at chunk x N floats.
_DISTANCE_CHUNK = 1024


class PrecomputedFeatures(nn.Module):
    """The identity on (N, num_features) feature tensors, for torchmetrics' ``feature=``."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@torch.no_grad()
def extract_features(
    extractor: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 64, log_every: int = 0
) -> torch.Tensor:
    """Features (N, D) float64 of images in [-1, 1], in batches of ``batch_size``.

    ``images`` is one (N, C, H, W) tensor or an iterable of such batches (any sizes).
    ``log_every`` > 0 prints progress every that many images.
    """
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    device = next(extractor.parameters(), torch.empty(0)).device
    out, done, started = [], 0, time.perf_counter()
    for batch in batches:
        for chunk in batch.split(batch_size):
            out.append(extractor(chunk.to(device)).double().cpu())
            done += chunk.shape[0]
            if log_every and done % log_every < chunk.shape[0]:
                print(f"features: {done} images, {time.perf_counter() - started:.0f} s", flush=True)
    if not out:
        raise UserError("no images to extract features from.")
    return torch.cat(out)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (N, D) and (M, D), via torchmetrics."""
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, subset_size: int = 1000, subsets: int = 100):
    """(KID mean, KID std) between feature sets, via torchmetrics (polynomial kernel, unbiased
    MMD over ``subsets`` random subsets of ``subset_size``, capped at the smaller set)."""
    subset_size = min(subset_size, real.shape[0], fake.shape[0])
    metric = KernelInceptionDistance(
        feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=subset_size
    )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


def _kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every row to its k-th nearest other row."""
    radii = []
    for chunk in features.split(_DISTANCE_CHUNK):
        distances = torch.cdist(chunk, features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # k + 1: the row itself is at 0
    return torch.cat(radii)


def _share_inside_balls(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    inside = []
    for chunk in points.split(_DISTANCE_CHUNK):
        inside.append((torch.cdist(chunk, centres) <= radii[None, :]).any(dim=1))
    return float(torch.cat(inside).float().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls."""
    if min(real.shape[0], fake.shape[0]) <= k:
        raise UserError(f"precision/recall needs more than k={k} real and generated images.")
    real, fake = real.float(), fake.float()
    precision = _share_inside_balls(fake, real, _kth_neighbour_radii(real, k))
    recall = _share_inside_balls(real, fake, _kth_neighbour_radii(fake, k))
    return precision, recall
