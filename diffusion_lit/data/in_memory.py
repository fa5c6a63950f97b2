"""Real image datasets decoded once into uint8 tensors, cached on disk and served from memory.

Small image datasets (MNIST, CIFAR-10, cats at <= 64 px) fit in memory many times over:
60,000 MNIST digits are 47 MB as uint8. Decoding files and resizing them on every epoch
costs more CPU time than a small U-Net's training step, so :class:`InMemoryImageDataModule`
does that work once: it decodes a split, preprocesses it (resize + centre crop, greyscale,
optional edge maps; see :mod:`diffusion_lit.data.preprocess`) and saves the resulting uint8
tensor under ``<data_dir>/cache/<dataset>/``. Every later run with the same source files and
the same preprocessing loads that file in a fraction of a second. A training batch is then
one fancy-indexing of the tensor, a conversion to float in [-1, 1] and optional random
horizontal flips, done for the whole batch at once (``__getitems__``).

Subclasses say where the pixels come from (:meth:`InMemoryImageDataModule._decode`); the base
class owns caching, the train/validation split, subsets and the data loaders.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from diffusion_lit.data.base import ImageDataModule, check_int, subset_index
from diffusion_lit.data.preprocess import Transform, check_transform, preprocess
from diffusion_lit.utils.files import atomic_write

log = logging.getLogger(__name__)

# Bump when preprocessing changes the pixels, so stale caches are not reused.
_CACHE_FORMAT_VERSION = 1
# How many skipped files a warning names before it just counts the rest.
_MAX_NAMED_SKIPS = 10


class SkippedFilesWarning(UserWarning):
    """Some files in a dataset folder could not be used (not images, or corrupt)."""


@dataclass
class DecodedImages:
    """One split of a dataset as decoded pixels.

    Attributes:
        images: uint8 (N, C, H, W).
        labels: int64 (N,) class indices, or None for an unlabelled dataset.
        classes: class names, index = label (None when unlabelled).
        skipped: one line per source file that was left out, saying why.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    classes: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def select(self, index: torch.Tensor) -> DecodedImages:
        """The items at ``index`` (a 1-D index tensor), as a new contiguous DecodedImages."""
        labels = None if self.labels is None else self.labels[index].contiguous()
        return DecodedImages(self.images[index].contiguous(), labels, self.classes, self.skipped)


class InMemoryImageDataset(Dataset):
    """Items from a uint8 image tensor: float32 images in [-1, 1], with their label if any.

    Args:
        images: uint8 (N, C, H, W), held by reference.
        labels: int64 (N,) or None; with labels an item is ``(image, label)``, without it is
            the bare image (the convention of :mod:`diffusion_lit.data.base`).
        hflip: flip each returned image left-right with probability 1/2 (drawn from torch's
            global generator, which Lightning's ``seed_everything`` and the DataLoader's
            per-worker seeding make reproducible).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, hflip: bool = False) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = labels
        self.hflip = hflip

    def __len__(self) -> int:
        return self.images.shape[0]

    def _to_float(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 in [-1, 1], randomly flipped if ``hflip``."""
        images = pixels.to(torch.float32).div_(127.5).sub_(1.0)
        if self.hflip:
            flip = torch.rand(images.shape[0]) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return images

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        image = self._to_float(self.images[index].unsqueeze(0))[0]
        if self.labels is None:
            return image
        return image, self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> list:
        """A whole batch with one indexing and one conversion (torch's DataLoader calls this
        instead of ``__getitem__`` per item when it exists); the default collate stacks it."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self._to_float(self.images[index]).unbind(0)
        if self.labels is None:
            return list(images)
        return list(zip(images, self.labels[index].unbind(0), strict=True))


def warn_skipped(source: str, skipped: list[str]) -> None:
    """One warning that counts and names the files left out of ``source``."""
    if not skipped:
        return
    named = "\n  ".join(skipped[:_MAX_NAMED_SKIPS])
    more = f"\n  ... and {len(skipped) - _MAX_NAMED_SKIPS} more" if len(skipped) > _MAX_NAMED_SKIPS else ""
    warnings.warn(
        f"skipped {len(skipped)} file(s) in {source} that are not usable images:\n  {named}{more}",
        SkippedFilesWarning,
        stacklevel=2,
    )


class InMemoryImageDataModule(ImageDataModule):
    """Base for datasets of real images decoded once, cached as uint8 and served from memory.

    Subclasses set ``name`` and ``native_channels`` and implement :meth:`_ensure_source`
    (check or download the source files), :meth:`_decode` (pixels of one split) and
    :meth:`_source_fingerprint`. By default the training set is split ``"train"`` and the
    validation set split ``"test"``; datasets without official splits override
    :meth:`_train_val`.

    Args:
        data_dir: the data root; caches go to ``<data_dir>/cache/<name>/``.
        image_size: side of the square images the model sees; other sizes are resized
            (shorter side, antialiased) and centre-cropped.
        grayscale: convert colour images to one luma channel.
        transform: ``"none"`` or ``"edges"`` (Sobel edge maps, seed 002's trial).
        hflip: random horizontal flips of training images (not validation images).
        num_samples: train on a seeded random subset of this many images (None = all).
        num_val_samples: validate on a seeded random subset of this many images (None = all).
        seed: seeds the subsets (and the split, where a subclass splits one folder).
        batch_size, num_workers, pin_memory, counts: see :class:`ImageDataModule`.
    """

    name: ClassVar[str]
    native_channels: ClassVar[int]

    def __init__(
        self,
        data_dir: str,
        image_size: int,
        grayscale: bool = False,
        transform: Transform = "none",
        hflip: bool = False,
        num_samples: int | None = None,
        num_val_samples: int | None = None,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        counts: Mapping[str, Any] | None = None,
    ) -> None:
        seed = check_int("data.seed", seed, 0)
        super().__init__(batch_size, num_workers, pin_memory, counts, counts_seed=seed)
        self.data_dir = Path(data_dir)
        self._image_size = check_int("data.image_size", image_size, 4)
        self.grayscale = bool(grayscale)
        self.transform: Transform = check_transform(transform)
        self.hflip = bool(hflip)
        self.num_samples = None if num_samples is None else check_int("data.num_samples", num_samples, 1, " or null")
        self.num_val_samples = (
            None if num_val_samples is None else check_int("data.num_val_samples", num_val_samples, 1, " or null")
        )
        self.seed = seed
        self.classes: list[str] | None = None

    # -- what a subclass provides -----------------------------------------------------------

    @abc.abstractmethod
    def _ensure_source(self) -> None:
        """Make sure the source files exist (downloading them if allowed), or raise a
        UserError that names the missing files and the folder they belong in."""

    @abc.abstractmethod
    def _decode(self, split: str) -> DecodedImages:
        """Decode one split into uint8 (N, C, H, W) pixels. Folder datasets of mixed sizes
        may already resize here; the base class preprocesses whatever comes back."""

    @abc.abstractmethod
    def _source_fingerprint(self, split: str) -> Any:
        """JSON-serialisable description of the source files of ``split`` (e.g. names, sizes,
        modification times): a change invalidates the cache."""

    def _train_val(self) -> tuple[DecodedImages, DecodedImages]:
        """Training and validation pixels; by default the official train and test splits."""
        return self.load_split("train"), self.load_split("test")

    # -- shape and classes --------------------------------------------------------------------

    @property
    def num_channels(self) -> int:
        return 1 if self.grayscale else self.native_channels

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def num_classes(self) -> int | None:
        """Number of classes once ``setup()`` has run (None for unlabelled data)."""
        return None if self.classes is None else len(self.classes)

    # -- caching ------------------------------------------------------------------------------

    def _preprocessing_params(self) -> dict[str, Any]:
        return {
            "image_size": self._image_size,
            "grayscale": self.grayscale,
            "transform": self.transform,
            "format_version": _CACHE_FORMAT_VERSION,
        }

    def cache_path(self, split: str) -> Path:
        """Cache file of ``split``; its name hashes the source fingerprint and preprocessing."""
        key = json.dumps(
            {"source": self._source_fingerprint(split), **self._preprocessing_params()}, sort_keys=True, default=str
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        colour = "gray" if self.grayscale else "color"
        readable = f"{split}_{self._image_size}px_{colour}_{self.transform}"
        return self.data_dir / "cache" / self.name / f"{readable}_{digest}.pt"

    def _build_cache(self, split: str, path: Path) -> DecodedImages:
        """Decode and preprocess ``split`` and save it at ``path`` (its ``cache_path``, taken by
        the caller before decoding, so that the key describes the sources that were read)."""
        started = time.perf_counter()
        log.info("decoding %s/%s once into a uint8 tensor cache", self.name, split)
        decoded = self._decode(split)
        decoded.images = preprocess(decoded.images, self._image_size, self.grayscale, self.transform)
        try:
            with atomic_write(path) as file:
                torch.save(
                    {
                        "images": decoded.images,
                        "labels": decoded.labels,
                        "classes": decoded.classes,
                        "skipped": decoded.skipped,
                        "params": json.dumps(self._preprocessing_params()),
                    },
                    file,
                )
        except OSError as err:  # a read-only or full data root: train anyway, uncached
            warnings.warn(f"could not write the dataset cache {path} ({err}); continuing without it.", stacklevel=2)
        log.info(
            "%s/%s: %d images %s in %.1f s, cached at %s",
            self.name,
            split,
            decoded.images.shape[0],
            tuple(decoded.images.shape[1:]),
            time.perf_counter() - started,
            path,
        )
        return decoded

    def _read_cache(self, path: Path) -> DecodedImages | None:
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            decoded = DecodedImages(stored["images"], stored["labels"], stored["classes"], list(stored["skipped"]))
        except Exception as err:  # damaged or foreign file under our name: rebuild it
            warnings.warn(f"ignoring the unreadable dataset cache {path} ({err}); rebuilding it.", stacklevel=2)
            return None
        expected = (self.num_channels, self._image_size, self._image_size)
        if tuple(decoded.images.shape[1:]) != expected:
            warnings.warn(f"dataset cache {path} holds the wrong image shape; rebuilding it.", stacklevel=2)
            return None
        return decoded

    def load_split(self, split: str) -> DecodedImages:
        """Preprocessed uint8 pixels of a split: from the cache, or decoded and cached now.

        Also usable outside training (e.g. for FID reference statistics of the real data).
        """
        self._ensure_source()
        path = self.cache_path(split)
        decoded = self._read_cache(path) if path.exists() else None
        if decoded is None:
            decoded = self._build_cache(split, path)
        warn_skipped(f"{self.name} ({split})", decoded.skipped)
        return decoded

    def split_signature(self, split: str) -> dict[str, Any]:
        """The decoded caches (their names hash sources and preprocessing), the subset size and
        seed of ``split``, the hold-out share where one folder is split in two, and the photon
        rate of count data (other pixels: other cached features)."""
        signature = {
            "caches": [self.cache_path(name).name for name in self._cached_splits()],
            "subset": self.num_samples if split == "train" else self.num_val_samples,
            "seed": self.seed,
            "val_fraction": getattr(self, "val_fraction", None),
        }
        if self.photon_counts is not None:  # only then, so that the image caches' keys stay as they were
            signature["counts_lambda"] = self.photon_counts.rate
        return signature

    # -- Lightning hooks ----------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download if needed and build the caches (Lightning runs this on one process per
        node, before ``setup()`` on every process)."""
        self._ensure_source()
        for split in self._cached_splits():
            path = self.cache_path(split)
            if not path.exists():
                self._build_cache(split, path)

    def _cached_splits(self) -> tuple[str, ...]:
        return ("train", "test")

    def setup(self, stage: str | None = None) -> None:
        """Load the cached pixels and build ``train_set`` and ``val_set`` (subsets applied)."""
        if self.train_set is not None:  # Lightning calls setup once per stage; load once.
            return
        train, val = self._train_val()
        train = self._subset(train, self.num_samples, "data.num_samples", offset=0)
        val = self._subset(val, self.num_val_samples, "data.num_val_samples", offset=1)
        self.classes = train.classes
        self.train_set = InMemoryImageDataset(train.images, train.labels, hflip=self.hflip)
        self.val_set = InMemoryImageDataset(val.images, val.labels)

    def _subset(self, decoded: DecodedImages, size: int | None, option: str, offset: int) -> DecodedImages:
        available = decoded.images.shape[0]
        if size is not None and size > available:
            log.info("%s=%d exceeds the %d images available; using all of them", option, size, available)
        if size is None or size >= available:
            return decoded
        # Separate streams (offset) so that the training and validation subsets are independent.
        return decoded.select(subset_index(available, size, self.seed * 2 + offset))
