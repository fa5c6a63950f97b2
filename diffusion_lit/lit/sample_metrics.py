"""Sample metrics of a trained module against its data: FID, KID and precision/recall in a
feature network's space, triangle validity and distances, memorisation, recognisable digits.

Shared by ``evaluate``, the final samples of a training run and the FID callback, so that a
number means the same wherever it is computed; every result gets a protocol card.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from diffusion_lit.data.base import first_batches, split_set
from diffusion_lit.data.batch import images_of, labels_of
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.metrics import fid as fid_metrics
from diffusion_lit.metrics.features import DomainFeatures, FeatureExtractor, check_extractor
from diffusion_lit.metrics.memorization import memorization_report, save_gallery
from diffusion_lit.metrics.protocol import protocol_card
from diffusion_lit.metrics.triangles import triangle_distribution_distances, triangle_validity
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import atomic_write

SAMPLE_METRICS = ("fid", "kid", "precision_recall", "triangles", "memorization", "digits")
FEATURE_METRICS = ("fid", "kid", "precision_recall")
CONFIDENT = 0.9  # classifier confidence that counts a sample as a recognisable digit


def check_metric_names(names: list[str], allowed: tuple[str, ...], key: str = "metrics") -> None:
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise UserError(f"{key} must be among {list(allowed)}, got {unknown!r}.")


def needs_extractor(names: list[str], extractor: FeatureExtractor) -> set[FeatureExtractor]:
    """The feature networks the sample metrics ``names`` load (digits always uses the domain one)."""
    wanted = {extractor} if set(names) & set(FEATURE_METRICS) else set()
    return wanted | ({DomainFeatures} if "digits" in names else set())


def extractor_of(node: Any, key: str) -> FeatureExtractor:
    """The feature network class a config node (``conf/extractor/*.yaml``) selects."""
    return check_extractor(node if isinstance(node, str) else instantiate(node), key)


def check_extractor_weights(names: list[str], extractor: FeatureExtractor, data_dir: str | Path) -> None:
    """Raise now, with what to do, if a feature network the metrics ``names`` need has no weights
    (an hour of training should not end in a missing-file error)."""
    for needed in needs_extractor(names, extractor):
        needed.weights_path(data_dir)


def real_batches(datamodule: Any, split: str, count: int, batch_size: int) -> Iterator[tuple]:
    """(images, labels or None) batches of the first ``count`` images of ``split``."""
    for batch in first_batches(datamodule, split, count, batch_size):
        yield images_of(batch), labels_of(batch)


def real_images(datamodule: Any, split: str, count: int) -> torch.Tensor:
    return torch.cat([images for images, _ in real_batches(datamodule, split, count, 512)])


def real_features(
    extractor: nn.Module,
    datamodule: Any,
    split: str,
    num_images: int,
    cache_dir: Path,
    batch_size: int = 64,
) -> torch.Tensor:
    """Features of the first ``num_images`` images of a split (train or val), from the cache
    ``cache_dir/<key>.pt`` or extracted now and cached (atomically).

    The key names the data module class and what determines the split's images
    (``split_signature``), the extractor and its weights hash, the image size and the count, so
    a change of any of them extracts anew.
    """
    count = min(num_images, len(split_set(datamodule, split)))
    key = {
        "data": type(datamodule).__name__,
        "images": datamodule.split_signature(split),
        "split": split,
        "extractor": extractor.name,
        "weights": extractor.weights_sha256,
        "size": datamodule.image_size,
        "count": count,
    }
    name = f"{type(datamodule).__name__.lower()}_{split}_{extractor.name}_{datamodule.image_size}px_n{count}"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"{name}_{digest}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)["features"]
        except Exception:  # damaged: extract again below
            pass
    batches = first_batches(datamodule, split, count, batch_size)
    features = fid_metrics.extract_features(extractor, (images_of(batch) for batch in batches), batch_size)
    with atomic_write(path) as file:
        torch.save({"features": features, "key": key}, file)
    return features


class SampleMetrics:
    """Computes the sample metrics of one evaluation, loading the extractor and the real
    reference data once and reusing them for every sampler setting of a sweep."""

    def __init__(
        self,
        names: list[str],
        module: DiffusionModule,
        datamodule: Any,
        cfg: DictConfig,
        extractor: FeatureExtractor = DomainFeatures,
    ) -> None:
        """``cfg`` holds the options of :func:`sample_metrics_config`; ``extractor`` is the feature
        network class of FID, KID and precision/recall (conf/extractor/)."""
        # The real data of the comparison: for a reflow model's pairs, the data its teacher learnt.
        self.names, self.module, self.datamodule, self.cfg = names, module, datamodule.reference_data(), cfg
        self.extractor_class = extractor
        self._extractors: dict[FeatureExtractor, Any] = {}
        self._real_features: torch.Tensor | None = None
        self._real_images: torch.Tensor | None = None
        self._heldout: torch.Tensor | None = None
        self._real_triangles = None

    def loaded(self, extractor: FeatureExtractor):
        if extractor not in self._extractors:
            self._extractors[extractor] = extractor.from_data_dir(self.datamodule.data_dir).to(self.module.device)
        return self._extractors[extractor]

    @property
    def extractor(self):
        """The feature network of FID, KID and precision/recall, loaded."""
        return self.loaded(self.extractor_class)

    @property
    def real_features(self) -> torch.Tensor:
        if self._real_features is None:
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
            if samples.shape[1] != 1:
                raise UserError("metrics=triangles needs the triangle data (1 channel).")
            if self._real_triangles is None:  # the real images' fitted triangles, once per evaluation
                self._real_triangles = triangle_validity(self.real_images)
            generated = triangle_validity(samples)  # fitted once for the rate and the distances
            results["triangle_validity"] = generated.rate
            results.update(triangle_distribution_distances(generated, self._real_triangles))
        if "memorization" in self.names:
            results.update(memorization_report(samples, self.real_images, self.heldout_images(samples.shape[0])))
            if self.cfg.gallery:
                console.print(f"wrote {save_gallery(samples[:8], self.real_images, self.cfg.gallery)}", highlight=False)
        if "digits" in self.names:
            probabilities = self.loaded(DomainFeatures).probabilities(samples.to(self.module.device)).cpu()
            confidence, predicted = probabilities.max(dim=1)
            counts = torch.bincount(predicted, minlength=probabilities.shape[1]).double()
            results["digits_confident_share"] = float((confidence > CONFIDENT).float().mean())
            results["digits_classes_present"] = int((counts > 0).sum())
            results["digits_class_share_min"] = float(counts.min() / counts.sum())
            results["digits_class_share_max"] = float(counts.max() / counts.sum())
            if labels is not None:
                results["digits_label_accuracy"] = float((predicted == labels.cpu()).float().mean())
        return results


def sample_metrics_config(num_real: int, reference_split: str = "train") -> DictConfig:
    """The options :class:`SampleMetrics` reads, with ``evaluate``'s defaults for the rest
    (for callers outside the evaluate command: training runs, experiment scripts)."""
    return OmegaConf.create(
        {
            "num_real": num_real, "reference_split": reference_split, "batch_size": 256,
            "kid": {"subset_size": 1000, "subsets": 100}, "precision_recall": {"k": 3}, "gallery": None,
        }
    )  # fmt: skip


def training_run_metrics(
    names: list[str], module: DiffusionModule, datamodule: Any, eval_cfg: DictConfig, samples: torch.Tensor
) -> dict[str, Any]:
    """The sample metrics ``eval.metrics`` of a training run's final samples, with the same
    definitions as ``evaluate`` (feature metrics named ``fid/<extractor>`` etc., as the FID
    callback logs them) and a protocol card."""
    cfg = sample_metrics_config(eval_cfg.num_real, eval_cfg.reference_split)
    metrics = SampleMetrics(names, module, datamodule, cfg, extractor_of(eval_cfg.extractor, "eval.extractor"))
    values = metrics(samples, module.default_labels(samples.shape[0]))  # the labels sample_in_batches used
    per_extractor = ("fid", "kid", "kid_std", "precision", "recall")
    results = {
        f"{key}/{metrics.extractor_class.name}" if key in per_extractor else key: value for key, value in values.items()
    }
    results["metrics_protocol"] = card_for(
        module, metrics, module.run_config.get("sampler", {}), int(samples.shape[0]), int(eval_cfg.seed),
        module.guidance_scale, checkpoint=None,
    )  # fmt: skip
    return results


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
