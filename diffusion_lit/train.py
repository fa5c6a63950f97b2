"""Train a diffusion model: ``python -m diffusion_lit.train [group=option ...] [key=value ...]``.

The run folder (printed at the end) receives the resolved config, checkpoints (with EMA
weights), sample grids, noising/denoising strips, the loss curve, logs and results.json; the
run itself is :func:`diffusion_lit.runs.training.train`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from diffusion_lit.runs.jobs import run_job
from diffusion_lit.runs.training import train
from diffusion_lit.utils.allocator import keep_freed_memory
from diffusion_lit.utils.overrides import null_groups_removed
from diffusion_lit.utils.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_job(lambda: train(cfg), cfg.paths.output_dir)


if __name__ == "__main__":
    keep_freed_memory()  # as `make` runs it: freed activation buffers stay mapped (utils/allocator.py)
    sys.argv = null_groups_removed(sys.argv, CONFIG_DIR)  # logger=null: no logger (Hydra's ~logger)
    main()
