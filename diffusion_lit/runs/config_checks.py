"""Everything a training run will use, checked in its first seconds, before data is loaded.

:func:`check_train_config` is the one place: the schema (every key's type and options,
:mod:`diffusion_lit.runs.config_schema`), then the ranges and cross-field rules, each checked by
the code that will use the value where that code can run on a dummy input (a sampler on a 2x2
image, the optimizer on one parameter, the U-Net's constructor). An hour of training must not end
in an error that the config already held.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from diffusion_lit.diffusion.count_samplers import check_count_sampler, is_count_sampler
from diffusion_lit.diffusion.counts import is_count_formulation
from diffusion_lit.diffusion.samplers import check_sampler
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.lit.base import check_optimizer
from diffusion_lit.lit.build import build_module, initialise_from
from diffusion_lit.lit.precision import AUTO
from diffusion_lit.lit.sample_metrics import SAMPLE_METRICS, check_extractor_weights, check_metric_names, extractor_of
from diffusion_lit.runs.config_schema import check_config_types
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError, find_user_error

# The sections every training run uses (the others can be removed with <group>=null).
REQUIRED_SECTIONS = ("schedule", "data", "model", "sampler", "optimizer", "trainer", "paths")
INSTANTIATED_SECTIONS = ("schedule", "data", "sampler", "optimizer", "trainer")  # need a _target_
# ckpt_path values Lightning resolves itself (the run's own last or SLURM's hpc checkpoint).
LIGHTNING_CKPT_NAMES = ("last", "hpc", "registry")


def check_train_config(cfg: DictConfig) -> list[str]:
    """Raise a UserError for the first wrong value of a training config (a constructor's UserError
    unwrapped from Hydra's InstantiationException); returns the checked ``eval.metrics`` names."""
    try:
        with torch.random.fork_rng(devices=[]):  # building nets draws weights: leave the run's random stream alone
            return _check_train_config(cfg)
    except InstantiationException as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        raise user_error from None


def _check_train_config(cfg: DictConfig) -> list[str]:
    missing = [name for name in REQUIRED_SECTIONS if not cfg.get(name)]
    missing += [name for name in INSTANTIATED_SECTIONS if cfg.get(name) and "_target_" not in cfg[name]]
    if missing:
        raise UserError(
            f"a training run needs {' and '.join(missing)}: choose an option of the group ({missing[0]}=<option>); "
            "only logger, callbacks, experiment, hparams_search and debug can be null."
        )
    check_config_types(cfg)
    check_output_dir(cfg.paths.output_dir)
    check_trainer(cfg.trainer)
    check_resume(cfg.get("ckpt_path"))
    check_eval(cfg)
    if cfg.data.get("val_fraction", 1) == 0:  # the data modules allow it; a training run cannot
        raise UserError(
            "data.val_fraction=0 leaves no validation images, which a training run needs (val/loss picks the best "
            "checkpoint; the denoising strips start from validation images): use a share in (0, 1), e.g. 0.1."
        )
    metric_names = eval_metric_names(cfg)
    check_fid_callback(cfg)
    if not cfg.get("denoiser"):  # experiment=single_step_denoiser has no sampler
        # the sampler of the grids, the FID callback and the final samples
        check_formulation_sampler(cfg)
    check_optimizer(instantiate(cfg.optimizer))
    check_model(cfg)
    check_callbacks_and_loggers(cfg)
    return metric_names


def check_output_dir(output_dir: str) -> None:
    """The run folder exists (Hydra made it) or can be made, and takes files."""
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_test_"):
            pass
    except OSError as error:
        raise UserError(
            f"the run folder {folder} is not writable ({error.strerror or error}): "
            "choose another with hydra.run.dir=<folder> (paths.output_dir follows it)."
        ) from None


def build_trainer(trainer_cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    """``instantiate(trainer_cfg, **kwargs)``; what Lightning refuses (devices=0, an unknown
    precision, a GPU accelerator on a machine without one) is a UserError naming the trainer."""
    try:
        return instantiate(trainer_cfg, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        if find_user_error(cause):
            raise
        if not isinstance(cause, (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError)):
            raise
        reason = str(cause).rstrip(".")
        raise UserError(f"trainer: {reason}; check the trainer.* options (lightning.pytorch.Trainer).") from None


def check_trainer(trainer_cfg: DictConfig) -> None:
    """Build the Trainer once without callbacks or loggers, quietly: Lightning checks devices,
    accelerator, precision and strategy there, in milliseconds."""
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # "GPU available: ..." is printed by the real Trainer
    try:
        auto = trainer_cfg.get("precision") == AUTO  # resolved later to a valid value for the device
        build_trainer(trainer_cfg, callbacks=[], logger=False, **({"precision": "32-true"} if auto else {}))
    finally:
        lightning_log.setLevel(level)


def check_resume(ckpt_path: str | None) -> None:
    """``ckpt_path`` names a checkpoint file (or one Lightning finds itself: last, hpc)."""
    if ckpt_path is None or ckpt_path in LIGHTNING_CKPT_NAMES:
        return
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise UserError(
            f"ckpt_path={ckpt_path} is not a file: pass a checkpoint of an earlier run "
            "(<run>/checkpoints/last.ckpt), or ckpt_path=last for this run folder's own last checkpoint."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated, not a checkpoint, unreadable: Lightning would fail after the data
        raise UserError(f"ckpt_path={ckpt_path} could not be read as a checkpoint ({error}).") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={ckpt_path} is not a Lightning checkpoint (no state_dict): pass a .ckpt of a run.")


def check_eval(cfg: DictConfig) -> None:
    """The final evaluation's sizes and guidance."""
    evaluation = cfg.eval
    if evaluation.num_samples < 0 or evaluation.batch_size < 1:
        raise UserError(
            f"eval.num_samples must be >= 0 and eval.batch_size >= 1, got {evaluation.num_samples!r} "
            f"and {evaluation.batch_size!r} (eval.num_samples=0 skips the final evaluation)."
        )
    if evaluation.get("guide_scale", 2.0) < 0:
        raise UserError(f"eval.guide_scale must be >= 0 (1 = no autoguidance), got {evaluation.guide_scale!r}.")
    if evaluation.get("num_real", 1) < 2:
        raise UserError(f"eval.num_real must be >= 2 (real reference images of fid/kid), got {evaluation.num_real!r}.")


def eval_metric_names(cfg: DictConfig) -> list[str]:
    """``eval.metrics``: known names, and the feature networks they need present."""
    names = list(cfg.eval.get("metrics") or [])
    if not names:
        return []
    check_metric_names(names, SAMPLE_METRICS, key="eval.metrics")
    if cfg.eval.num_samples < 1:
        raise UserError(f"eval.metrics={names} needs eval.num_samples >= 1, got {cfg.eval.num_samples!r}.")
    check_extractor_weights(names, extractor_of(cfg.eval.extractor, "eval.extractor"), cfg.paths.data_dir)
    return names


def check_fid_callback(cfg: DictConfig) -> None:
    """A FID callback that will run needs its feature network's weights (checked now, not at setup)."""
    fid = (cfg.get("callbacks") or {}).get("fid")
    if not fid or not fid.get("every_n_epochs"):
        return
    data_dir = cfg.data.get("data_dir") or cfg.paths.data_dir
    check_extractor_weights(["fid"], extractor_of(fid.extractor, "callbacks.fid.extractor"), data_dir)


def instantiate_all(nodes: DictConfig | None) -> list:
    """Instantiate every child node that has a ``_target_`` (callbacks, loggers); None disables one."""
    if not nodes:
        return []
    return [instantiate(node) for node in nodes.values() if isinstance(node, DictConfig) and "_target_" in node]


def check_callbacks_and_loggers(cfg: DictConfig) -> None:
    """Build each callback and logger once (their constructors check their options; none writes
    or connects before the run uses it)."""
    instantiate_all(cfg.get("callbacks"))
    instantiate_all(cfg.get("logger"))


def check_formulation_sampler(cfg: DictConfig) -> None:
    """The sampler against its formulation: a count formulation samples with a count sampler
    (sampler=blackout), every other one with a Gaussian sampler, checked on a tiny input."""
    sampler = instantiate(cfg.sampler)
    formulation = instantiate(cfg.formulation) if cfg.get("formulation") else None
    if is_count_formulation(formulation):
        check_count_sampler(sampler, formulation)
    elif is_count_sampler(sampler):
        raise UserError(
            "sampler=blackout samples counts: it needs formulation=blackout (and data.counts.lambda); "
            "choose a Gaussian sampler (e.g. sampler=ddpm_fast) for this formulation."
        )
    else:
        schedule = NoiseSchedule(instantiate(cfg.schedule))
        check_sampler(sampler, schedule)
        if getattr(formulation, "name", None) == "flow" and not schedule.continuous:
            # The default formulation is the flow: a VP schedule chosen alone does not make a DDPM.
            console.print(
                "note: formulation=flow (the default formulation) trains on continuous times; "
                f"schedule={schedule_name(cfg)} only gives its samplers the levels to step on (the flow samplers move "
                "to the nearest one). "
                "For a DDPM on this schedule add formulation=vp.",
                highlight=False,
            )


def schedule_name(cfg: DictConfig) -> str:
    """The schedule group's option in this run (its betas function when not composed by Hydra)."""
    if HydraConfig.initialized() and HydraConfig.get().runtime.choices.get("schedule"):
        return str(HydraConfig.get().runtime.choices["schedule"])
    return str(cfg.schedule.get("_target_", "?")).rsplit(".", 1)[-1]


def check_model(cfg: DictConfig) -> None:
    """Guidance's range, then the module built once from the config (cheap: no data is loaded, the
    data module only says its image shape), so that every constructor's own checks (the U-Net's
    sizes and widths, the module's ranges, the formulation's options) stop the run here."""
    guidance_scale = cfg.model.get("guidance_scale", 1.0)
    if guidance_scale is not None and guidance_scale < 0:
        raise UserError(
            f"model.guidance_scale must be >= 0 (0 = unconditional, 1 = conditional), got {guidance_scale!r}."
        )
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, (datamodule.num_channels, datamodule.image_size, datamodule.image_size))
    if cfg.get("init_weights"):
        initialise_from(module, cfg.init_weights)
