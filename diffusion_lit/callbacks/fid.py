"""FID (and optionally KID) during training, on the EMA weights, with the configured sampler.

Runs at the end of every ``every_n_epochs``-th validation epoch (and the last one), while the
EMA callback has the averaged weights swapped in (``runs/training.py`` orders weight-averaging
callbacks last). Under DDP each rank generates its share of ``num_samples`` from its own seed
and only rank 0 contributes the real reference features; torchmetrics sums the metric states
over ranks in ``compute()``, so every rank logs the same value. The protocol card of the
numbers is logged once as hyperparameters (``fid_protocol``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from diffusion_lit.callbacks.cadence import is_due
from diffusion_lit.data.base import Split
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.lit.sample_metrics import real_features
from diffusion_lit.metrics.features import DomainFeatures, FeatureExtractor, check_extractor
from diffusion_lit.metrics.fid import PrecomputedFeatures, extract_features
from diffusion_lit.metrics.protocol import protocol_card
from diffusion_lit.utils.errors import UserError


class FIDCallback(Callback):
    """Logs ``fid/<extractor>`` (and ``kid/<extractor>``) every ``every_n_epochs`` epochs.

    Args:
        every_n_epochs: how often; 0 disables the callback (the default config: it needs a
            feature network, see :mod:`diffusion_lit.metrics.features`).
        num_samples: generated images per evaluation, over all ranks.
        num_real: real reference images (the first of ``reference_split``), features cached.
        extractor: the feature network class (conf/extractor/: ``DomainFeatures``, fast, for
            MNIST-like data, or ``InceptionFeatures``).
        reference_split: ``"train"`` or ``"val"``.
        batch_size: sampling and feature batch size.
        seed: generated samples use seed + rank, the same every epoch.
        kid: also log KID (subset size capped at the number of images).
    """

    def __init__(
        self,
        every_n_epochs: int = 0,
        num_samples: int = 1000,
        num_real: int = 10000,
        extractor: FeatureExtractor = DomainFeatures,
        reference_split: Split = "train",
        batch_size: int = 256,
        seed: int = 0,
        kid: bool = False,
    ) -> None:
        if every_n_epochs < 0 or num_samples < 2 or num_real < 2 or batch_size < 1:
            raise UserError(
                "callbacks.fid: every_n_epochs must be >= 0 (0 = off), num_samples and num_real >= 2, batch_size >= 1."
            )
        self.every_n_epochs, self.num_samples, self.num_real = every_n_epochs, num_samples, num_real
        self.extractor_class = check_extractor(extractor, "callbacks.fid.extractor")
        self.reference_split = reference_split
        self.batch_size, self.seed, self.kid = batch_size, seed, kid
        self.extractor = None
        self.real: torch.Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.every_n_epochs or stage != "fit":
            return
        datamodule = trainer.datamodule.reference_data()  # reflow pairs: their teacher's real data
        self.extractor = self.extractor_class.from_data_dir(datamodule.data_dir).to(pl_module.device)
        cache = Path(datamodule.data_dir) / "fid_features"
        # Rank 0 extracts (and caches) the real features first; the others then read the cache.
        if trainer.is_global_zero:
            self.real = real_features(self.extractor, datamodule, self.reference_split, self.num_real, cache)
        trainer.strategy.barrier("fid_real_features")
        if not trainer.is_global_zero:
            self.real = real_features(self.extractor, datamodule, self.reference_split, self.num_real, cache)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: DiffusionModule) -> None:
        if not self.every_n_epochs:
            return
        sampler = (pl_module.run_config or {}).get("sampler") or {}
        card = protocol_card(
            run_config=pl_module.run_config or {}, image_shape=pl_module.image_shape,
            sampler=OmegaConf.to_container(OmegaConf.create(sampler)), num_generated=self.num_samples,
            seed=self.seed, extractor=self.extractor, num_real=int(self.real.shape[0]),
            reference_split=self.reference_split,
        )  # fmt: skip
        for logger in trainer.loggers:
            logger.log_hyperparams({"fid_protocol": card})

    def _share(self, trainer: pl.Trainer) -> int:
        base, extra = divmod(self.num_samples, trainer.world_size)
        return base + (1 if trainer.global_rank < extra else 0)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: DiffusionModule) -> None:
        if not self.every_n_epochs or not is_due(trainer, self.every_n_epochs):
            return
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed + trainer.global_rank)
        samples = pl_module.sample_in_batches(self._share(trainer), self.batch_size, generator=generator)
        fake = extract_features(self.extractor, samples, self.batch_size).to(pl_module.device)
        real = self.real.to(pl_module.device)
        features = PrecomputedFeatures(real.shape[1])
        metrics = {"fid": FrechetInceptionDistance(feature=features)}
        if self.kid:
            subset = min(1000, self.num_samples // trainer.world_size, real.shape[0])
            metrics["kid"] = KernelInceptionDistance(feature=features, subset_size=subset, subsets=50)
        for name, metric in metrics.items():
            metric = metric.to(pl_module.device)
            if trainer.is_global_zero:
                metric.update(real, real=True)
            metric.update(fake, real=False)
            value = metric.compute()
            value = value[0] if isinstance(value, tuple) else value
            # compute() has summed the states of all ranks: every rank holds the same value.
            pl_module.log(f"{name}/{self.extractor_class.name}", float(value), sync_dist=True)
