"""Train-step throughput (images/s) of the project's U-Net presets, measured side by side.

    python experiments/benchmarks/train_step.py [--models small base] [--variants fp32 bf16 ...] [--repeats 12]

Each repeat runs every (model, precision) configuration once, interleaved (A, B, C, A, B, C ...),
after warm-up steps, and the median over repeats is reported, so that a drift of the machine
affects every configuration alike. A step is the real training step: DiffusionModule's loss
(q_sample + U-Net + MSE on the noise), backward and an AdamW update. Ratios are against the
first configuration measured in the same run.

Variants: ``fp32``, ``bf16`` (autocast, as ``trainer.precision=bf16-mixed``), with
``channels_last+`` (``model.channels_last=true``, otherwise false) and/or ``compile+``
(``model.compile=true``; its compilation time is the first step's, printed) and/or ``edm+``
(``formulation=edm``: EDM's preconditioning and log-normal noise levels instead of VP's), ``flow+``
(``formulation=flow``: rectified flow, logit-normal times, velocity target) or ``flow_ot+`` (the
flow with ``formulation.coupling=ot``: exact minibatch OT pairing every step) or ``blackout+``
(``formulation=blackout data.counts.lambda=20``: the count process's binomial thinning and
Poisson-Bregman loss) in front; without one of these, VP's step (``formulation=vp``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial

import torch
from hydra import compose, initialize_config_dir
from peers import interleaved  # the script beside this one

from diffusion_lit.diffusion.coupling import couple
from diffusion_lit.lit.build import build_module
from diffusion_lit.utils.paths import CONFIG_DIR

VARIANTS = (
    "fp32", "bf16", "channels_last+fp32", "channels_last+bf16", "compile+channels_last+fp32",
    "compile+channels_last+bf16", "compile+fp32", "compile+bf16",
    "edm+fp32", "edm+bf16", "edm+channels_last+fp32", "edm+channels_last+bf16",
    "flow+channels_last+fp32", "flow+channels_last+bf16", "flow_ot+channels_last+fp32", "flow_ot+channels_last+bf16",
    "blackout+channels_last+fp32", "blackout+channels_last+bf16",
)  # fmt: skip


def build(model: str, channels: int, image_size: int, variant: str = "fp32"):
    # A model is a conf/model preset, optionally with Hydra overrides: small:model.net.base_channels=16
    model, _, extra = model.partition(":")
    options = [
        *filter(None, extra.split(",")),
        *[f"model.{option}={str(option in variant.split('+')).lower()}" for option in ("channels_last", "compile")],
    ]
    parts = variant.split("+")
    if "edm" in parts:
        options.append("formulation=edm")
    if "flow" in parts or "flow_ot" in parts:
        options.append("formulation=flow")
    if "flow_ot" in parts:
        options.append("formulation.coupling=ot")
    if "blackout" in parts:  # the batch's images read as counts of a 20-photon grid
        options += ["formulation=blackout", "data.counts.lambda=20"]
    if not {"edm", "flow", "flow_ot", "blackout"} & set(parts):
        options.append("formulation=vp")  # the plain variants are VP's step (the default is the flow)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", f"data.image_size={image_size}", *options])
    torch.manual_seed(0)
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
    parser.add_argument(
        "--models",
        nargs="+",
        default=["small", "base"],
        help="conf/model presets to measure, each optionally with overrides: small:model.net.base_channels=16",
    )
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16"], choices=VARIANTS)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=12, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    batch = torch.rand(args.batch_size, args.channels, args.image_size, args.image_size) * 2 - 1
    configs = {}
    for model in args.models:
        for variant in args.variants:
            module, optimizer = build(model, args.channels, args.image_size, variant)
            params = sum(p.numel() for p in module.net.parameters())
            name = f"{model} ({params / 1e6:.2f}M params) {variant}"
            configs[name] = partial(train_step, module, optimizer, batch, bf16=variant.endswith("bf16"))

    first_step: dict[str, float] = {}
    for name, step in configs.items():
        started = time.perf_counter()
        step()
        first_step[name] = time.perf_counter() - started  # for compile+ variants: the compilation
    medians = interleaved(configs, args.warmup - 1, args.repeats)

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}, "
        f"batch={args.batch_size}, {args.channels}x{args.image_size}x{args.image_size}, "
        f"MALLOC_MMAP_MAX_={os.environ.get('MALLOC_MMAP_MAX_', 'unset')}, "
        f"MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_', 'unset')}"
    )
    baseline = None
    print("| configuration | first step s | median s/step | images/s | ratio |\n|---|---|---|---|---|")
    for name, median in medians.items():
        throughput = args.batch_size / median
        baseline = baseline or throughput
        print(f"| {name} | {first_step[name]:.1f} | {median:.3f} | {throughput:.1f} | {throughput / baseline:.2f} |")
    if any("flow_ot" in variant for variant in args.variants):
        # The OT pairing alone (cdist + exact assignment), against the first configuration's step.
        noise = torch.randn_like(batch)
        timings = []
        for _ in range(max(args.repeats, 20)):
            started = time.perf_counter()
            couple(batch, noise, "ot")
            timings.append(time.perf_counter() - started)
        pairing = sorted(timings)[len(timings) // 2]
        first = next(iter(medians.values()))
        share = pairing / first
        print(f"OT pairing alone at batch {args.batch_size}: {pairing * 1e3:.2f} ms = {share:.2%} of the first step")


if __name__ == "__main__":
    main()
