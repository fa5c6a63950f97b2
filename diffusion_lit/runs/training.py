"""A training run: fit, then sample from the EMA weights and record the results.

``python -m diffusion_lit.train`` calls :func:`train` inside :func:`diffusion_lit.runs.jobs.run_job`.
The run folder (printed at the end) receives the resolved config, checkpoints (with EMA
weights), sample grids, noising/denoising strips, the loss curve, logs and results.json.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, WeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from diffusion_lit.callbacks.preemption import SaveOnPreemption
from diffusion_lit.lit.build import attach_guide, build_module, initialise_from
from diffusion_lit.lit.loggers import finish, log_config, log_images, log_results
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.lit.precision import (
    AUTO,
    bf16_speedup,
    loss_backward_step,
    random_state_kept,
    resolve_trainer_precision,
)
from diffusion_lit.lit.sample_metrics import training_run_metrics
from diffusion_lit.runs.config_checks import build_trainer, check_train_config, instantiate_all
from diffusion_lit.runs.jobs import RESULTS_FILE, ddp_processes_rerun_this_job, write_json
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.images import save_grid

# Exit status of a run stopped by SIGTERM after saving its checkpoint (128 + SIGTERM, as the shell
# reports a process the signal ended): not 0, since the run is not finished.
PREEMPTED_EXIT_STATUS = 143


def order_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """Weight-averaging callbacks last: at validation end they swap the raw weights back, so
    every other callback (sample grids, strips) must have used the averaged weights first."""
    return sorted(callbacks, key=lambda callback: isinstance(callback, WeightAveraging))


def single_process(cfg: DictConfig) -> bool:
    """Whether the run trains in this process alone (one device, one node: no DDP ranks)."""
    return str(cfg.trainer.get("devices", 1)) == "1" and str(cfg.trainer.get("num_nodes", 1)) == "1"


def load_data(datamodule: Any) -> None:
    """Download, decode and split the data now (``prepare_data`` + ``setup``; both are idempotent,
    so Lightning's calls in ``fit`` are then free): a data error (a folder of files that are not
    images, MNIST missing offline) stops the run before the model is built, the precision measured
    and the trainer started (13.3 s against 4.6 s for the other wrong inputs, experiments/wrong_inputs).
    They draw nothing from the global random generators, so the run trains as it would have."""
    datamodule.prepare_data()
    datamodule.setup("fit")


def check_class_conditioning(datamodule: Any, num_classes: int) -> None:
    """A class-conditional model needs labelled (loaded: :func:`load_data`) data with at most
    ``num_classes`` classes."""
    if not num_classes:
        return
    data_classes = getattr(datamodule, "num_classes", None)
    if data_classes is None:
        raise UserError(
            f"model.num_classes={num_classes} needs labelled data, but data={type(datamodule).__name__} has no "
            "labels (labelled: mnist, cifar10, folder with data.class_subfolders=true); use model.num_classes=0."
        )
    if data_classes > num_classes:
        raise UserError(
            f"the data has {data_classes} classes but model.num_classes={num_classes}: "
            f"set model.num_classes={data_classes}."
        )


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of ``trainer.callback_metrics`` (tensors) as floats."""
    return {name: float(value) for name, value in metrics.items() if not torch.is_tensor(value) or value.numel() == 1}


def optimized_value(results: dict[str, Any], metric: str | None) -> float | None:
    """The value a Hydra sweeper optimises: ``results[metric]`` (e.g. val_loss, triangle_validity,
    fid/domain); None when no metric is configured."""
    if not metric:
        return None
    value = results.get(metric)
    if not isinstance(value, (int, float)):
        available = sorted(key for key, item in results.items() if isinstance(item, (int, float)))
        raise UserError(
            f"optimized_metric={metric!r} is not among this run's results; available: {', '.join(available)} "
            "(sample metrics need eval.num_samples > 0, FID needs callbacks.fid.every_n_epochs > 0)."
        )
    return float(value)


def guide_for_final_samples(module: DiffusionModule, eval_cfg: DictConfig) -> dict | None:
    """Autoguide the final samples by ``eval.guide`` (a checkpoint, typically a snapshot the run
    wrote earlier) at ``eval.guide_scale``; a run that ended before writing it samples unguided,
    with a warning. Returns the guide's card (None when unguided)."""
    guide = eval_cfg.get("guide")
    if not guide:
        return None
    if not Path(guide).is_file():
        console.print(
            f"warning: eval.guide {guide} does not exist (did the run end before that snapshot?): "
            "the final samples are drawn without autoguidance.",
            highlight=False,
        )
        return None
    attach_guide(module, guide, eval_cfg.get("guide_scale", 2.0))
    return module.autoguidance


def precision_of_resumed_run(cfg: DictConfig) -> str | None:
    """The precision ``auto`` resolved to in the run that ``ckpt_path`` resumes (its checkpoint
    records it), so that it is not measured again and perhaps chosen otherwise; None when there
    is no such checkpoint here (a new run, or hpc / registry checkpoints Lightning finds)."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or ckpt_path in ("hpc", "registry"):
        return None
    if ckpt_path == "last":  # Lightning's "last": last.ckpt in the checkpoint callback's folder
        folder = OmegaConf.select(cfg, "callbacks.checkpoint.dirpath") or Path(cfg.paths.output_dir) / "checkpoints"
        path = Path(folder) / "last.ckpt"
    else:
        path = Path(ckpt_path).expanduser()
    if not path.is_file():
        return None
    # Memory-mapped: only the small config entry is read, not the weights (Lightning loads them).
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    precision = (checkpoint.get("diffusion_lit") or {}).get("config", {}).get("trainer", {}).get("precision")
    return None if precision in (None, AUTO) else str(precision)


def measured_bf16_speedup(cfg: DictConfig, image_shape: tuple[int, int, int], device_type: str) -> float | None:
    """How many times faster the run's training step is under bf16 autocast than in fp32 here
    (:func:`~diffusion_lit.lit.precision.bf16_speedup`), on a throwaway copy of its module and a
    batch of random images of its size; the random generators are left as they were. None for
    several processes (each would measure on its own and they must agree) and for modules
    without a diffusion loss."""
    if not single_process(cfg):
        return None
    device = torch.device("cuda" if device_type == "cuda" else "cpu")
    with random_state_kept(device_type):  # building the throwaway module draws its weights
        module = build_module(cfg, image_shape).to(device)
        if not hasattr(module, "diffusion_loss"):
            return None
        x0 = torch.rand(cfg.data.batch_size, *image_shape, device=device) * 2 - 1
        num_classes = cfg.model.get("num_classes", 0)
        labels = torch.randint(0, num_classes, (x0.shape[0],), device=device) if num_classes else None
        return bf16_speedup(loss_backward_step(module, x0, labels), device_type)


def record_preemption(trainer: pl.Trainer, output_dir: Path) -> None:
    """results.json of a run stopped by SIGTERM (SaveOnPreemption wrote its checkpoint)."""
    if not trainer.is_global_zero:
        return
    saved = next((callback.saved_to for callback in trainer.callbacks if isinstance(callback, SaveOnPreemption)), None)
    write_json(
        output_dir / RESULTS_FILE,
        {"status": "preempted", "global_step": trainer.global_step, "checkpoint": str(saved) if saved else None,
         "run_dir": str(output_dir), "resume": "the same command with ckpt_path=last"},
    )  # fmt: skip


def train(cfg: DictConfig) -> float | None:
    """Fit, then sample ``cfg.eval.num_samples`` images from the EMA weights and report metrics.

    Returns ``results[cfg.optimized_metric]`` (default: the final validation loss), the value a
    Hydra sweeper (Optuna) optimises.
    """
    output_dir = Path(cfg.paths.output_dir)
    metric_names = check_train_config(cfg)  # every value the run will use, before the data is loaded
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)

    datamodule = instantiate(cfg.data)
    # Several processes: Lightning prepares the data on one and then sets it up on all, so only a
    # conditional run (whose labels must be checked now) loads it here on each.
    if single_process(cfg) or cfg.model.get("num_classes", 0):
        load_data(datamodule)
    check_class_conditioning(datamodule, cfg.model.get("num_classes", 0))
    image_shape = (datamodule.num_channels, datamodule.image_size, datamodule.image_size)
    if cfg.trainer.get("precision") == AUTO:  # a resumed run goes on in the precision it chose
        cfg.trainer.precision = precision_of_resumed_run(cfg) or AUTO
    if "precision" in cfg.trainer:  # resolved before the run config is saved: checkpoints record what ran
        cfg.trainer.precision = resolve_trainer_precision(
            cfg.trainer.precision, cfg.trainer.get("accelerator"), partial(measured_bf16_speedup, cfg, image_shape)
        )
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = build_module(cfg, image_shape, run_config=run_config)
    if cfg.get("init_weights"):
        initialise_from(module, cfg.init_weights)
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks"))
    if not loggers:  # it needs a logger to write to
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    trainer = build_trainer(cfg.trainer, callbacks=order_callbacks(callbacks), logger=loggers or False)
    if trainer.is_global_zero:
        log_config(trainer.loggers, run_config)

    failed = True
    try:
        started = time.perf_counter()
        try:
            with ddp_processes_rerun_this_job():
                trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except SIGTERMException:
            record_preemption(trainer, output_dir)
            failed = False  # stopped on request, resumable: Lightning has finalised the loggers
            raise SystemExit(PREEMPTED_EXIT_STATUS) from None
        fit_seconds = time.perf_counter() - started
        val_loss = trainer.callback_metrics.get("val/loss")
        results: dict = {
            "status": "completed",
            "fit_seconds": round(fit_seconds, 1),
            "global_step": trainer.global_step,
            "val_loss": None if val_loss is None else float(val_loss),
        }
        # After fit the module holds the EMA weights (WeightAveraging copies them in on_train_end).
        # A single-step denoiser (experiment=single_step_denoiser) has nothing to sample.
        if trainer.is_global_zero and cfg.eval.num_samples > 0 and isinstance(module, DiffusionModule):
            results["eval_autoguidance"] = guide_for_final_samples(module, cfg.eval)
            started = time.perf_counter()
            generator = torch.Generator(device=module.device).manual_seed(cfg.eval.seed)
            samples = module.sample_in_batches(cfg.eval.num_samples, cfg.eval.batch_size, generator=generator)
            results["eval_sampling_seconds"] = round(time.perf_counter() - started, 1)
            results["eval_num_samples"] = int(samples.shape[0])
            results.update(datamodule.sample_metrics(samples))
            if metric_names:
                started = time.perf_counter()
                results.update(training_run_metrics(metric_names, module, datamodule, cfg.eval, samples))
                results["eval_metrics_seconds"] = round(time.perf_counter() - started, 1)
            results["final_samples"] = str(save_grid(samples[:64], output_dir / "samples_final.png"))
            log_images(trainer.loggers, "samples_final", samples[:64], step=trainer.global_step)
        results["last_logged"] = numeric_metrics(trainer.callback_metrics)
        if trainer.is_global_zero:
            checkpoint_callback = trainer.checkpoint_callback
            results["checkpoint"] = getattr(checkpoint_callback, "last_model_path", None) or getattr(
                checkpoint_callback, "best_model_path", None
            )
            results["run_dir"] = str(output_dir)
            log_results(trainer.loggers, results, step=trainer.global_step)
            write_json(output_dir / RESULTS_FILE, results)
            console.rule("run finished")
            for key, value in results.items():
                if not isinstance(value, dict):  # protocol cards and logged metrics stay in results.json
                    console.print(f"  {key}: {value}", highlight=False)
        value = None  # ranks > 0 (DDP) do not evaluate; rank 0's value is the job's
        if trainer.is_global_zero:
            value = optimized_value({**results["last_logged"], **results}, cfg.get("optimized_metric"))
        failed = False
        return value
    finally:
        if trainer.is_global_zero:
            finish(trainer.loggers, failed=failed)
