"""Writers for the on-disk formats of MNIST and CIFAR-10.

They let tests, benchmarks and offline demos run the real torchvision readers on small sets
of any content (the real datasets cannot be downloaded everywhere).

Formats:
* IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero
  bytes, a type code (0x08 = unsigned byte) and the number of dimensions, then one 4-byte
  big-endian size per dimension, then the raw data in C order.
* CIFAR-10 python version (Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html): pickled
  dicts; a batch holds ``data`` (N x 3072 uint8, each row the red, green then blue 32 x 32
  planes) and ``labels`` (list of N ints); ``batches.meta`` holds ``label_names``.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from diffusion_lit.data.mnist import MNIST_FILES
from diffusion_lit.utils.files import atomic_write

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_IDX_UBYTE = 0x08


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array (any number of dimensions) as an IDX file."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer supports uint8 only, got {array.dtype}")
    header = struct.pack(">HBB", 0, _IDX_UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with atomic_write(path) as file:
        file.write(header)
        file.write(array.tobytes())
    return Path(path)


def write_mnist(
    root: str | Path,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> Path:
    """Write an MNIST-format set under ``root/MNIST/raw/`` (the layout torchvision reads).

    Args:
        train_images, test_images: uint8 (N, H, W).
        train_labels, test_labels: integer (N,) in [0, 255].

    Returns:
        the raw folder.
    """
    raw = Path(root) / "MNIST" / "raw"
    for split, (images, labels) in {"train": (train_images, train_labels), "test": (test_images, test_labels)}.items():
        images_name, labels_name = MNIST_FILES[split]
        write_idx(raw / images_name, np.asarray(images, dtype=np.uint8))
        write_idx(raw / labels_name, np.asarray(labels).astype(np.uint8))
    return raw


def _write_pickle(path: Path, content: dict) -> None:
    with atomic_write(path) as file:
        pickle.dump(content, file, protocol=2)


def write_cifar10(
    root: str | Path,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    num_train_batches: int = 5,
) -> Path:
    """Write a CIFAR-10-format set under ``root/cifar-10-batches-py/``.

    Args:
        train_images, test_images: uint8 (N, 32, 32, 3), channels last (as torchvision returns them).
        train_labels, test_labels: integer (N,) in [0, 9].
        num_train_batches: the training images are split over ``data_batch_1..k`` (5 in the
            real set, which torchvision expects).

    Returns:
        the batches folder.
    """
    folder = Path(root) / "cifar-10-batches-py"

    def rows(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise ValueError(f"CIFAR-10 images must be (N, 32, 32, 3) uint8, got {images.shape}")
        return images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)  # R, G, B planes per row

    train_rows = rows(train_images)
    parts = np.array_split(np.arange(len(train_rows)), num_train_batches)
    for number, index in enumerate(parts, start=1):
        _write_pickle(
            folder / f"data_batch_{number}",
            {
                "batch_label": f"training batch {number} of {num_train_batches}",
                "data": train_rows[index],
                "labels": [int(label) for label in np.asarray(train_labels)[index]],
            },
        )
    _write_pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "data": rows(test_images),
            "labels": [int(label) for label in np.asarray(test_labels)],
        },
    )
    _write_pickle(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_vis": 3072})
    return folder
