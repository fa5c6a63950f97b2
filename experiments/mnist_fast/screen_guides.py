"""Screen autoguidance guides for a run: the final EMA weights guided by earlier snapshots.

    python experiments/mnist_fast/screen_guides.py <run dir> --guides step0300 step0600 --scales 2 3 \
        [--raw] [--samples 250] [--root ../shared/datasets]

Each row samples ``--samples`` images (seed 0, batches of 250; a conditional model draws the
classes in turn, at its own guidance_scale, and the guide gets the same labels) with
eps = eps_guide + w (eps - eps_guide) and scores them with the MNIST classifier (share
recognised with confidence > 0.9) and the domain FID. Guides are
``<run>/checkpoints/snapshots/<name>.ckpt`` (mnist_fast keeps steps 300/600/900) or ``last``;
``--raw`` guides with a checkpoint's raw (not averaged) weights, which Lightning's
WeightAveraging stores as ``current_model_state``. ``evaluate guide_ckpt=``
is the command for a chosen guide; this script only screens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusion_lit.lit.build import data_module_for, load_checkpoint
from diffusion_lit.lit.sample_metrics import SampleMetrics, sample_metrics_config


def guide_path(run: Path, name: str) -> Path:
    return run / "checkpoints" / ("last.ckpt" if name == "last" else f"snapshots/{name}.ckpt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--guides", nargs="+", default=["step0300"])
    parser.add_argument("--scales", nargs="+", type=float, default=[2.0])
    parser.add_argument("--raw", action="store_true", help="guide with the raw weights instead of the EMA")
    parser.add_argument("--samples", type=int, default=250)
    parser.add_argument("--num-real", type=int, default=10000, help="real images of the domain FID")
    parser.add_argument("--root", default="../shared/datasets")
    args = parser.parse_args()

    model = load_checkpoint(args.run / "checkpoints" / "last.ckpt")
    datamodule = data_module_for(model, {"root": args.root})
    metrics = SampleMetrics(["digits", "fid"], model, datamodule, sample_metrics_config(args.num_real))
    for name in args.guides:
        path = guide_path(args.run, name)
        guide = load_checkpoint(path)
        if args.raw:
            guide.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["current_model_state"])
        for scale in args.scales:
            model.set_guide(guide, scale)
            generator = torch.Generator().manual_seed(0)
            started = time.perf_counter()
            batches = [model.sample(min(250, args.samples - done), generator=generator).cpu()
                       for done in range(0, args.samples, 250)]  # fmt: skip
            # A conditional model draws the classes in turn in each batch (250 = 25 x 10).
            scores = metrics(torch.cat(batches), model.default_labels(args.samples))
            row = {"guide": name + (" (raw)" if args.raw else ""), "scale": scale, "samples": args.samples,
                   "recognised": round(scores["digits_confident_share"], 3), "fid_domain": round(scores["fid"], 1),
                   "class_share_min": scores["digits_class_share_min"],
                   "class_share_max": scores["digits_class_share_max"],
                   "seconds": round(time.perf_counter() - started)}  # fmt: skip
            if "digits_label_accuracy" in scores:  # conditional models: share drawn as the class asked for
                row["as_asked"] = round(scores["digits_label_accuracy"], 3)
            print(json.dumps(row), flush=True)
    model.set_guide(None)


if __name__ == "__main__":
    main()
