"""The evaluation run of ``python -m diffusion_lit.evaluate ckpt=PATH metrics=[fid,kid]``.

Metrics (``metrics=`` one name or a list):

* ``nll``: the negative log-likelihood of real images (``split``, ``num_images``) in bits per
  dimension. ``nll.method=bound``: the variational bound, with its prior, diffusion and decoder
  terms; ``nll.method=ode``: the probability-flow ODE's likelihood of the dequantized images by
  Hutchinson's trace estimator (flow and EDM checkpoints; its variance is reported,
  :mod:`diffusion_lit.diffusion.ode_likelihood`). Class-conditional models are evaluated given
  each image's label (guidance scale 1).
* ``fid``, ``kid``, ``precision_recall``: ``num_samples`` generated images against
  ``num_real`` real images of ``reference_split``, in the feature space of ``extractor``
  (``inception`` or ``domain``; see :mod:`diffusion_lit.metrics.features`). Real features are
  cached per (dataset, split, extractor, size, count).
* ``triangles``: triangle validity and the 1-D Wasserstein distances between generated and
  real triangles' area, angles and centroid (triangle data only).
* ``memorization``: nearest-training-image distances of generated samples against those of
  held-out real images; ``gallery=PATH`` also draws each sample beside its nearest
  training images.
* ``digits``: share of samples the domain MNIST classifier labels with confidence > 0.9, and
  how evenly the predicted classes spread.

Sample metrics use the checkpoint's sampler unless ``sampler=...`` is given;
``sweep_steps=[10,20,50]`` repeats them for each number of steps and writes a table and a
plot against the number of network evaluations. Every result carries a protocol card
(extractor and weights hash, image counts, sampler and steps, EMA, seed, split, versions).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from diffusion_lit.diffusion.likelihood import variational_bound
from diffusion_lit.diffusion.ode_likelihood import OdeLikelihood, probability_flow_nll
from diffusion_lit.lit.build import attach_guide, data_module_for, load_checkpoint, sampler_config
from diffusion_lit.lit.count_module import CountDiffusionModule
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.lit.sample_metrics import (
    SAMPLE_METRICS,
    SampleMetrics,
    card_for,
    check_metric_names,
    extractor_of,
    real_batches,
)
from diffusion_lit.metrics.protocol import nll_protocol_card
from diffusion_lit.runs.config_schema import EvaluateConfig, check_config_types
from diffusion_lit.utils.console import console
from diffusion_lit.utils.devices import resolve_device
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import atomic_write
from diffusion_lit.utils.images import plt

# Strata of the count process's bound when nll.timesteps is null (its integral has no T steps).
COUNT_BOUND_LEVELS = 100


def evaluate_nll(module: DiffusionModule, datamodule: Any, cfg: DictConfig) -> dict[str, Any]:
    """Bits per dimension, averaged over the evaluated images: of the variational bound (a
    Gaussian model's discrete-time bound with its decoder on the data's grid, or a count model's
    continuous-time bound on the counts, :func:`~diffusion_lit.diffusion.counts.count_bound`), or
    with ``nll.method=ode`` of the probability-flow ODE on dequantized images."""
    method = cfg.nll.method
    if method == "ode" and isinstance(module, CountDiffusionModule):
        raise UserError("nll.method=ode is for Gaussian formulations (flow, edm); count models have nll.method=bound.")
    generator = torch.Generator(device=module.device).manual_seed(cfg.seed)
    totals: dict[str, float] = {}
    ode_parts: list[OdeLikelihood] = []  # per image, joined at the end (standard errors do not average)
    count, started = 0, time.perf_counter()
    # Count images (data.counts) sit on a grid of count_max + 1 levels, not the 8-bit one.
    counts = getattr(datamodule, "photon_counts", None)
    bins = counts.count_max if counts is not None else 255
    for images, labels in real_batches(datamodule, cfg.split, cfg.num_images, cfg.batch_size):
        images = images.to(module.device)
        conditional = labels is not None and module.num_classes > 0
        if isinstance(module, CountDiffusionModule):
            conditioning = labels.to(module.device) if conditional else None
            terms = module.variational_bound(images, conditioning, cfg.nll.timesteps or COUNT_BOUND_LEVELS, generator)
        else:
            model_fn = module.eps_fn(labels.to(module.device), guidance_scale=1.0) if conditional else module.eps_fn()
            if method == "ode":
                ode_parts.append(probability_flow_nll(
                    model_fn, module.schedule, images, trace=cfg.nll.trace, probes=cfg.nll.probes, rtol=cfg.nll.rtol,
                    atol=cfg.nll.atol, bins=bins, generator=generator,
                ))  # fmt: skip
            else:
                terms = variational_bound(
                    model_fn, module.schedule, images, timesteps=cfg.nll.timesteps, variance=cfg.nll.variance,
                    generator=generator, bins=bins,
                )  # fmt: skip
        if method != "ode":
            for name, value in terms.bits_per_dim().items():
                totals[name] = totals.get(name, 0.0) + value * images.shape[0]
        count += images.shape[0]
        console.print(f"nll: {count} images, {time.perf_counter() - started:.0f} s", highlight=False)
    results: dict[str, Any] = {name: value / count for name, value in totals.items()}
    if ode_parts:
        joined = OdeLikelihood.joined(ode_parts)
        results.update(joined.bits_per_dim())
        results["nll_velocity_evaluations"] = joined.velocity_evaluations
    results["nll_num_images"] = count
    results["nll_protocol"] = nll_protocol_card(
        run_config=module.run_config, image_shape=module.image_shape, num_timesteps=module.schedule.num_timesteps,
        split=cfg.split, num_images=count, timesteps=cfg.nll.timesteps, variance=cfg.nll.variance, seed=cfg.seed,
        checkpoint=str(Path(cfg.ckpt).resolve()),
        ode=OmegaConf.to_container(cfg.nll) if method == "ode" else None,
    )  # fmt: skip
    return results


def count_network_calls(module: DiffusionModule) -> Callable[[], int]:
    """Wrap the net's forward (and the autoguidance guide's) to count calls; returns a function
    that reads and resets the count."""
    calls = [0]

    def count(net: torch.nn.Module) -> None:
        forward = net.forward

        def counting(*args: Any, **kwargs: Any):
            calls[0] += 1
            return forward(*args, **kwargs)

        net.forward = counting

    for counted in (module, module.guide):
        if counted is not None:
            count(counted.net)

    def read() -> int:
        value, calls[0] = calls[0], 0
        return value

    return read


def generate(module: DiffusionModule, cfg: DictConfig, calls: Callable[[], int]) -> tuple[torch.Tensor, dict]:
    """``num_samples`` samples with the module's sampler, and what they cost."""
    generator = torch.Generator(device=module.device).manual_seed(cfg.seed)
    calls()
    started = time.perf_counter()
    samples = module.sample_in_batches(
        cfg.num_samples, cfg.sample_batch_size, generator=generator, guidance_scale=cfg.get("guidance_scale"),
        on_batch=lambda done, total: console.print(f"sampling {done}/{total} ...", highlight=False),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    batches = math.ceil(cfg.num_samples / cfg.sample_batch_size)
    return samples, {"network_calls": calls() // batches, "sampling_seconds_per_sample": seconds / cfg.num_samples}


def sweep_outputs(rows: list[dict[str, Any]], out: str | None) -> None:
    """Table (and, with ``out``, a plot next to it) of the sample metrics against network calls."""
    keys = [k for k in rows[0] if k not in ("protocol",) and isinstance(rows[0][k], (int, float))]
    table = Table(title="sweep over sampler steps")
    for key in keys:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*[f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys])
    console.print(table)
    if out:
        metric = next((k for k in ("fid", "kid", "triangle_validity", "digits_confident_share") if k in rows[0]), None)
        if metric:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            ax.plot([r["network_calls"] for r in rows], [r[metric] for r in rows], "o-")
            ax.set_xscale("log")
            ax.set_xlabel("network evaluations per sample")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = Path(out).with_suffix(".png")
            fig.savefig(path, dpi=110)
            console.print(f"wrote {path}", highlight=False)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    check_config_types(cfg, EvaluateConfig)
    names = [cfg.metrics] if isinstance(cfg.metrics, str) else list(cfg.metrics)
    if not names:
        raise UserError(f"metrics must be among {['nll', *SAMPLE_METRICS]}, got none.")
    check_metric_names(names, ("nll", *SAMPLE_METRICS))
    for key in ("num_images", "num_samples", "num_real", "batch_size", "sample_batch_size"):
        if cfg[key] < 1:
            raise UserError(f"{key} must be >= 1, got {cfg[key]!r}.")
    device = resolve_device(cfg.device)
    module = load_checkpoint(cfg.ckpt, sampler=cfg.get("sampler"), sample_precision=cfg.get("sample_precision"))
    module = module.to(device)
    attach_guide(module, cfg.get("guide_ckpt"), cfg.get("guide_scale", 2.0))
    datamodule = data_module_for(module, cfg.get("data"))
    results: dict[str, Any] = {}
    if "nll" in names:
        results.update(evaluate_nll(module, datamodule, cfg))

    sample_names = [name for name in names if name in SAMPLE_METRICS]
    if sample_names:
        metrics = SampleMetrics(sample_names, module, datamodule, cfg, extractor_of(cfg.extractor, "extractor"))
        calls = count_network_calls(module)
        sampler_cfg = sampler_config(module.run_config["sampler"], cfg.get("sampler"))
        rows = []
        for steps in list(cfg.sweep_steps or [None]):
            if steps is not None:
                sampler_cfg.steps = steps
                module.sampler = instantiate(sampler_cfg)
            samples, cost = generate(module, cfg, calls)
            quality = metrics(samples, module.default_labels(cfg.num_samples))  # generate's labels
            row = {"steps": steps if steps is not None else sampler_cfg.get("steps"), **cost, **quality}
            row["protocol"] = card_for(
                module, metrics, OmegaConf.to_container(sampler_cfg), cfg.num_samples, cfg.seed,
                cfg.get("guidance_scale"), str(Path(cfg.ckpt).resolve()),
            )  # fmt: skip
            rows.append(row)
        if cfg.sweep_steps:
            results["sweep"] = rows
            sweep_outputs(rows, cfg.out)
        else:
            results.update(rows[0])

    table = Table(title=f"{Path(cfg.ckpt).name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results.items():
        if isinstance(value, (int, float)):
            table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if "protocol" in results:
        console.print("protocol: " + json.dumps(results["protocol"]), highlight=False, soft_wrap=True)
    if cfg.out:
        with atomic_write(cfg.out) as file:
            file.write(json.dumps(results, indent=2, default=str).encode())
        console.print(f"wrote {cfg.out}", highlight=False)
    return results
