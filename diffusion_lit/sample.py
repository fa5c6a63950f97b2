"""Sample from a trained checkpoint: ``python -m diffusion_lit.sample ckpt=PATH num_samples=64 out=grid.png``.

The checkpoint's ``state_dict`` holds the EMA weights (see callbacks/ema.py) and its config
rebuilds the network and schedule; the sampler is the checkpoint's own unless ``sampler=<name>``
is given (``sampler.steps=20`` alone changes that option of the checkpoint's sampler).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from diffusion_lit.runs.sampling import sample
from diffusion_lit.utils.allocator import keep_freed_memory
from diffusion_lit.utils.errors import report_user_errors
from diffusion_lit.utils.overrides import null_groups_removed, options_of_checkpoint_group
from diffusion_lit.utils.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: sample(cfg))


if __name__ == "__main__":
    keep_freed_memory()  # as `make` runs it: freed activation buffers stay mapped (utils/allocator.py)
    sys.argv = null_groups_removed(sys.argv, CONFIG_DIR)  # logger=null: no logger (Hydra's ~logger)
    sys.argv = options_of_checkpoint_group(sys.argv, "sampler")  # sampler.steps=20: the checkpoint's sampler
    main()
