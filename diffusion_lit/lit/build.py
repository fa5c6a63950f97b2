"""Build the LightningModule from a composed config, or from a checkpoint (shared by train,
sample and evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from diffusion_lit.data.pairs import reference_data_config
from diffusion_lit.diffusion.count_samplers import is_count_sampler
from diffusion_lit.diffusion.counts import is_count_formulation
from diffusion_lit.diffusion.samplers import check_sampler
from diffusion_lit.diffusion.schedules import NoiseSchedule
from diffusion_lit.lit.count_module import CountDiffusionModule
from diffusion_lit.lit.denoiser import SingleStepDenoiser
from diffusion_lit.lit.module import DiffusionModule
from diffusion_lit.utils.config_types import check_instantiated
from diffusion_lit.utils.console import console
from diffusion_lit.utils.errors import UserError, check_choice


def build_module(
    cfg: DictConfig, image_shape: tuple[int, int, int], run_config: dict[str, Any] | None = None
) -> DiffusionModule | SingleStepDenoiser:
    """Instantiate schedule, U-Net, optimizer and sampler from ``cfg`` into a DiffusionModule,
    or, when the config has a ``denoiser`` section (experiment=single_step_denoiser), the net
    and optimizer into a SingleStepDenoiser; a count formulation (formulation=blackout) gives a
    CountDiffusionModule.

    ``image_shape`` is (C, H, W) of the data; the net's input channels follow from it.
    """
    if cfg.get("denoiser"):
        return SingleStepDenoiser(
            net=instantiate(cfg.model.net, in_channels=image_shape[0]),
            optimizer=instantiate(cfg.optimizer),
            image_shape=image_shape,
            sigma=cfg.denoiser.sigma,
            eval_sigmas=list(cfg.denoiser.eval_sigmas),
            lr_warmup_steps=cfg.lr_warmup_steps,
            run_config=run_config,
        )
    schedule = NoiseSchedule(instantiate(cfg.schedule))
    model = cfg.model
    # .get defaults: configs stored in checkpoints written before these options existed.
    net_options = {"num_classes": model.num_classes} if model.get("num_classes", 0) else {}
    if "image_size" in model.net and model.net.image_size is None:  # data.image_size=null: the data's own size
        net_options["image_size"] = image_shape[-1]
    net = instantiate(model.net, in_channels=image_shape[0], **net_options)
    formulation = instantiate(cfg.formulation) if cfg.get("formulation") else None
    module_class = CountDiffusionModule if is_count_formulation(formulation) else DiffusionModule
    return module_class(
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
        lr_decay=cfg.get("lr_decay", "none"),
        run_config=run_config,
        channels_last=model.get("channels_last", False),
        compile=model.get("compile", False),
        formulation=formulation,
        sample_precision=model.get("sample_precision", "32-true"),
    )


def sampler_config(stored: DictConfig | dict, override: DictConfig | dict | None) -> DictConfig:
    """The sampler a checkpoint is sampled with: its own (``stored``), replaced by ``override`` when
    that names a sampler (``_target_``, from ``sampler=<name>``), else with ``override``'s options
    (``sampler.steps=20`` alone) merged into it."""
    if not override:
        return OmegaConf.create(stored)
    if "_target_" in override:
        return OmegaConf.create(override)
    return OmegaConf.merge(stored, override)


def count_model_sampler(cfg: DictConfig, sampler: DictConfig | dict, path: Path) -> DictConfig | dict:
    """A count model (formulation=blackout) samples with its count sampler: a Gaussian sampler
    named for it (``sampler=ddpm``) is replaced by the checkpoint's own, keeping its ``steps`` if
    set; other checkpoints' samplers are returned as they are (a count sampler for
    a Gaussian model is a UserError)."""
    formulation = instantiate(cfg.formulation) if cfg.get("formulation") else None
    if "_target_" not in sampler:
        return sampler
    count_sampler = is_count_sampler(instantiate(sampler))
    if count_sampler and not is_count_formulation(formulation):
        raise UserError(
            f"sampler=blackout samples counts, and {path.name} is a Gaussian model: choose one of its samplers "
            "(e.g. sampler=ddpm_fast)."
        )
    if not is_count_formulation(formulation) or count_sampler:
        return sampler
    steps = sampler.get("steps")
    with_steps = f"steps={steps}" if steps is not None else "its steps"
    gaussian = sampler["_target_"].rsplit(".", 1)[-1]
    console.print(
        f"note: {path.name} models counts (formulation=blackout): it samples with its own tau-leaping sampler "
        f"({with_steps}), not {gaussian}.",
        highlight=False,
    )
    return {"steps": steps} if steps is not None else {}


def load_checkpoint(
    path: str | Path,
    sampler: DictConfig | None = None,
    map_location: str = "cpu",
    kind: type | None = DiffusionModule,
    sample_precision: str | None = None,
    weights: str = "ema",
    key: str = "ckpt",
) -> DiffusionModule | SingleStepDenoiser:
    """Rebuild the module stored in a diffusion_lit checkpoint and load its (EMA) weights.

    ``sampler`` (see :func:`sampler_config`) and ``sample_precision``, when given, replace the
    sampler config and ``model.sample_precision`` saved with the checkpoint. ``kind`` is the
    module class the caller can use (None: any). ``weights="raw"`` loads the weights the optimizer
    left instead of their EMA (a run without the EMA callback has only those: ``state_dict``).
    ``key`` is the option the path came from, named when it is missing.
    """
    check_choice("weights", weights, ("ema", "raw"))
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}. Pass {key}=<run dir>/checkpoints/last.ckpt of a training run.")
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file: say so instead of a pickle traceback
        raise UserError(f"could not read checkpoint {path}: {error}") from None
    stored = checkpoint.get("diffusion_lit") if isinstance(checkpoint, dict) else None
    if not stored or "state_dict" not in checkpoint:
        raise UserError(
            f"{path} is not a diffusion_lit checkpoint (no 'diffusion_lit' entry): "
            "use a .ckpt written by `python -m diffusion_lit.train`."
        )
    cfg = OmegaConf.create(stored["config"])
    if "num_steps" in cfg.get("sampler", {}):  # checkpoints written before the key was renamed
        cfg.sampler.steps = cfg.sampler.pop("num_steps")
    if sampler is not None:
        sampler = count_model_sampler(cfg, sampler, path)
        cfg.sampler = sampler_config(cfg.sampler, sampler)
        check_instantiated(cfg.sampler, "sampler")  # e.g. +sampler.etaa=1 merged into a stored ddim
    if sample_precision is not None:
        cfg.model.sample_precision = sample_precision
    module = build_module(cfg, tuple(stored["image_shape"]), run_config=stored["config"])
    if sampler is not None and isinstance(module, DiffusionModule) and not isinstance(module, CountDiffusionModule):
        check_sampler(module.sampler, module.schedule)  # a count module checked its sampler when built
    if kind is not None and not isinstance(module, kind):
        raise UserError(
            f"{path} holds a single-step denoiser, which does not sample: use "
            f"`python -m diffusion_lit.edit task=denoiser ckpt={path}`."
        )
    # The EMA callback saves the average as state_dict and the raw weights beside it (callbacks/ema.py).
    state = checkpoint["state_dict"]
    if weights == "raw":
        state = checkpoint.get("current_model_state", state)
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"checkpoint {path} does not match the network its config describes: {error}") from None
    module.checkpoint_path = str(Path(path).resolve())  # where it came from (protocol cards)
    return module.eval()


def attach_guide(module: DiffusionModule, guide_ckpt: str | None, guide_scale: float) -> None:
    """Autoguidance from the command line: load ``guide_ckpt`` (a weaker checkpoint of the same
    data and schedule, e.g. an earlier snapshot of the run) as ``module``'s guide at ``guide_scale``."""
    if guide_ckpt is None:
        return
    guide = load_checkpoint(guide_ckpt, sample_precision=module.sample_precision, key="guide_ckpt")
    module.set_guide(guide, guide_scale)


def data_module_for(module: DiffusionModule, overrides: DictConfig | dict | None) -> Any:
    """The checkpoint's data module, with the non-null ``overrides`` (root, data_dir, path) applied:
    the real data its samples are compared with and edits start from, so for a model trained on
    reflow pairs the data of the model that drew them."""
    data_cfg = OmegaConf.create(module.run_config.get("data") or {})
    if "_target_" not in data_cfg:
        raise UserError("the checkpoint stores no data config; it was not written by diffusion_lit.train.")
    data_cfg = reference_data_config(data_cfg)
    for key, value in (overrides or {}).items():
        if value is not None:
            data_cfg[key] = value
    return instantiate(data_cfg)


def initialise_from(module: DiffusionModule, path: str | Path) -> None:
    """Copy the (EMA) network weights of checkpoint ``path`` into ``module`` before training
    (``init_weights``: reflow starts from the model whose pairs it trains on, Liu et al. 2022)."""
    source = load_checkpoint(path, kind=None, key="init_weights")
    try:
        module.net.load_state_dict(source.net.state_dict())
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(
            f"init_weights={path} holds another network than this run's ({first}): use the model options "
            "(model=..., model.net.*, model.num_classes) of the run that wrote it."
        ) from None
