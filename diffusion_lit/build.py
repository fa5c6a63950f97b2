"""Build the LightningModule from a composed config (shared by train, sample and evaluate)."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.lit.module import DiffusionModule


def build_module(
    cfg: DictConfig, image_shape: tuple[int, int, int], run_config: dict[str, Any] | None = None
) -> DiffusionModule:
    """Instantiate schedule, U-Net, optimizer and sampler from ``cfg`` into a DiffusionModule.

    ``image_shape`` is (C, H, W) of the data; the net's input channels follow from it.
    """
    schedule = NoiseSchedule(instantiate(cfg.schedule))
    model = cfg.model
    # .get defaults: configs stored in checkpoints written before these options existed.
    net_options = {"num_classes": model.num_classes} if model.get("num_classes", 0) else {}
    net = instantiate(model.net, in_channels=image_shape[0], **net_options)
    return DiffusionModule(
        net=net,
        schedule=schedule,
        optimizer=instantiate(cfg.optimizer),
        sampler=instantiate(cfg.sampler),
        image_shape=image_shape,
        prediction=model.get("prediction", "eps"),
        loss=model.loss,
        weighting=model.get("weighting", "uniform"),
        min_snr_gamma=model.get("min_snr_gamma", 5.0),
        cond_drop_prob=model.get("cond_drop_prob", 0.1),
        guidance_scale=model.get("guidance_scale", 1.0),
        lr_warmup_steps=cfg.lr_warmup_steps,
        run_config=run_config,
    )
