"""Evaluate a trained checkpoint: ``python -m diffusion_lit.evaluate ckpt=PATH metrics=[fid,kid]``.

Metrics (``metrics=`` one name or a list):

* ``nll``: the variational bound on the negative log-likelihood of real images (``split``,
  ``num_images``) in bits per dimension, with its prior, diffusion and decoder terms.
  Class-conditional models are evaluated given each image's label (guidance scale 1).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from diffusion_lit.build import attach_guide, data_module_for, load_checkpoint
from diffusion_lit.cli import CONFIG_DIR, console, report_user_errors
from diffusion_lit.data.base import first_batches
from diffusion_lit.diffusion.likelihood import variational_bound
from diffusion_lit.errors import UserError
from diffusion_lit.files import atomic_write
from diffusion_lit.lit.module import DiffusionModule, images_of, labels_of
from diffusion_lit.metrics.protocol import protocol_card

SAMPLE_METRICS = ("fid", "kid", "precision_recall", "triangles", "memorization", "digits")
FEATURE_METRICS = ("fid", "kid", "precision_recall")
CONFIDENT = 0.9  # classifier confidence that counts a sample as a recognisable digit


def check_metric_names(names: list[str], allowed: tuple[str, ...], key: str = "metrics") -> None:
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise UserError(f"{key} must be among {list(allowed)}, got {unknown!r}.")


def needs_extractor(names: list[str], extractor: str) -> set[str]:
    """The feature networks the sample metrics ``names`` load (digits always uses the domain one)."""
    wanted = {extractor} if set(names) & set(FEATURE_METRICS) else set()
    return wanted | ({"domain"} if "digits" in names else set())


def real_batches(datamodule: Any, split: str, count: int, batch_size: int) -> Iterator[tuple]:
    """(images, labels or None) batches of the first ``count`` images of ``split``."""
    for batch in first_batches(datamodule, split, count, batch_size):
        yield images_of(batch), labels_of(batch)


def real_images(datamodule: Any, split: str, count: int) -> torch.Tensor:
    return torch.cat([images for images, _ in real_batches(datamodule, split, count, 512)])


def evaluate_nll(module: DiffusionModule, datamodule: Any, cfg: DictConfig) -> dict[str, float]:
    """Bits per dimension of the variational bound, averaged over the evaluated images."""
    generator = torch.Generator(device=module.device).manual_seed(cfg.seed)
    totals: dict[str, float] = {}
    count, started = 0, time.perf_counter()
    for images, labels in real_batches(datamodule, cfg.split, cfg.num_images, cfg.batch_size):
        images = images.to(module.device)
        conditional = labels is not None and module.num_classes > 0
        model_fn = module.eps_fn(labels.to(module.device), guidance_scale=1.0) if conditional else module.eps_fn()
        terms = variational_bound(
            model_fn, module.schedule, images, timesteps=cfg.nll.timesteps, variance=cfg.nll.variance,
            generator=generator,
        )  # fmt: skip
        for name, value in terms.bits_per_dim().items():
            totals[name] = totals.get(name, 0.0) + value * images.shape[0]
        count += images.shape[0]
        console.print(f"nll: {count} images, {time.perf_counter() - started:.0f} s", highlight=False)
    results = {name: value / count for name, value in totals.items()}
    results["nll_num_images"] = count
    return results


class SampleMetrics:
    """Computes the sample metrics of one evaluation, loading the extractor and the real
    reference data once and reusing them for every sampler setting of a sweep."""

    def __init__(self, names: list[str], module: DiffusionModule, datamodule: Any, cfg: DictConfig) -> None:
        self.names, self.module, self.datamodule, self.cfg = names, module, datamodule, cfg
        self._extractors: dict[str, Any] = {}
        self._real_features: torch.Tensor | None = None
        self._real_images: torch.Tensor | None = None
        self._heldout: torch.Tensor | None = None
        self._real_triangles = None

    def extractor_named(self, name: str):
        if name not in self._extractors:
            from diffusion_lit.metrics.features import load_extractor

            self._extractors[name] = load_extractor(name, self.datamodule.data_dir).to(self.module.device)
        return self._extractors[name]

    @property
    def extractor(self):
        """The feature network of FID, KID and precision/recall (``extractor=``)."""
        return self.extractor_named(self.cfg.extractor)

    @property
    def real_features(self) -> torch.Tensor:
        if self._real_features is None:
            from diffusion_lit.metrics.fid import real_features

            console.print(f"real features: {self.cfg.num_real} {self.cfg.reference_split} images ...", highlight=False)
            self._real_features = real_features(
                self.extractor, self.datamodule, self.cfg.reference_split, self.cfg.num_real,
                Path(self.datamodule.data_dir) / "fid_features", self.cfg.batch_size,
            )  # fmt: skip
        return self._real_features

    @property
    def real_images(self) -> torch.Tensor:
        if self._real_images is None:
            self._real_images = real_images(self.datamodule, self.cfg.reference_split, self.cfg.num_real)
        return self._real_images

    def heldout_images(self, count: int) -> torch.Tensor:
        """The first ``count`` validation images (loaded once for all rows of a sweep)."""
        if self._heldout is None or self._heldout.shape[0] != count:
            self._heldout = real_images(self.datamodule, "val", count)
        return self._heldout

    def __call__(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """The metrics of ``samples`` (N, C, H, W); ``labels`` (N,), the classes a conditional
        model was asked for, add ``digits_label_accuracy`` (share classified as asked)."""
        from diffusion_lit.metrics import fid as fid_metrics

        results: dict[str, float] = {}
        fake = None
        if set(self.names) & set(FEATURE_METRICS):
            started = time.perf_counter()
            fake = fid_metrics.extract_features(self.extractor, samples, self.cfg.batch_size)
            results["feature_seconds_per_1000"] = (time.perf_counter() - started) / samples.shape[0] * 1000
        if "fid" in self.names:
            results["fid"] = fid_metrics.frechet_distance(self.real_features, fake)
        if "kid" in self.names:
            results["kid"], results["kid_std"] = fid_metrics.kernel_inception_distance(
                self.real_features, fake, self.cfg.kid.subset_size, self.cfg.kid.subsets
            )
        if "precision_recall" in self.names:
            results["precision"], results["recall"] = fid_metrics.precision_recall(
                self.real_features, fake, self.cfg.precision_recall.k
            )
        if "triangles" in self.names:
            from diffusion_lit.metrics.triangles import triangle_distribution_distances, triangle_validity

            if samples.shape[1] != 1:
                raise UserError("metrics=triangles needs the triangle data (1 channel).")
            if self._real_triangles is None:  # the real images' fitted triangles, once per evaluation
                self._real_triangles = triangle_validity(self.real_images)
            generated = triangle_validity(samples)  # fitted once for the rate and the distances
            results["triangle_validity"] = generated.rate
            results.update(triangle_distribution_distances(generated, self._real_triangles))
        if "memorization" in self.names:
            from diffusion_lit.metrics.memorization import memorization_report, save_gallery

            results.update(memorization_report(samples, self.real_images, self.heldout_images(samples.shape[0])))
            if self.cfg.gallery:
                console.print(f"wrote {save_gallery(samples[:8], self.real_images, self.cfg.gallery)}", highlight=False)
        if "digits" in self.names:
            probabilities = self.extractor_named("domain").probabilities(samples.to(self.module.device)).cpu()
            confidence, predicted = probabilities.max(dim=1)
            counts = torch.bincount(predicted, minlength=probabilities.shape[1]).double()
            results["digits_confident_share"] = float((confidence > CONFIDENT).float().mean())
            results["digits_classes_present"] = int((counts > 0).sum())
            results["digits_class_share_min"] = float(counts.min() / counts.sum())
            results["digits_class_share_max"] = float(counts.max() / counts.sum())
            if labels is not None:
                results["digits_label_accuracy"] = float((predicted == labels.cpu()).float().mean())
        return results


def sample_metrics_config(extractor: str, num_real: int, reference_split: str = "train") -> DictConfig:
    """The options :class:`SampleMetrics` reads, with ``evaluate``'s defaults for the rest
    (for callers outside the evaluate command: training runs, experiment scripts)."""
    return OmegaConf.create(
        {
            "extractor": extractor, "num_real": num_real, "reference_split": reference_split, "batch_size": 256,
            "kid": {"subset_size": 1000, "subsets": 100}, "precision_recall": {"k": 3}, "gallery": None,
        }
    )  # fmt: skip


def training_run_metrics(
    names: list[str], module: DiffusionModule, datamodule: Any, eval_cfg: DictConfig, samples: torch.Tensor
) -> dict[str, Any]:
    """The sample metrics ``eval.metrics`` of a training run's final samples, with the same
    definitions as ``evaluate`` (feature metrics named ``fid/<extractor>`` etc., as the FID
    callback logs them) and a protocol card."""
    cfg = sample_metrics_config(eval_cfg.extractor, eval_cfg.num_real, eval_cfg.reference_split)
    metrics = SampleMetrics(names, module, datamodule, cfg)
    values = metrics(samples, module.default_labels(samples.shape[0]))  # the labels sample_in_batches used
    per_extractor = ("fid", "kid", "kid_std", "precision", "recall")
    results = {f"{key}/{cfg.extractor}" if key in per_extractor else key: value for key, value in values.items()}
    results["metrics_protocol"] = card_for(
        module, metrics, module.run_config.get("sampler", {}), int(samples.shape[0]), int(eval_cfg.seed),
        module.guidance_scale, checkpoint=None,
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


def card_for(
    module: DiffusionModule,
    metrics: SampleMetrics,
    sampler: dict[str, Any],
    num_generated: int,
    seed: int,
    guidance_scale: float | None,
    checkpoint: str | None,
) -> dict:
    """The protocol card of one row of results (an evaluation, or a training run's final samples)."""
    features = set(metrics.names) & set(FEATURE_METRICS)
    return protocol_card(
        run_config=module.run_config, image_shape=module.image_shape, sampler=sampler,
        num_generated=num_generated, seed=seed, extractor=metrics.extractor if features else None,
        num_real=int(metrics.real_features.shape[0]) if features else None,
        reference_split=metrics.cfg.reference_split if features else None,
        guidance_scale=guidance_scale if module.num_classes else None, checkpoint=checkpoint,
        autoguidance=module.autoguidance,
    )  # fmt: skip


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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

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
    names = [cfg.metrics] if isinstance(cfg.metrics, str) else list(cfg.metrics)
    if not names:
        raise UserError(f"metrics must be among {['nll', *SAMPLE_METRICS]}, got none.")
    check_metric_names(names, ("nll", *SAMPLE_METRICS))
    for key in ("num_images", "num_samples", "num_real", "batch_size", "sample_batch_size"):
        if cfg[key] < 1:
            raise UserError(f"{key} must be >= 1, got {cfg[key]!r}.")
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    device = "cpu" if device == "auto" else device
    module = load_checkpoint(cfg.ckpt, sampler=cfg.get("sampler"), sample_precision=cfg.get("sample_precision"))
    module = module.to(device)
    attach_guide(module, cfg.get("guide_ckpt"), cfg.get("guide_scale", 2.0))
    datamodule = data_module_for(module, cfg.get("data"))
    results: dict[str, Any] = {}
    if "nll" in names:
        results.update(evaluate_nll(module, datamodule, cfg))

    sample_names = [name for name in names if name in SAMPLE_METRICS]
    if sample_names:
        metrics = SampleMetrics(sample_names, module, datamodule, cfg)
        calls = count_network_calls(module)
        sampler_cfg = OmegaConf.create(cfg.sampler if cfg.get("sampler") else module.run_config["sampler"])
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
