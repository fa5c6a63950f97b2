"""MNIST handwritten digits (LeCun, Cortes and Burges): 28 x 28 greyscale, 10 classes.

Read with ``torchvision.datasets.MNIST`` from ``<root>/MNIST/raw/``; downloaded there when
online. Training set: the official 60,000 training images; validation: the 10,000 test
images (``data.num_val_samples`` of them). Items are ``(image, label)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import MNIST

from diffusion_lit.data.download import fetch_if_missing
from diffusion_lit.data.in_memory import DecodedImages, InMemoryImageDataModule
from diffusion_lit.utils.errors import UserError

# The IDX files torchvision reads, uncompressed (the .gz originals are unpacked on download).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNISTDataModule(InMemoryImageDataModule):
    """MNIST digits as (image, label) batches, images (1, n, n) in [-1, 1].

    Args:
        data_dir: the data root (caches; also the default ``root``).
        root: folder that contains (or will receive) ``MNIST/raw/``; None = ``data_dir``.
        download: fetch the files when they are missing (torchvision's mirrors).
        image_size: 28 is the native size; other sizes are resized (antialiased bilinear).
        grayscale: accepted for a uniform interface; MNIST is greyscale already.
        options: ``transform``, ``num_samples``, ``num_val_samples``, ``seed``, ``batch_size``,
            ``num_workers``, ``pin_memory``: see :class:`InMemoryImageDataModule`.
    """

    name = "mnist"
    native_channels = 1

    def __init__(
        self,
        data_dir: str,
        root: str | None = None,
        download: bool = True,
        image_size: int = 28,
        grayscale: bool = True,
        hflip: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(data_dir, image_size=image_size, grayscale=grayscale, hflip=hflip, **options)
        self.root = Path(root if root is not None else data_dir)
        self.download = bool(download)

    @property
    def raw_dir(self) -> Path:
        return self.root / "MNIST" / "raw"

    def _missing_files(self) -> list[str]:
        return [name for names in MNIST_FILES.values() for name in names if not (self.raw_dir / name).is_file()]

    def _ensure_source(self) -> None:
        fetch = lambda: MNIST(str(self.root), train=True, download=True)  # noqa: E731
        reason = fetch_if_missing(self._missing_files, self.download, fetch)
        if reason is None:
            return
        missing = self._missing_files()
        raise UserError(
            f"MNIST is not in {self.raw_dir} and could not be downloaded ({reason}).\n"
            f"Put these files into {self.raw_dir}/ (uncompressed IDX files, or the .gz originals next to "
            f"each other with data.download=true, which unpacks them without network access):\n  "
            + "\n  ".join(missing)
            + "\nor point data.root at a folder that contains MNIST/raw/."
        )

    def _source_fingerprint(self, split: str) -> Any:
        files = [self.raw_dir / name for name in MNIST_FILES[split]]
        return [[str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] for path in files]

    def _decode(self, split: str) -> DecodedImages:
        try:
            dataset = MNIST(str(self.root), train=split == "train", download=False)
        except Exception as err:  # e.g. a truncated or foreign file under an IDX name
            raise UserError(f"could not read MNIST from {self.raw_dir} ({err}); replace the damaged files.") from None
        images = dataset.data.unsqueeze(1).contiguous()  # (N, 28, 28) -> (N, 1, 28, 28) uint8
        labels = dataset.targets.to(torch.int64)
        return DecodedImages(images, labels, classes=[str(digit) for digit in range(10)])
