"""Our U-Net against diffusers' UNet2DModel and denoising-diffusion-pytorch's Unet, side by side.

    pip install -e ".[bench]"      # diffusers, denoising-diffusion-pytorch
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \
        python experiments/benchmarks/peers.py [--sizes 3M 10M] [--channels 1 3] [--repeats 10] [--device cpu]

For each parameter-count class and channel count, every network is measured in ONE process,
interleaved (A, B, C, A, B, C ...) after warm-up, median of ``--repeats``:

1. train step (images/s): q_sample on a linear schedule, the network, MSE on the noise,
   backward, AdamW, at batch 64, for fp32 and each side's other settings (bf16 autocast,
   channels_last, both); "best" is each network's fastest setting;
2. sampling: ms per denoising step (forward pass at batch 64 under inference_mode, the whole
   cost of a sampler step) and the total for 16 samples with 50-step DDIM and 1000-step DDPM
   (per-step time at batch 16 times the steps);
3. achieved FLOP/s of our train step (torch.utils.flop_counter) against the peak measured in the
   same run: the best of repeated large matmuls and 3x3 convolutions (peak.py).

With ``--device cuda`` everything runs on the GPU (autocast on CUDA, a synchronize after each timed
call); the peaks are then the GPU's fp32 and bf16 matmuls (TF32 off, torch's default for fp32).

Peak memory of a training process is measured separately (``--memory``): one subprocess per
network, at fp32 and at its fastest setting, reporting its peak resident set size after 5 steps.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from peak import peak_flops, synchronize  # the script beside this one
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

SIZES = {
    # class: (ours: base, mults, res blocks), (ddpm-pytorch dim), (diffusers base)
    "3M": ((32, (1, 2, 4), 1), 32, 32),
    "10M": ((64, (1, 2, 4), 1), 64, 64),
}
SETTINGS = {"fp32": (False, False), "bf16": (True, False), "channels_last": (False, True), "bf16+cl": (True, True)}


class Adapter(nn.Module):
    """net(x, t) -> eps for every library."""

    def __init__(self, net: nn.Module, call: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.net, self.call = net, call

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.call(self.net, x, t)


def build(library: str, size: str, channels: int, image_size: int) -> nn.Module:
    ours, dim, base = SIZES[size]
    if library == "ours":
        from diffusion_lit.models.unet import UNet

        width, mults, blocks = ours
        net = UNet(in_channels=channels, image_size=image_size, base_channels=width, channel_mults=mults,
                   num_res_blocks=blocks, attention_resolutions=(), num_heads=4)  # fmt: skip
        return Adapter(net, lambda n, x, t: n(x, t))
    if library == "denoising-diffusion-pytorch":
        from denoising_diffusion_pytorch import Unet

        return Adapter(Unet(dim=dim, dim_mults=(1, 2, 4), channels=channels), lambda n, x, t: n(x, t))
    if library == "diffusers":
        from diffusers import UNet2DModel

        net = UNet2DModel(sample_size=image_size, in_channels=channels, out_channels=channels,
                          block_out_channels=(base, 2 * base, 4 * base), down_block_types=("DownBlock2D",) * 3,
                          up_block_types=("UpBlock2D",) * 3)  # fmt: skip
        return Adapter(net, lambda n, x, t: n(x, t).sample)
    raise ValueError(library)


LIBRARIES = ("ours", "denoising-diffusion-pytorch", "diffusers")
PEERS = LIBRARIES[1:]
ALPHAS_BAR = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)


@functools.cache
def alphas_bar_on(device: torch.device) -> torch.Tensor:
    """The linear schedule's alphas_bar on ``device``, copied there once (not in every timed step)."""
    return ALPHAS_BAR.to(device)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x0: torch.Tensor, bf16: bool) -> None:
    t = torch.randint(0, 1000, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    ab = alphas_bar_on(x0.device)[t].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    with autocast(x0.device, bf16):
        loss = F.mse_loss(net(x_t, t).float(), noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.inference_mode()
def sample_step(net: nn.Module, x: torch.Tensor, bf16: bool) -> None:
    with autocast(x.device, bf16):
        net(x, torch.full((x.shape[0],), 500, device=x.device))


def prepared(
    library: str, size: str, channels: int, image_size: int, setting: str, device: str = "cpu"
) -> tuple[nn.Module, bool, bool]:
    bf16, channels_last = SETTINGS[setting]
    torch.manual_seed(0)
    net = build(library, size, channels, image_size).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net, bf16, channels_last


def batch(size: int, channels: int, image_size: int, channels_last: bool, device: str = "cpu") -> torch.Tensor:
    x = torch.rand(size, channels, image_size, image_size, device=device) * 2 - 1
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def training(
    library: str, size: str, channels: int, image_size: int, setting: str, batch_size: int, device: str = "cpu"
) -> tuple[nn.Module, Callable[[], None]]:
    """The network and a zero-argument train step (its own AdamW and a fixed batch) at ``setting``."""
    net, bf16, channels_last = prepared(library, size, channels, image_size, setting, device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x0 = batch(batch_size, channels, image_size, channels_last, device)
    return net, lambda: train_step(net, optimizer, x0, bf16)


def interleaved(steps: dict[str, Callable[[], None]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each step, measured A, B, C, A, B, C ... after warm-up."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize()
            started = time.perf_counter()
            step()
            synchronize()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def counted_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step`` (torch.utils.flop_counter: matrix products and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def train_flops(net: nn.Module, x0: torch.Tensor) -> int:
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    return counted_flops(lambda: train_step(net, optimizer, x0, bf16=False))


def measure(size: str, channels: int, args: argparse.Namespace) -> dict:
    results: dict = {
        "size": size, "channels": channels, "batch_size": args.batch_size, "params_M": {}, "train_images_per_s": {},
    }  # fmt: skip
    train, sample16, sample64 = {}, {}, {}
    for library in LIBRARIES:
        for setting in args.settings:
            name = f"{library} | {setting}"
            net, train[name] = training(library, size, channels, args.image_size, setting, args.batch_size, args.device)
            results["params_M"][library] = round(sum(p.numel() for p in net.parameters()) / 1e6, 2)
            bf16, channels_last = SETTINGS[setting]
            x64, x16 = (batch(n, channels, args.image_size, channels_last, args.device) for n in (64, 16))
            sample64[name] = lambda net=net, x=x64, b=bf16: sample_step(net, x, b)
            sample16[name] = lambda net=net, x=x16, b=bf16: sample_step(net, x, b)
    for name, seconds in interleaved(train, args.warmup, args.repeats).items():
        results["train_images_per_s"][name] = round(args.batch_size / seconds, 1)
    per_step64 = interleaved(sample64, args.warmup, args.repeats)
    per_step16 = interleaved(sample16, args.warmup, args.repeats)
    results["sample_ms_per_step"] = {name: round(1000 * s, 1) for name, s in per_step64.items()}
    results["ddim50_16_samples_s"] = {name: round(50 * s, 2) for name, s in per_step16.items()}
    results["ddpm1000_16_samples_s"] = {name: round(1000 * s, 1) for name, s in per_step16.items()}
    # Achieved FLOP/s of our fp32 train step against the fp32 peak, measured now.
    net, _, _ = prepared("ours", size, channels, args.image_size, "fp32", args.device)
    flops = train_flops(net, batch(args.batch_size, channels, args.image_size, False, args.device))
    seconds = args.batch_size / results["train_images_per_s"]["ours | fp32"]
    results["ours_train_gflop_per_step"] = round(flops / 1e9, 2)
    results["ours_achieved_gflops_fp32"] = round(flops / seconds / 1e9, 1)
    # The peaks: the best of repeated timings of large matmuls and 3x3 convolutions (peak.py).
    for dtype, torch_dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak, rates = peak_flops(torch_dtype, device=args.device)
        results[f"kernel_gflops_{dtype}"] = {name: round(rate / 1e9, 1) for name, rate in rates.items()}
        results[f"matmul_peak_gflops_{dtype}"] = round(peak / 1e9, 1)
    return results


def peak_memory(library: str, size: str, channels: int, setting: str, args: argparse.Namespace) -> float:
    """Peak RSS (MB, VmHWM) of a fresh process that builds the network and runs 5 train steps."""
    code = (
        "import sys; sys.argv=['x']; import experiments.benchmarks.peers as p\n"
        f"net, step = p.training({library!r}, {size!r}, {channels}, {args.image_size}, {setting!r}, "
        f"{args.batch_size})\n"
        "[step() for _ in range(5)]\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec from the parent process.
        "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return round(float(output.strip().splitlines()[-1]), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--channels", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (everything on the GPU)")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS per network (subprocesses; CPU)")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args()
    if args.device != "cpu" and args.memory:
        parser.error("--memory measures CPU processes' resident memory: leave it out with --device cuda")
    header = {
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(), "MALLOC_MMAP_MAX_": os.environ.get("MALLOC_MMAP_MAX_", "unset"),
        "command": " ".join(sys.argv),
    }  # fmt: skip
    print(json.dumps(header))
    runs = []
    for size in args.sizes:
        for channels in args.channels:
            result = measure(size, channels, args)
            if args.memory:  # at fp32 and at each network's fastest setting
                result["peak_rss_MB"] = {
                    f"{lib} | {setting}": peak_memory(lib, size, channels, setting, args)
                    for lib in LIBRARIES
                    for setting in dict.fromkeys(["fp32", fastest(lib, result["train_images_per_s"])[0]])
                }
            runs.append(result)
            print(json.dumps(result, indent=1))
            print(f"[{size}, {channels} ch] " + ratios(result, args.batch_size), flush=True)
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"header": header, "runs": runs}, file, indent=1)


def rows_of(table: dict, library: str) -> dict[str, float]:
    """``setting -> value`` of one library in a ``"library | setting" -> value`` table."""
    return {key.split(" | ")[1]: value for key, value in table.items() if key.startswith(library + " |")}


def fastest(library: str, table: dict, higher: bool = True) -> tuple[str, float]:
    """(setting, value) of ``library``'s best row in a ``"library | setting" -> value`` table."""
    rows = rows_of(table, library)
    setting = (max if higher else min)(rows, key=rows.get)
    return setting, rows[setting]


def ratios(run: dict, batch_size: int) -> str:
    """Ours over the faster peer (train at fp32 and at each side's best setting, sampling step),
    and our achieved FLOP/s against the matmul peaks of the same run."""
    train, sample = run["train_images_per_s"], run["sample_ms_per_step"]
    fp32_peer = max(train[f"{peer} | fp32"] for peer in PEERS)
    best_train = {library: fastest(library, train)[1] for library in LIBRARIES}
    best_sample = {library: fastest(library, sample, higher=False)[1] for library in LIBRARIES}
    gflop = run["ours_train_gflop_per_step"]
    fp32_gflops, fp32_peak, bf16_peak = (
        run["ours_achieved_gflops_fp32"], run["matmul_peak_gflops_fp32"], run["matmul_peak_gflops_bf16"],
    )  # fmt: skip
    text = (
        f"Ratios: train fp32 ours/faster peer {train['ours | fp32'] / fp32_peer:.2f}x; "
        f"best/best {best_train['ours'] / max(best_train[peer] for peer in PEERS):.2f}x; "
        f"sampling step best/best {min(best_sample[peer] for peer in PEERS) / best_sample['ours']:.2f}x; "
        f"fp32 sampling step {min(sample[f'{peer} | fp32'] for peer in PEERS) / sample['ours | fp32']:.2f}x. "
        f"FLOPs/step {gflop} GFLOP; achieved fp32 {fp32_gflops} GFLOP/s = {fp32_gflops / fp32_peak:.0%} of "
        f"fp32 matmul peak {fp32_peak}"
    )
    bf16_rates = [value for setting, value in rows_of(train, "ours").items() if SETTINGS[setting][0]]
    if not bf16_rates:  # no bf16 setting measured
        return text
    bf16_gflops = gflop * max(bf16_rates) / batch_size
    return text + f"; bf16 best {bf16_gflops:.1f} GFLOP/s = {bf16_gflops / bf16_peak:.0%} of bf16 peak {bf16_peak}"


if __name__ == "__main__":
    main()
