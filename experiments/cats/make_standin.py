"""Write a stand-in image folder for the cat study when no cat images can be had (offline).

    python experiments/cats/make_standin.py OUT_DIR [--mnist-root ../shared/datasets] [--count 6000]

Writes the first --count MNIST training digits as 28 x 28 greyscale PNG files into OUT_DIR, so
that ``experiment=cats data.path=OUT_DIR`` runs the cat study's exact pipeline (folder loader,
resize + centre crop, greyscale, optional edge maps, L1 / MSE) on real image files. They are
digits, not cats: numbers measured on them say how the pipeline's choices compare, not how
well cats are generated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from torchvision.datasets import MNIST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--mnist-root", type=Path, default=Path("../shared/datasets"), help="folder holding MNIST/raw/")
    parser.add_argument("--count", type=int, default=6000)
    args = parser.parse_args()
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    try:
        digits = MNIST(str(args.mnist_root), train=True, download=False).data[: args.count]
    except RuntimeError as error:
        raise SystemExit(f"error: no MNIST under {args.mnist_root}/MNIST/raw/ ({error}); pass --mnist-root.") from None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for index, digit in enumerate(digits):
        Image.fromarray(digit.numpy(), mode="L").save(args.out_dir / f"standin_{index:05d}.png")
    print(f"wrote {len(digits)} PNG files to {args.out_dir}")


if __name__ == "__main__":
    main()
