"""Every sampler at several step counts on one trained model: wall time and sample quality.

    python experiments/samplers/compare.py --ckpt outputs/<run>/checkpoints/last.ckpt \
        [--num-samples 256] [--batch-size 256] [--seed 1234] [--out experiments/samplers]

Each configuration draws the same number of samples from the same starting noise (one
generator seeded with --seed), so differences come from the samplers alone. Quality is the
data module's sample metric (triangle validity for triangles; see diffusion_lit/metrics). The
wall time is for the whole batch on this machine, divided by the number of samples; network
evaluations are counted. Writes results.json, a table (results.md) and a grid of the first
samples of every configuration (samplers.png) to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from diffusion_lit.build import (
    data_module_for,  # noqa: E402
    load_checkpoint,  # noqa: E402
)
from diffusion_lit.cli import CONFIG_DIR  # noqa: E402
from diffusion_lit.evaluate import count_network_calls  # noqa: E402
from diffusion_lit.images import grid_tensor  # noqa: E402

# (sampler config, steps); None = the config's default (strided: stride 30 = 34 steps).
CONFIGURATIONS = [
    ("ddpm", 1000), ("ddpm", 100), ("ddpm", 50), ("ddpm", 20),
    ("ddim", 100), ("ddim", 50), ("ddim", 20), ("ddim", 10),
    ("strided", None),
    ("dpm_solver", 25), ("dpm_solver", 20), ("dpm_solver", 10),
    ("dpm_solver_sde", 50), ("dpm_solver_sde", 25), ("dpm_solver_sde", 20), ("dpm_solver_sde", 10),
    ("sde", 1000), ("sde", 250),
    ("ode", 50), ("ode", 20), ("ode", 10),
]  # fmt: skip


def sampler_config(name: str, steps: int | None):
    overrides = [f"sampler={name}"] + ([f"sampler.steps={steps}"] if steps is not None else [])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="sample", overrides=["ckpt=unused", *overrides]).sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=Path("experiments/samplers"))
    parser.add_argument("--only", nargs="*", help="run only these sampler names")
    args = parser.parse_args()

    module = load_checkpoint(args.ckpt)
    datamodule = data_module_for(module, None)
    calls = count_network_calls(module)
    module.sample(2)  # warm-up: the first calls allocate and pick kernels
    rows, grids = [], []
    for name, steps in CONFIGURATIONS:
        if args.only and name not in args.only:
            continue
        cfg = sampler_config(name, steps)
        module.sampler = instantiate(cfg)
        calls()  # reset the count
        generator = torch.Generator().manual_seed(args.seed)
        started = time.perf_counter()
        samples = module.sample_in_batches(args.num_samples, args.batch_size, generator=generator)
        seconds = time.perf_counter() - started
        batches = -(-args.num_samples // args.batch_size)
        metrics = datamodule.sample_metrics(samples)
        label = f"{name} {cfg.get('steps') or ('stride ' + str(cfg.stride) if name == 'strided' else 'all')}"
        row = {"sampler": name, "steps": cfg.get("steps"), "label": label, "network_calls": calls() // batches,
               "seconds_per_sample": seconds / args.num_samples, **metrics}  # fmt: skip
        rows.append(row)
        grids.append((label, grid_tensor(samples[:16], nrow=16)))
        print(json.dumps(row), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    metric_names = [key for key in rows[0] if key not in ("sampler", "steps", "label", "network_calls",
                                                           "seconds_per_sample")]  # fmt: skip
    lines = ["| sampler | network calls | s / sample | " + " | ".join(metric_names) + " |",
             "|---|---|---|" + "---|" * len(metric_names)]  # fmt: skip
    for row in rows:
        values = " | ".join(f"{row[key]:.3f}" for key in metric_names)
        lines.append(f"| {row['label']} | {row['network_calls']} | {row['seconds_per_sample']:.3f} | {values} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, axes = plt.subplots(len(grids), 1, figsize=(12, 0.9 * len(grids) + 0.5))
    for ax, (label, grid) in zip(axes, grids, strict=True):
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out / "samplers.png", dpi=100)


if __name__ == "__main__":
    main()
