"""The machine's attainable FLOP/s, the denominator of every "share of peak" in these benchmarks.

    python experiments/benchmarks/peak.py [--repeats 20] [--dtype float32]

One timing of one matmul is a poor peak on a shared 2-core VM: a single reading inside a long
benchmark once gave 91 GFLOP/s where the same matmul reached 131-151 alone (issue 28). So the
peak here is the BEST (shortest) of ``repeats`` timings of each of several dense kernels, all
measured in the calling process at its thread count:

- ``torch_mm``: an n x n matmul in torch (oneDNN / MKL), 2 n^3 FLOPs;
- ``numpy_mm``: the same in numpy (OpenBLAS), float32 only;
- ``conv3x3_nchw`` / ``conv3x3_channels_last``: a 3x3 convolution, 64 -> 64 channels at 32 x 32,
  batch 64 (the shapes of a small U-Net's top level), 2 B H W C_in C_out 9 FLOPs, forward.

The peak is the largest of them. On a GPU only the torch matmul is measured (n = 8192, TF32 off).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a timed call includes it (no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_seconds(call: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """The shortest of ``repeats`` timed calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        call()
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def kernel_flops(dtype: torch.dtype = torch.float32, repeats: int = 20, device: str = "cpu") -> dict[str, float]:
    """FLOP/s of each dense kernel above, each the best of ``repeats`` timings."""
    n = 2048 if device == "cpu" else 8192
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    rates = {"torch_mm": 2 * n**3 / best_seconds(lambda: a @ b, repeats)}
    if device != "cpu":
        return rates
    if dtype == torch.float32:
        a_np, b_np = a.numpy(), b.numpy()
        rates["numpy_mm"] = 2 * n**3 / best_seconds(lambda: a_np @ b_np, repeats)
    batch, channels, size = 64, 64, 32
    conv_flops = 2 * batch * size * size * channels * channels * 9
    weight = torch.randn(channels, channels, 3, 3, dtype=dtype)
    for layout, memory_format in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        x = torch.randn(batch, channels, size, size, dtype=dtype).contiguous(memory_format=memory_format)
        w = weight.contiguous(memory_format=memory_format)
        with torch.inference_mode():
            seconds = best_seconds(lambda x=x, w=w: F.conv2d(x, w, padding=1), repeats)
        rates[f"conv3x3_{layout}"] = conv_flops / seconds
    return rates


def peak_flops(dtype: torch.dtype = torch.float32, repeats: int = 20, device: str = "cpu") -> tuple[float, dict]:
    """(the largest kernel rate, every kernel's rate), FLOP/s."""
    rates = kernel_flops(dtype, repeats, device)
    return max(rates.values()), rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    peak, rates = peak_flops(getattr(torch, args.dtype), args.repeats, args.device)
    for name, rate in rates.items():
        print(f"{name}: {rate / 1e9:.1f} GFLOP/s")
    print(f"peak ({args.dtype}, {torch.get_num_threads()} threads, best of {args.repeats}): {peak / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
