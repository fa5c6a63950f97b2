"""How close the default U-Net's fp32 steps come to the CPU's peak: achieved FLOP/s as a share of it.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \
        python experiments/benchmarks/step_efficiency.py [--model small] [--repeats 12] [--profile]

Measures, in ONE process at fp32 (what ``precision=auto`` trains in on a CPU without native bf16):

1. the peak (peak.py): the best of repeated 2048 matmuls (torch, numpy) and 64-channel 3x3
   convolutions (NCHW, channels_last), at the process's thread count;
2. the training step of ``--model`` exactly as ``make train`` runs it (DiffusionModule's loss,
   backward, AdamW; batch 64) and a sampling step (one forward pass under inference_mode at the
   final evaluation's batch, 256), for each variant: channels_last on or off, interleaved, median
   of ``--repeats``;
3. the FLOPs of each step (torch.utils.flop_counter: convolutions and matrix products, forward
   and backward), so achieved FLOP/s = FLOPs / median time, and its share of the peak.

The FLOP count leaves out the elementwise work (normalisation, activations, the optimizer), so
the share says how much of the time the dense kernels' arithmetic could explain. ``--profile``
adds torch.profiler's operator table of the fastest training variant: where the rest goes.

The CPU matters (issue 28): say which one every figure comes from (``grep -o 'avx512_bf16\\|amx_bf16'
/proc/cpuinfo``; empty on an AVX2-only CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
from functools import partial
from pathlib import Path

import torch
from peak import peak_flops  # the scripts beside this one
from peers import counted_flops, interleaved
from torch.profiler import ProfilerActivity, profile
from train_step import build, train_step

ENVIRONMENT = (
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
    "OPENBLAS_CORETYPE",
    "MALLOC_MMAP_MAX_",
)


@torch.inference_mode()
def sample_step(module, x: torch.Tensor) -> None:
    """One network call of a sampler (its arithmetic around the call is negligible)."""
    module.net(x, torch.full((x.shape[0],), 500, dtype=torch.long))


def cpu_kind() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    kind = "AVX-512 BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
    return kind + (" + AMX" if "amx_bf16" in flags else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="a conf/model preset")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64, help="training batch")
    parser.add_argument("--sample-batch-size", type=int, default=256, help="sampling batch (eval.batch_size)")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--profile", action="store_true", help="operator table of the fastest training variant")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.channels, args.image_size, args.image_size)
    train_batch = torch.rand(args.batch_size, *shape) * 2 - 1
    sample_batch = torch.randn(args.sample_batch_size, *shape)

    train, sample, flops = {}, {}, {}
    for variant in ("fp32", "channels_last+fp32"):
        module, optimizer = build(args.model, args.channels, args.image_size, variant)
        memory_format = torch.channels_last if variant.startswith("channels_last") else torch.contiguous_format
        x_train, x_sample = (x.contiguous(memory_format=memory_format) for x in (train_batch, sample_batch))
        train[variant] = partial(train_step, module, optimizer, x_train, False)
        sample[variant] = partial(sample_step, module, x_sample)
    flops["train"] = counted_flops(next(iter(train.values())))
    flops["sample"] = counted_flops(next(iter(sample.values())))

    peak, kernels = peak_flops(torch.float32, args.peak_repeats)
    train_seconds = interleaved(train, args.warmup, args.repeats)
    sample_seconds = interleaved(sample, args.warmup, args.repeats)
    peak_after, _ = peak_flops(torch.float32, args.peak_repeats)  # the machine may drift during the run
    peak = max(peak, peak_after)

    # The ISA limits (ONEDNN_MAX_CPU_ISA=AVX2 ...) are how an AVX-512 CPU can stand in for an AVX2 one.
    environment = ", ".join(f"{key}={os.environ.get(key, 'unset')}" for key in ENVIRONMENT)
    print(f"torch {torch.__version__}, {cpu_kind()}, threads={args.threads}, {environment}")
    print("peak kernels (GFLOP/s, best of repeats, before the steps): "
          + ", ".join(f"{name} {rate / 1e9:.1f}" for name, rate in kernels.items())
          + f"; peak of the run {peak / 1e9:.1f}")  # fmt: skip
    print("| step | variant | GFLOP per step | median s | images/s | GFLOP/s | share of peak |")
    print("|---|---|---|---|---|---|---|")
    steps = (("train", train_seconds, args.batch_size), ("sample", sample_seconds, args.sample_batch_size))
    for step, seconds_of, batch_size in steps:
        for variant, seconds in seconds_of.items():
            achieved = flops[step] / seconds
            print(
                f"| {step} (batch {batch_size}) | {variant} | {flops[step] / 1e9:.2f} | {seconds:.4f} | "
                f"{batch_size / seconds:.1f} | {achieved / 1e9:.1f} | {achieved / peak:.0%} |"
            )
    if args.profile:
        fastest = min(train_seconds, key=train_seconds.get)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(5):
                train[fastest]()
        events = profiler.key_averages()
        print(f"\ntraining step, {fastest}: operators by self CPU time (5 steps)")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
