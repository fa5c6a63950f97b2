"""Train-step throughput (images/s) of the project's U-Net presets, measured side by side.

    python experiments/benchmarks/train_step.py [--models small base] [--batch-size 64] [--repeats 12]

Each repeat runs every (model, precision) configuration once, interleaved (A, B, C, A, B, C ...),
after warm-up steps, and the median over repeats is reported, so that a drift of the machine
affects every configuration alike. A step is the real training step: DiffusionModule's loss
(q_sample + U-Net + MSE on the noise), backward and an AdamW update. Ratios are against the
first configuration measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial

import torch
from hydra import compose, initialize_config_dir

from diffusion_lit.build import build_module
from diffusion_lit.cli import CONFIG_DIR


def build(model: str, channels: int, image_size: int):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", f"data.image_size={image_size}"])
    module = build_module(cfg, (channels, image_size, image_size))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    return module, optimizer


def train_step(module, optimizer, batch: torch.Tensor, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = module.diffusion_loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["small", "base"], help="conf/model presets to measure")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=12, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    configs = {}
    for model in args.models:
        module, optimizer = build(model, args.channels, args.image_size)
        params = sum(p.numel() for p in module.net.parameters())
        for bf16 in (False, True):
            name = f"{model} ({params / 1e6:.2f}M params) {'bf16 autocast' if bf16 else 'fp32'}"
            configs[name] = partial(train_step, module, optimizer, bf16=bf16)
    batch = torch.rand(args.batch_size, args.channels, args.image_size, args.image_size) * 2 - 1

    for step in configs.values():
        for _ in range(args.warmup):
            step(batch)
    timings: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, step in configs.items():
            started = time.perf_counter()
            step(batch)
            timings[name].append(time.perf_counter() - started)

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}, "
        f"batch={args.batch_size}, {args.channels}x{args.image_size}x{args.image_size}, "
        f"MALLOC_MMAP_MAX_={os.environ.get('MALLOC_MMAP_MAX_', 'unset')}, "
        f"MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_', 'unset')}"
    )
    baseline = None
    print("| configuration | median s/step | images/s | ratio |\n|---|---|---|---|")
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        throughput = args.batch_size / median
        baseline = baseline or throughput
        print(f"| {name} | {median:.3f} | {throughput:.1f} | {throughput / baseline:.2f} |")


if __name__ == "__main__":
    main()
