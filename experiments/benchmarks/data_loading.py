"""Data-loading speed of each data module against the model's training-step rate.

    python experiments/benchmarks/data_loading.py [--mnist-root ../shared/datasets] [--repeats 10]

For every dataset (triangles, MNIST, CIFAR-10, a folder of cat-like JPEGs) this builds the data
module from its conf/data config, as `python -m diffusion_lit.train data=...` does, and reports:

* cold start: decoding the source files and writing the uint8 cache (first run only);
* warm start: ``prepare_data()`` + ``setup()`` with the cache present (every later run);
* batches/s of the training data loader alone (the default ``num_workers=0``);
* batches/s of the real training step of the `small` U-Net (bf16 autocast, the default) on
  batches of the same shape, and the ratio loader/train: above 1 the model never waits.

Loader and train-step timings are interleaved (loader, step, loader, step, ...; median of the
repeats) so that machine drift affects both alike. CIFAR-10 and the cat folder are not
available offline: the script writes full-size stand-ins (50,000 + 10,000 random CIFAR-10
images in the real pickle format; 2,000 random 256 px JPEGs) into a temporary folder and times
the real loading code on them. MNIST uses the real files when --mnist-root has them.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from diffusion_lit.data.batch import images_of
from diffusion_lit.data.formats import write_cifar10, write_mnist
from diffusion_lit.lit.build import build_module
from diffusion_lit.utils.paths import CONFIG_DIR


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def write_stand_ins(root: Path, num_cat_images: int, mnist_root: Path | None) -> dict[str, list[str]]:
    """Dataset files for the run; returns the data overrides of each dataset."""
    rng = np.random.default_rng(0)
    if mnist_root is None or not (mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        print("MNIST not found at --mnist-root: timing a random 60,000 + 10,000 set in the IDX format")
        mnist_root = root / "mnist"
        write_mnist(
            mnist_root,
            rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 60000),
            rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 10000),
        )
    write_cifar10(
        root / "cifar",
        rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, 50000),
        rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, 10000),
    )
    cats = root / "cats"
    cats.mkdir()
    # Smooth random images compress like photos; 256 px is between the 64 px cat-faces set
    # and 512 px AFHQ.
    for i in range(num_cat_images):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((256, 256), Image.Resampling.BICUBIC).save(cats / f"{i:05d}.jpg", quality=90)
    return {
        "triangles": ["data=triangles"],
        "mnist": ["data=mnist", f"data.root={mnist_root}"],
        "cifar10": ["data=cifar10", f"data.root={root / 'cifar'}", "data.verify_checksums=false"],
        "cats": ["data=cats", f"data.path={cats}"],
    }


def time_loader(loader_iter, num_batches: int) -> float:
    started = time.perf_counter()
    for _ in range(num_batches):
        next(loader_iter)
    return (time.perf_counter() - started) / num_batches


def measure(cfg, args: argparse.Namespace) -> tuple:
    """(train images, image shape, cold start s, warm start s, loader batches/s, train steps/s)."""
    started = time.perf_counter()
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    warm_module = instantiate(cfg.data)
    warm_module.prepare_data()
    warm_module.setup("fit")
    warm = time.perf_counter() - started

    shape = (datamodule.num_channels, datamodule.image_size, datamodule.image_size)
    module = build_module(cfg, shape)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def train_step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = module.diffusion_loss(images_of(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def batches():
        while True:
            yield from datamodule.train_dataloader()

    stream = batches()
    batch = next(stream)
    for _ in range(3):  # warm-up
        train_step(batch)
    loader_s, step_s = [], []
    for _ in range(args.repeats):
        loader_s.append(time_loader(stream, args.loader_batches))
        started = time.perf_counter()
        train_step(next(stream))
        step_s.append(time.perf_counter() - started)
    loader_rate = 1 / statistics.median(loader_s)
    step_rate = 1 / statistics.median(step_s)
    return len(datamodule.train_set), shape, cold, warm, loader_rate, step_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", type=Path, default=Path("../shared/datasets"), help="folder with MNIST/raw/")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10, help="interleaved timing rounds (median reported)")
    parser.add_argument("--loader-batches", type=int, default=50, help="batches timed per loader round")
    parser.add_argument("--cat-images", type=int, default=2000)
    args = parser.parse_args()
    torch.manual_seed(0)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = Path(tmp)
        datasets = write_stand_ins(tmp_root / "sources", args.cat_images, args.mnist_root)
        for name, overrides in datasets.items():
            data_root = f"paths.data_dir={tmp_root / 'data_root'}"
            cfg = compose_config([*overrides, data_root, f"data.batch_size={args.batch_size}"])
            rows.append((name, *measure(cfg, args)))
            print(f"done: {name}", file=sys.stderr)

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={torch.get_num_threads()}, "
        f"batch={args.batch_size}, num_workers=0, small U-Net bf16 autocast"
    )
    print(
        "| dataset | train images | image shape | cold start s | warm start s | loader batches/s | "
        "train steps/s | loader / train |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, size, shape, cold, warm, loader_rate, step_rate in rows:
        print(
            f"| {name} | {size} | {'x'.join(map(str, shape))} | {cold:.1f} | {warm:.2f} | {loader_rate:.0f} | "
            f"{step_rate:.2f} | {loader_rate / step_rate:.0f}x |"
        )


if __name__ == "__main__":
    main()
