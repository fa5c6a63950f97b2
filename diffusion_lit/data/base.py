"""Shared base class for the image data modules.

Conventions every subclass follows, so that models and samplers never need to know which
dataset they are trained on:

* ``setup()`` assigns ``self.train_set`` and ``self.val_set`` (``torch.utils.data.Dataset``).
* Each item is either an image tensor of shape (C, H, W), float32 in [-1, 1] (unlabelled
  datasets such as the triangles), or a tuple ``(image, label)`` (labelled datasets); a batch
  from the default collate is then (B, C, H, W) or ``[(B, C, H, W), (B,)]``.
* ``num_channels`` and ``image_size`` (H = W) are known before ``setup()`` so that a model can
  be built from the data module's configuration alone.
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Iterator, Mapping
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from diffusion_lit.data.counts import CountImageDataset, PhotonCounts
from diffusion_lit.utils.errors import UserError, check_choice


def check_int(name: str, value: Any, minimum: int, hint: str = "") -> int:
    """Return ``value`` as an int, or raise UserError naming ``name`` if it is not an integer
    >= ``minimum`` (bools are rejected: ``True`` is almost always a misplaced flag)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}{hint}, got {value!r}.")
    return int(value)


def check_fraction(name: str, value: Any, hint: str = "") -> float:
    """Return ``value`` as a float in [0, 1), or raise UserError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise UserError(f"{name} must lie in [0, 1){hint}, got {value!r}.")
    return float(value)


def split_indices(num_items: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(num_items)`` into (train, validation) indices.

    About ``val_fraction`` of the items go to validation: at least one when the fraction is > 0,
    and never all of them (one item is always kept for training). Each index list is sorted,
    so that the items keep their original order within a split.
    """
    if num_items < 2:
        raise UserError(f"need at least 2 images to split into training and validation sets, got {num_items}.")
    num_val = int(round(num_items * val_fraction))
    if val_fraction > 0:
        num_val = max(num_val, 1)
    num_val = min(num_val, num_items - 1)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    return order[num_val:].sort().values, order[:num_val].sort().values


def subset_index(num_items: int, size: int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random subset of ``size`` of ``range(num_items)`` (all of them
    if ``size >= num_items``)."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    return order[:size].sort().values


Split = Literal["train", "val"]
SPLITS: tuple[str, ...] = get_args(Split)


def split_set(datamodule: ImageDataModule, split: Split) -> Dataset:
    """The ``train_set`` or ``val_set`` of a data module, preparing and setting it up first."""
    check_choice("split", split, SPLITS)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule.train_set if split == "train" else datamodule.val_set


def first_batches(datamodule: ImageDataModule, split: Split, count: int, batch_size: int) -> Iterator[Any]:
    """Batches, in order, of the first ``count`` items of a split (fewer if the split is smaller)."""
    dataset = split_set(datamodule, split)
    subset = Subset(dataset, range(min(count, len(dataset))))  # type: ignore[arg-type]
    yield from DataLoader(subset, batch_size=batch_size, shuffle=False)


class TensorImageDataset(Dataset):
    """A dataset over an in-memory tensor of images that yields the bare image tensor.

    Unlike ``torch.utils.data.TensorDataset`` it returns ``images[i]`` rather than the
    one-tuple ``(images[i],)``, so that an unlabelled batch is a plain (B, C, H, W) tensor.

    Args:
        images: tensor of shape (N, C, H, W); it is held by reference, not copied.
    """

    def __init__(self, images: torch.Tensor) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got shape {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


class ImageDataModule(pl.LightningDataModule, abc.ABC):
    """Base for image data modules: argument checks and the train/val data loaders.

    Subclasses implement ``setup()`` (assigning ``self.train_set`` and ``self.val_set``) and,
    where something must be downloaded or generated once, ``prepare_data()``.

    Args:
        batch_size: samples per batch, >= 1.
        num_workers: data-loading worker processes, >= 0 (0 loads in the main process, which is
            fastest for small in-memory datasets because it avoids inter-process copies).
        pin_memory: page-lock batches for faster host-to-GPU copies.
        counts: ``{lambda: L}`` turns every image into photon counts, Poisson(L intensity) per
            pixel (:mod:`diffusion_lit.data.counts`), drawn from ``counts_seed``; ``{lambda: null}``
            or None keeps the images.
        counts_seed: the seed of the counts (the subclasses pass ``data.seed``).
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        counts: Mapping[str, Any] | None = None,
        counts_seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = check_int("data.batch_size", batch_size, 1)
        self.num_workers = check_int("data.num_workers", num_workers, 0, " (0 = load in the main process)")
        self.pin_memory = bool(pin_memory)
        self.photon_counts = PhotonCounts.from_config(counts, counts_seed)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    # With data.counts, every split a subclass's setup() assigns becomes its photon counts here.
    @property
    def train_set(self) -> Dataset | None:
        return self._train_set

    @train_set.setter
    def train_set(self, dataset: Dataset | None) -> None:
        self._train_set = self._as_counts(dataset, stream=0)

    @property
    def val_set(self) -> Dataset | None:
        return self._val_set

    @val_set.setter
    def val_set(self, dataset: Dataset | None) -> None:
        self._val_set = self._as_counts(dataset, stream=1)

    def _as_counts(self, dataset: Dataset | None, stream: int) -> Dataset | None:
        if dataset is None or self.photon_counts is None or isinstance(dataset, CountImageDataset):
            return dataset
        return CountImageDataset(dataset, self.photon_counts, stream)

    @property
    @abc.abstractmethod
    def num_channels(self) -> int:
        """Channels C of every image (1 for greyscale, 3 for RGB)."""

    @property
    @abc.abstractmethod
    def image_size(self) -> int:
        """Height = width of every image in pixels."""

    def _loader(self, dataset: Dataset | None, name: str, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__}.{name} is not set: call prepare_data() and setup() before asking "
                "for a data loader (the Lightning Trainer does this itself)."
            )
        # Dropping the ragged last batch keeps every training step the same size (stable
        # loss scale, no recompilation); but a set no larger than one batch must keep it,
        # or an epoch would contain no step at all.
        drop_last = shuffle and len(dataset) > self.batch_size  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        if self.num_workers > 0:
            # Re-spawning workers every epoch costs seconds per epoch on small datasets.
            kwargs["persistent_workers"] = True
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of the training set; drops the last partial batch when there is
        more than one batch's worth of data."""
        return self._loader(self.train_set, "train_set", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Batches of the validation set in a fixed order (all samples kept)."""
        return self._loader(self.val_set, "val_set", shuffle=False)

    def reference_data(self) -> ImageDataModule:
        """The data these images stand for, which samples are compared with (FID's real reference,
        held-out images): the module itself, except for images drawn by a model (reflow pairs)."""
        return self

    def split_signature(self, split: str) -> dict[str, Any]:
        """What determines the images of ``split`` ("train" or "val"), JSON-serialisable: a key
        for caches derived from them (e.g. FID reference features). Default: the saved
        hyperparameters without the loader settings."""
        loader_keys = {"batch_size", "num_workers", "pin_memory"}
        return {k: str(v) for k, v in sorted(dict(self.hparams).items()) if k not in loader_keys}

    def sample_metrics(self, samples: torch.Tensor) -> dict[str, float]:
        """Quality metrics of generated samples (N, C, H, W), nominally in [-1, 1], by name: the
        dataset's own (:meth:`image_metrics`); for count data, those of the intensity estimate
        n / lambda, and the count histogram's distance to the validation counts'."""
        if self.photon_counts is None:
            return self.image_metrics(samples)
        if self.val_set is None:
            self.prepare_data()
            self.setup("fit")
        reference = self.val_set.counts  # type: ignore[union-attr]
        return {
            **self.photon_counts.metrics(samples, reference),
            **self.image_metrics(self.photon_counts.intensity_images(samples)),
        }

    def image_metrics(self, samples: torch.Tensor) -> dict[str, float]:
        """Dataset-specific quality metrics of images in [-1, 1] (none by default)."""
        return {}
