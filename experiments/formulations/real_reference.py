"""The sample metrics of real images under a checkpoint's protocol: what a perfect sampler would
score in a compare.py cell (the same number of images, the same real reference, the same feature
network and classifier).

    python experiments/formulations/real_reference.py --ckpt <mnist run>/checkpoints/last.ckpt \
        --data-root ../shared/datasets [--split val] [--num 500] [--metrics fid digits]

Takes the first --num images of --split (with their labels, so digits_label_accuracy is the
classifier's accuracy on real digits) and prints the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffusion_lit.lit.build import data_module_for, load_checkpoint
from diffusion_lit.lit.sample_metrics import SampleMetrics, real_batches, sample_metrics_config
from diffusion_lit.utils.paths import CONFIG_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--split", default="val", choices=["train", "val"], help="MNIST: val is the test set")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--num-real", type=int, default=10000, help="real reference images (of the train split)")
    parser.add_argument("--metrics", nargs="*", default=["fid", "digits"])
    parser.add_argument("--extractor", default="domain")
    args = parser.parse_args()

    module = load_checkpoint(args.ckpt)
    datamodule = data_module_for(module, {"root": args.data_root})
    extractor = instantiate(OmegaConf.load(Path(CONFIG_DIR) / "extractor" / f"{args.extractor}.yaml"))
    metrics = SampleMetrics(args.metrics, module, datamodule, sample_metrics_config(args.num_real), extractor)
    batches = list(real_batches(datamodule, args.split, args.num, 500))
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches]) if batches[0][1] is not None else None
    scores = metrics(images, labels)
    print(json.dumps({"split": args.split, "num_images": int(images.shape[0]), **scores}, indent=2, default=str))


if __name__ == "__main__":
    main()
