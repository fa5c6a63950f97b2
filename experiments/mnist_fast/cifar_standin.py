"""Write a stand-in for CIFAR-10 in its real file format, for the divergence smoke check of the
mnist_fast settings on 32 px colour images (README section 6) where CIFAR-10 cannot be
downloaded:

    python experiments/mnist_fast/cifar_standin.py <root> [--train 50000] [--test 10000]

The images are random square crops (16-256 px, resized to 32 px) of the one colour photograph
matplotlib ships (``mpl-data/sample_data/grace_hopper.jpg``): natural-image statistics (colour,
edges, smooth regions), not CIFAR-10's content; the labels are random. The set is written as
``<root>/cifar-10-batches-py/`` (python pickle batches, as published), so ``data=cifar10
data.root=<root> data.verify_checksums=false`` reads it through the real loader.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from diffusion_lit.data.formats import write_cifar10


def photo() -> Image.Image:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return Image.open(path).convert("RGB")


def random_crops(image: Image.Image, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` crops (N, 32, 32, 3) uint8: side log-uniform in [16, 256] px, anywhere in the photo."""
    width, height = image.size
    crops = np.empty((count, 32, 32, 3), dtype=np.uint8)
    for index in range(count):
        side = int(np.exp(rng.uniform(np.log(16), np.log(min(256, width, height)))))
        left, top = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
        crop = image.crop((left, top, left + side, top + side)).resize((32, 32), Image.Resampling.LANCZOS)
        crops[index] = np.asarray(crop)
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write cifar-10-batches-py/ into")
    parser.add_argument("--train", type=int, default=50000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    image = photo()
    train, test = random_crops(image, args.train, rng), random_crops(image, args.test, rng)
    folder = write_cifar10(args.root, train, rng.integers(0, 10, args.train), test, rng.integers(0, 10, args.test))
    print(f"wrote {args.train} + {args.test} crops of {image.size[0]}x{image.size[1]} px to {folder}")


if __name__ == "__main__":
    main()
