"""Draw reflow pairs from a trained model: ``python -m diffusion_lit.reflow ckpt=PATH out=pairs.pt``.

Each pair is a noise draw and the image a deterministic ODE sampler makes of it; the next
rectified flow trains on them (``data=reflow_pairs``), see diffusion_lit/runs/reflow.py.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from diffusion_lit.runs.reflow import draw_pairs
from diffusion_lit.utils.allocator import keep_freed_memory
from diffusion_lit.utils.errors import report_user_errors
from diffusion_lit.utils.overrides import null_groups_removed
from diffusion_lit.utils.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="reflow")
def main(cfg: DictConfig) -> None:
    try:
        report_user_errors(lambda: draw_pairs(cfg))
    except KeyboardInterrupt:  # draw_pairs has kept the pairs drawn so far and said where
        sys.exit(130)


if __name__ == "__main__":
    keep_freed_memory()  # as `make` runs it: freed activation buffers stay mapped (utils/allocator.py)
    sys.argv = null_groups_removed(sys.argv, CONFIG_DIR)
    main()
