"""Every sampler at several step counts on one trained model: wall time and sample quality.

    python experiments/samplers/compare.py --ckpt outputs/<run>/checkpoints/last.ckpt \
        [--configs ddpm:50 ddim:20 strided ...] [--metrics fid digits --extractor domain] \
        [--data-root ../shared/datasets] [--num-samples 256] [--batch-size 256] [--seed 1234] \
        [--device cpu] [--guidance-scale W] [--guide-ckpt WEAKER_CKPT --guide-scale W] [--out experiments/samplers]

Each configuration (``sampler:steps``, or a sampler name alone for its config's default) draws
the same number of samples from the same starting noise (one generator seeded with --seed), so
differences come from the samplers alone (the noise is drawn on --device: a GPU's generator gives
other draws than the CPU's for the same seed). Quality is, without --metrics, the data module's own
sample metric (triangle validity for triangles), and with --metrics the sample metrics of
``python -m diffusion_lit.evaluate`` under the same definitions (FID with --extractor, digits,
...; a protocol card per row). The wall time is for the whole batch on this machine, divided
by the number of samples; network evaluations are counted. Writes results.json, a table
(results.md), quality against network calls per sampler (quality_vs_calls.png) and a grid of
the first samples of every configuration (samplers.png) to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffusion_lit.lit.build import attach_guide, data_module_for, load_checkpoint
from diffusion_lit.lit.sample_metrics import (
    SAMPLE_METRICS,
    SampleMetrics,
    card_for,
    check_metric_names,
    sample_metrics_config,
)
from diffusion_lit.runs.evaluation import count_network_calls
from diffusion_lit.utils.devices import resolve_device
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.images import grid_tensor, plt
from diffusion_lit.utils.paths import CONFIG_DIR

EXTRACTOR_OPTIONS = sorted(path.stem for path in (Path(CONFIG_DIR) / "extractor").glob("*.yaml"))

# The triangles study's configurations (experiments/samplers/README.md); a name alone is the
# sampler config's default (strided: stride 30 = 34 steps). ddim is pinned to the spacing it had
# when that study was measured (time; its config's default is logsnr since issue 23).
DEFAULT_CONFIGS = [
    "ddpm:1000", "ddpm:100", "ddpm:50", "ddpm:20",
    "ddim:100,spacing=time", "ddim:50,spacing=time", "ddim:20,spacing=time", "ddim:10,spacing=time",
    "strided",
    "dpm_solver:25", "dpm_solver:20", "dpm_solver:10",
    "dpm_solver_sde:50", "dpm_solver_sde:25", "dpm_solver_sde:20", "dpm_solver_sde:10",
    "sde:1000", "sde:250",
    "ode:50", "ode:20", "ode:10",
]  # fmt: skip
PLOTTED = ("triangle_validity", "fid", "kid", "precision", "recall", "digits_confident_share")
ROW_KEYS = ("sampler", "steps", "label", "network_calls", "seconds_per_sample", "protocol")


def parse_config(text: str) -> tuple[str, int | None, list[str]]:
    """``sampler[:steps][,key=value...]``, e.g. ``heun:18,spacing=karras``: (name, steps, options)."""
    head, *options = text.split(",")
    name, _, steps = head.partition(":")
    if (steps and not steps.isdigit()) or not all("=" in option for option in options):
        raise UserError(
            "--configs entries are sampler[:steps][,key=value...] (e.g. ddim:50 or heun:18,spacing=karras), "
            f"got {text!r}."
        )
    return name, int(steps) if steps else None, options


def sampler_config(name: str, steps: int | None, options: list[str] = ()):
    overrides = [f"sampler={name}"] + ([f"sampler.steps={steps}"] if steps is not None else [])
    overrides += [f"sampler.{option}" for option in options]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="sample", overrides=["ckpt=unused", *overrides]).sampler


def write_table(rows: list[dict], out: Path) -> list[str]:
    metric_names = [key for key in rows[0] if key not in ROW_KEYS and isinstance(rows[0][key], (int, float))]
    lines = ["| sampler | network calls | s / sample | " + " | ".join(metric_names) + " |",
             "|---|---|---|" + "---|" * len(metric_names)]  # fmt: skip
    for row in rows:
        values = " | ".join(f"{row[key]:.3f}" for key in metric_names)
        lines.append(f"| {row['label']} | {row['network_calls']} | {row['seconds_per_sample']:.3f} | {values} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return metric_names


def plot_quality(rows: list[dict], metric_names: list[str], path: Path) -> None:
    """One panel per quality metric: value against network calls, one line per sampler (with its options)."""
    shown = [name for name in metric_names if name in PLOTTED]
    figure, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], shown, strict=True):
        for sampler in dict.fromkeys(row["sampler"] for row in rows):
            points = sorted((row["network_calls"], row[metric]) for row in rows if row["sampler"] == sampler)
            axis.plot(*zip(*points, strict=True), marker="o", markersize=4, label=sampler)
        axis.set(xscale="log", xlabel="network calls per sample", ylabel=metric)
        if metric.startswith(("fid", "kid")):
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--configs", nargs="*", default=DEFAULT_CONFIGS, help="sampler or sampler:steps entries")
    parser.add_argument("--only", nargs="*", help="run only these sampler names")
    parser.add_argument("--metrics", nargs="*", default=[], help=f"among {', '.join(SAMPLE_METRICS)}")
    parser.add_argument(
        "--extractor", default="domain", choices=EXTRACTOR_OPTIONS, help="feature network of fid/kid/precision_recall"
    )
    parser.add_argument("--num-real", type=int, default=10000, help="real reference images of the feature metrics")
    parser.add_argument("--data-root", default=None, help="MNIST / CIFAR-10 folder, if not the checkpoint's")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (a GPU where there is one)")
    parser.add_argument(
        "--guidance-scale", type=float, default=None,
        help="classifier-free guidance of a class-conditional model (default: the checkpoint's model.guidance_scale; "
        "1 for a reflow of a guided model, whose pairs carry the guidance)",
    )  # fmt: skip
    parser.add_argument(
        "--weights", choices=("ema", "raw"), default="ema",
        help="the checkpoint's EMA weights (what every command samples from) or the optimizer's raw ones beside them",
    )  # fmt: skip
    parser.add_argument(
        "--guide-ckpt", type=Path, default=None,
        help="autoguidance (Karras et al. 2024) by this weaker checkpoint of the same data; its calls are counted",
    )  # fmt: skip
    parser.add_argument("--guide-scale", type=float, default=2.0, help="the autoguidance weight w (with --guide-ckpt)")
    parser.add_argument("--out", type=Path, default=Path("experiments/samplers"))
    args = parser.parse_args()
    configs = [parse_config(text) for text in args.configs]
    check_metric_names(args.metrics, SAMPLE_METRICS)

    device = resolve_device(args.device)
    module = load_checkpoint(args.ckpt, weights=args.weights).to(device)
    if args.guidance_scale is not None:
        if not module.num_classes:
            raise UserError(f"--guidance-scale needs a class-conditional model; {args.ckpt} is unconditional.")
        module.guidance_scale = args.guidance_scale
    attach_guide(module, args.guide_ckpt, args.guide_scale)
    datamodule = data_module_for(module, {"root": args.data_root})
    extractor = instantiate(OmegaConf.load(Path(CONFIG_DIR) / "extractor" / f"{args.extractor}.yaml"))
    metrics = SampleMetrics(args.metrics, module, datamodule, sample_metrics_config(args.num_real), extractor)
    calls = count_network_calls(module)
    module.sample(2)  # warm-up: the first calls allocate and pick kernels
    rows, grids = [], []
    for name, steps, options in configs:
        if args.only and name not in args.only:
            continue
        cfg = sampler_config(name, steps, options)
        module.sampler = instantiate(cfg)
        calls()  # reset the count
        generator = torch.Generator(device=device).manual_seed(args.seed)
        started = time.perf_counter()
        samples = module.sample_in_batches(args.num_samples, args.batch_size, generator=generator)
        seconds = time.perf_counter() - started
        batches = -(-args.num_samples // args.batch_size)
        labels = module.default_labels(args.num_samples)  # what sample_in_batches asked a conditional model for
        quality = metrics(samples, labels) if args.metrics else datamodule.sample_metrics(samples)
        label = f"{name} {cfg.get('steps') or ('stride ' + str(cfg.stride) if name == 'strided' else 'all')}"
        label += "".join(f", {option}" for option in options) + (", raw weights" if args.weights == "raw" else "")
        label += f", autoguided w={args.guide_scale:g}" if args.guide_ckpt else ""
        if "triangle_validity" in quality:  # binomial standard error of the share
            share = quality["triangle_validity"]
            quality["triangle_validity_se"] = (share * (1.0 - share) / args.num_samples) ** 0.5
        row = {"sampler": ",".join([name, *options]), "steps": cfg.get("steps"),
               "label": label, "network_calls": calls() // batches, "seconds_per_sample": seconds / args.num_samples,
               **quality}  # fmt: skip
        if args.metrics:
            row["protocol"] = card_for(
                module, metrics, OmegaConf.to_container(cfg), args.num_samples, args.seed, module.guidance_scale,
                str(args.ckpt.resolve()),
            )  # fmt: skip
        rows.append(row)
        grids.append((label, grid_tensor(samples[:16], nrow=16)))
        print(json.dumps({key: value for key, value in row.items() if key != "protocol"}), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    metric_names = write_table(rows, args.out)
    plot_quality(rows, metric_names, args.out / "quality_vs_calls.png")
    fig, axes = plt.subplots(len(grids), 1, figsize=(12, 0.9 * len(grids) + 0.5), squeeze=False)
    for ax, (label, grid) in zip(axes[:, 0], grids, strict=True):
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out / "samplers.png", dpi=100)


if __name__ == "__main__":
    main()
