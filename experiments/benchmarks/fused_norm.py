"""GroupNorm -> FiLM -> SiLU, forward and backward: eager ATen kernels against the one fused kernel
torch.compile (inductor) generates for it, at the feature-map shapes of a U-Net preset.

    python experiments/benchmarks/fused_norm.py [--model narrow] [--batch-size 64] [--repeats 30]

Why: about a quarter of the default net's fp32 training step is this element-wise work (GroupNorm
and SiLU, forward and backward: experiments/benchmarks/README.md), memory-bound on a 2-core CPU.
Compiling the whole net did not pay at fp32 (0.98x after 80 s of compilation); this asks whether a
fused kernel for these sites alone would, before any hand-written fused op is considered. The
function is the ResBlock's second half up to its convolution (models/unet.py: GroupNorm, then
shift + norm * (1 + scale), then SiLU), in channels_last as the default net runs it; the timed call
is its forward and backward (grad of the input, the affine weights and the FiLM scale and shift).
Each repeat runs eager and compiled alternately; medians; the compile time is the first call's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections import Counter

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from diffusion_lit.utils.paths import CONFIG_DIR


def norm_film_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor,
                   shift: torch.Tensor, groups: int) -> torch.Tensor:  # fmt: skip
    return F.silu(torch.addcmul(shift, F.group_norm(x, groups, weight, bias), 1.0 + scale))


def norm_sites(model: str) -> Counter[tuple[int, int, int]]:
    """(channels, side, groups) of every GroupNorm of a conf/model preset's net at its data's image
    size, counted. Each is timed as GroupNorm -> FiLM -> SiLU, the ResBlocks' second site; the first
    one has no FiLM and the attention block's norm no SiLU, so the total is an upper bound."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}"])
    net = instantiate(cfg.model.net)
    sites: Counter[tuple[int, int, int]] = Counter()
    for module in net.modules():
        if isinstance(module, nn.GroupNorm):
            module.register_forward_hook(
                lambda m, inputs, _: sites.update([(inputs[0].shape[1], inputs[0].shape[-1], m.num_groups)])
            )
    side = int(cfg.data.image_size)
    with torch.no_grad():
        net(torch.zeros(1, net.in_channels, side, side), torch.zeros(1))
    return sites


def time_site(channels: int, side: int, groups: int, batch: int, repeats: int, compiled) -> tuple[float, float, float]:
    """Median ms of forward + backward, eager and compiled, and the compiled first call's seconds."""
    x = torch.randn(batch, channels, side, side).to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn_like(x)
    weight, bias = torch.ones(channels, requires_grad=True), torch.zeros(channels, requires_grad=True)
    scale = (0.1 * torch.randn(batch, channels, 1, 1)).requires_grad_()
    shift = (0.1 * torch.randn(batch, channels, 1, 1)).requires_grad_()
    functions = {"eager": norm_film_silu, "compiled": compiled}

    def step(name: str) -> None:
        functions[name](x, weight, bias, scale, shift, groups).backward(grad)

    started = time.perf_counter()
    step("compiled")
    compile_seconds = time.perf_counter() - started
    for _ in range(3):  # warm-up
        step("eager"), step("compiled")
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for name in times:
            started = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - started)
    eager, fused = (1e3 * statistics.median(times[name]) for name in ("eager", "compiled"))
    return eager, fused, compile_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="narrow", help="a conf/model preset")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    sites = norm_sites(args.model)
    torch._dynamo.config.recompile_limit = max(8, len(sites))  # one static-shape kernel per site, none left eager
    compiled = torch.compile(norm_film_silu, dynamic=False)
    allocator = {key: os.environ.get(key, "unset") for key in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")}
    print(f"torch {torch.__version__}, {platform.machine()}, threads={torch.get_num_threads()}, {allocator}")
    print(f"model={args.model}, batch {args.batch_size}, fp32, channels_last")
    print("| channels x side (groups) | sites per step | eager ms | compiled ms | compiled / eager speed | compile s |")
    print("|---|---|---|---|---|---|")
    total = {"eager": 0.0, "compiled": 0.0}
    for (channels, side, groups), count in sorted(sites.items()):
        eager, fused, compile_seconds = time_site(channels, side, groups, args.batch_size, args.repeats, compiled)
        total["eager"] += count * eager
        total["compiled"] += count * fused
        print(
            f"| {channels} x {side} ({groups}) | {count} | {eager:.2f} | {fused:.2f} | {eager / fused:.2f}x | "
            f"{compile_seconds:.1f} |"
        )
    print(
        f"all sites of one step: eager {total['eager']:.1f} ms, compiled {total['compiled']:.1f} ms "
        f"({total['eager'] / total['compiled']:.2f}x)"
    )


if __name__ == "__main__":
    main()
