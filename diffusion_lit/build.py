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
    net = instantiate(cfg.model.net, in_channels=image_shape[0])
    return DiffusionModule(
        net=net,
        schedule=schedule,
        optimizer=instantiate(cfg.optimizer),
        sampler=instantiate(cfg.sampler),
        image_shape=image_shape,
        loss=cfg.model.loss,
        lr_warmup_steps=cfg.lr_warmup_steps,
        run_config=run_config,
    )
