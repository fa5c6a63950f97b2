"""FID / KID floor and ceiling on MNIST, and the cost of each feature extractor.

    python experiments/evaluation/reference_points.py --extractor domain --num 10000
    python experiments/evaluation/reference_points.py --extractor inception --num 1000

Floor: the first --num real test images against the first --num real training images (the
best a generator can hope for at this sample size). Ceiling: --num images of pure Gaussian
noise (clipped to [-1, 1]) against the same training images. Prints seconds per 1,000 images
for the extractor, and writes a JSON (numbers + protocol) to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from diffusion_lit.lit.sample_metrics import real_features
from diffusion_lit.metrics.fid import extract_features, frechet_distance, kernel_inception_distance
from diffusion_lit.metrics.protocol import protocol_card
from diffusion_lit.utils.paths import CONFIG_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extractor", choices=["domain", "inception"], default="domain")
    parser.add_argument("--num", type=int, default=10000, help="images on each side")
    parser.add_argument("--mnist-root", default="../shared/datasets")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "data=mnist", f"data.root={args.mnist_root}", "data.num_val_samples=null", f"extractor={args.extractor}"
            ],
        )  # fmt: skip
    datamodule = instantiate(cfg.data)
    extractor = instantiate(cfg.extractor).from_data_dir(datamodule.data_dir)
    cache = Path(datamodule.data_dir) / "fid_features"

    started = time.perf_counter()
    train = real_features(extractor, datamodule, "train", args.num, cache, args.batch_size)
    train_seconds = time.perf_counter() - started
    test = real_features(extractor, datamodule, "val", args.num, cache, args.batch_size)
    noise_images = torch.randn((args.num, 1, 28, 28), generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    started = time.perf_counter()
    noise = extract_features(extractor, noise_images, args.batch_size)
    noise_seconds = time.perf_counter() - started

    subset = min(1000, args.num)
    results = {
        "extractor": args.extractor,
        "num_each": args.num,
        "seconds_per_1000_images": noise_seconds / args.num * 1000,
        "seconds_per_1000_images_first_pass_train": train_seconds / args.num * 1000,
        "fid_test_vs_train": frechet_distance(train, test),
        "fid_noise_vs_train": frechet_distance(train, noise),
        "kid_test_vs_train": kernel_inception_distance(train, test, subset)[0],
        "kid_noise_vs_train": kernel_inception_distance(train, noise, subset)[0],
        "protocol": protocol_card(
            run_config={"data": {"_target_": cfg.data._target_}},
            image_shape=(1, 28, 28),
            sampler={},
            num_generated=args.num,
            seed=0,
            extractor=extractor,
            num_real=args.num,
            reference_split="train",
        ),  # fmt: skip
    }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
