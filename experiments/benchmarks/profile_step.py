"""Where the time of one training step goes: torch.profiler's operator table for our U-Net.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \
        python experiments/benchmarks/profile_step.py [--size 3M] [--setting bf16] [--rows 15]

Builds the network of ``peers.py`` (same size classes and settings), runs warm-up steps, then
profiles ``--steps`` train steps (forward, MSE, backward, AdamW) and prints the operators by
total CPU time, with the share of the step spent in convolutions and matrix products (the
FLOP-dense part) against everything else (normalisation, activations, copies, the optimizer).
"""

from __future__ import annotations

import argparse

from peers import SETTINGS, SIZES, training  # the script beside this one
from torch.profiler import ProfilerActivity, profile

DENSE = ("conv", "mm", "addmm", "bmm", "matmul", "linear", "baddbmm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="3M", choices=list(SIZES))
    parser.add_argument("--setting", default="bf16", choices=list(SETTINGS))
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    _, step = training("ours", args.size, args.channels, 32, args.setting, args.batch_size)
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.steps):
            step()
    events = profiler.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(event.self_cpu_time_total for event in events)
    dense = sum(event.self_cpu_time_total for event in events if any(k in event.key.lower() for k in DENSE))
    print(f"ours {args.size} {args.setting}: convolutions and matrix products {dense / total:.0%} of self CPU time")


if __name__ == "__main__":
    main()
