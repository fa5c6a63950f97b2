"""Photon counts of any image dataset: ``data.counts.lambda=L`` turns each image of intensity
i = (x + 1) / 2 in [0, 1] into counts n ~ Poisson(L i) per pixel (a low-light or medical image of
L photons at full intensity), the data the count process (formulation=blackout) models.

The counts are drawn once per split from ``data.seed`` (the same counts every epoch and every
run) and held in memory as integers; drawing them is faster than reading a file, so they are not
written to disk. Items are images on the count grid, 2 n / c - 1 with c = count_max(L) (counts
above c, a 1e-6 tail at intensity 1, are clipped), so that a Gaussian model (formulation=vp)
trains on exactly the same data scaled to [-1, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from diffusion_lit.diffusion.counts import count_max, counts_to_images, images_to_counts
from diffusion_lit.metrics.counts import count_histogram, total_variation
from diffusion_lit.utils.errors import UserError

log = logging.getLogger(__name__)
_CHUNK = 1024  # images converted at a time


@dataclass(frozen=True)
class PhotonCounts:
    """``rate`` = lambda photons at intensity 1, counts drawn from ``seed``."""

    rate: float
    seed: int

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None, seed: int) -> PhotonCounts | None:
        """The ``data.counts`` section ({lambda: L} or {lambda: null}): None when off."""
        if options is None:
            return None
        unknown = sorted(set(options) - {"lambda"})
        if unknown:
            raise UserError(f"data.counts takes only lambda (photons at full intensity), got {unknown}.")
        rate = options.get("lambda")
        if rate is None:
            return None
        count_max(rate)  # checks the rate
        return cls(float(rate), seed)

    @property
    def count_max(self) -> int:
        return count_max(self.rate)

    def draw(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Counts (N, C, H, W) of images in [-1, 1], clipped to count_max, as uint8 or int16."""
        intensity = ((images.double() + 1.0) / 2.0).clamp_(0.0, 1.0)
        counts = torch.poisson(self.rate * intensity, generator=generator).clamp_(max=self.count_max)
        return counts.to(torch.uint8 if self.count_max <= 255 else torch.int16)

    def intensity_images(self, samples: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] of the intensity estimate n / lambda (clipped to 1) of count images."""
        counts = images_to_counts(samples, self.count_max)
        return (counts / self.rate).clamp_(max=1.0) * 2.0 - 1.0

    def metrics(self, samples: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        """Of count images ``samples`` (rounded to the count grid) against the data's
        ``reference`` counts: the histograms' total variation and the mean counts."""
        counts = images_to_counts(samples, self.count_max)
        return {
            "count_histogram_tv": total_variation(
                count_histogram(counts, self.count_max), count_histogram(reference, self.count_max)
            ),
            "mean_count": float(counts.mean()),
            "data_mean_count": float(reference.float().mean()),
        }


class CountImageDataset(Dataset):
    """The items of ``source`` (images in [-1, 1], or (image, label)) as count images.

    All counts are drawn at construction, one seeded generator per split (``stream``).
    """

    def __init__(self, source: Dataset, counts: PhotonCounts, stream: int) -> None:
        generator = torch.Generator().manual_seed(counts.seed * 1000 + stream)
        self.photon_counts = counts
        images, labels = [], []
        for start in range(0, len(source), _CHUNK):  # type: ignore[arg-type]
            items = _items(source, range(start, min(start + _CHUNK, len(source))))  # type: ignore[arg-type]
            labelled = isinstance(items[0], (tuple, list))
            images.append(counts.draw(torch.stack([item[0] if labelled else item for item in items]), generator))
            if labelled:
                labels.append(torch.stack([torch.as_tensor(item[1]) for item in items]))
        self.counts = torch.cat(images)
        self.labels = torch.cat(labels) if labels else None
        clipped = int((self.counts == counts.count_max).sum())
        if clipped:
            log.info("%d pixels reached count_max=%d (clipped there)", clipped, counts.count_max)

    def __len__(self) -> int:
        return self.counts.shape[0]

    def _image(self, index: Any) -> torch.Tensor:
        return counts_to_images(self.counts[index], self.photon_counts.count_max)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        image = self._image(index)
        return image if self.labels is None else (image, self.labels[index])

    def __getitems__(self, indices: Sequence[int]) -> list:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self._image(index).unbind(0)
        if self.labels is None:
            return list(images)
        return list(zip(images, self.labels[index].unbind(0), strict=True))


def _items(source: Dataset, indices: range) -> list:
    getitems = getattr(source, "__getitems__", None)
    return list(getitems(list(indices))) if getitems is not None else [source[i] for i in indices]
