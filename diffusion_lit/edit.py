"""Editing tasks on a trained model: ``python -m diffusion_lit.edit task=<name> ckpt=PATH``.

Tasks (``conf/task/``): forward, blur_baseline, one_step, iterative, sdedit, inpaint, anagram,
hybrid (:mod:`diffusion_lit.editing.commands`), and denoiser for a single-step denoiser checkpoint
(:mod:`diffusion_lit.lit.denoiser`). Each writes one labelled PNG and prints its numbers.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from diffusion_lit.runs.editing import edit
from diffusion_lit.utils.allocator import keep_freed_memory
from diffusion_lit.utils.errors import report_user_errors
from diffusion_lit.utils.overrides import null_groups_removed, options_of_checkpoint_group
from diffusion_lit.utils.paths import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="edit")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: edit(cfg))


if __name__ == "__main__":
    keep_freed_memory()  # as `make` runs it: freed activation buffers stay mapped (utils/allocator.py)
    sys.argv = null_groups_removed(sys.argv, CONFIG_DIR)  # logger=null: no logger (Hydra's ~logger)
    sys.argv = options_of_checkpoint_group(sys.argv, "sampler")  # sampler.steps=20: the checkpoint's sampler
    main()
