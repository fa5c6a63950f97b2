"""Evaluate a trained checkpoint: ``python -m diffusion_lit.evaluate ckpt=PATH metrics=[fid,kid]``.

The metrics, the sampler sweeps and the protocol cards are described in
:mod:`diffusion_lit.runs.evaluation`; the options with their defaults are in conf/evaluate.yaml.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from diffusion_lit.runs.evaluation import evaluate
from diffusion_lit.utils.allocator import keep_freed_memory
from diffusion_lit.utils.errors import report_user_errors
from diffusion_lit.utils.overrides import null_groups_removed, options_of_checkpoint_group
from diffusion_lit.utils.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: evaluate(cfg))


if __name__ == "__main__":
    keep_freed_memory()  # as `make` runs it: freed activation buffers stay mapped (utils/allocator.py)
    sys.argv = null_groups_removed(sys.argv, CONFIG_DIR)  # logger=null: no logger (Hydra's ~logger)
    sys.argv = options_of_checkpoint_group(sys.argv, "sampler")  # sampler.steps=20: the checkpoint's sampler
    main()
