"""CIFAR-10 (Krizhevsky 2009): 32 x 32 colour images, 10 classes.

Read with ``torchvision.datasets.CIFAR10`` from ``<root>/cifar-10-batches-py/`` (the python
pickle batches); downloaded and unpacked there when online. Training set: the official 50,000
training images; validation: the 10,000 test images (``data.num_val_samples`` of them).
Items are ``(image, label)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import CIFAR10

from diffusion_lit.data.download import fetch_if_missing
from diffusion_lit.data.in_memory import DecodedImages, InMemoryImageDataModule
from diffusion_lit.utils.errors import UserError


class _UnverifiedCIFAR10(CIFAR10):
    """torchvision's CIFAR-10 reader with its MD5 checks switched off (``check_integrity``
    accepts any existing file when the checksum is None): for sets written in the CIFAR-10
    format that are not the published files, such as the tiny ones of the tests."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


def cifar10_files() -> list[str]:
    """Names of the files torchvision reads inside ``cifar-10-batches-py/``."""
    return [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]


class CIFAR10DataModule(InMemoryImageDataModule):
    """CIFAR-10 as (image, label) batches, images (3, n, n) in [-1, 1] (1 channel if greyscale).

    Args:
        data_dir: the data root (caches; also the default ``root``).
        root: folder that contains (or will receive) ``cifar-10-batches-py/``; None = ``data_dir``.
        download: fetch and unpack the archive when the batches are missing.
        verify_checksums: check the files against the published MD5 sums while decoding
            (switch off only for sets you wrote yourself in the CIFAR-10 format).
        image_size: 32 is the native size.
        hflip: random horizontal flips (on by default in conf/data/cifar10.yaml, the usual
            augmentation for CIFAR-10 diffusion models, Ho et al. 2020).
        options: ``grayscale``, ``transform``, ``num_samples``, ``num_val_samples``, ``seed``,
            ``batch_size``, ``num_workers``, ``pin_memory``: see :class:`InMemoryImageDataModule`.
    """

    name = "cifar10"
    native_channels = 3

    def __init__(
        self,
        data_dir: str,
        root: str | None = None,
        download: bool = True,
        verify_checksums: bool = True,
        image_size: int = 32,
        hflip: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(data_dir, image_size=image_size, hflip=hflip, **options)
        self.root = Path(root if root is not None else data_dir)
        self.download = bool(download)
        self.verify_checksums = bool(verify_checksums)

    @property
    def batches_dir(self) -> Path:
        return self.root / CIFAR10.base_folder

    def _missing_files(self) -> list[str]:
        return [name for name in cifar10_files() if not (self.batches_dir / name).is_file()]

    def _ensure_source(self) -> None:
        fetch = lambda: CIFAR10(str(self.root), train=True, download=True)  # noqa: E731
        reason = fetch_if_missing(self._missing_files, self.download, fetch)
        if reason is None:
            return
        raise UserError(
            f"CIFAR-10 is not in {self.batches_dir} and could not be downloaded ({reason}).\n"
            f"Download {CIFAR10.url} on a machine with network access and either put it, unopened, at "
            f"{self.root / CIFAR10.filename} (with data.download=true it is checked and unpacked without network "
            f"access) or unpack it there so that {self.batches_dir}/ holds:\n  " + "\n  ".join(self._missing_files())
        )

    def _source_fingerprint(self, split: str) -> Any:
        names = [name for name, _ in (CIFAR10.train_list if split == "train" else CIFAR10.test_list)]
        files = [self.batches_dir / name for name in [*names, CIFAR10.meta["filename"]]]
        return [[str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] for path in files]

    def _decode(self, split: str) -> DecodedImages:
        reader = CIFAR10 if self.verify_checksums else _UnverifiedCIFAR10
        try:
            dataset = reader(str(self.root), train=split == "train", download=False)
        except Exception as err:  # failed checksum, truncated pickle, ...
            raise UserError(
                f"could not read CIFAR-10 from {self.batches_dir} ({err}). Delete the folder to download it again"
                " (or set data.verify_checksums=false for a set you wrote yourself in the CIFAR-10 format)."
            ) from None
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW uint8
        labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
        return DecodedImages(images, labels, classes=list(dataset.classes))
