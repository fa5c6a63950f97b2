"""Reflow (Liu et al. 2022, "Flow Straight and Fast", sec. 2.3): pair noise with the images a
trained model's ODE makes of it, so that the next rectified flow, trained on the pairs with
``init_weights`` from that model, learns straighter paths and samples in one or two calls.

The pairs must come from a deterministic sampler (an ODE solver): with fresh noise inside the
sampler the image would not be a function of its noise, and the pairing would teach nothing.
Autoguidance (Karras et al. 2024: ``guide_ckpt``, a weaker checkpoint of the same data) keeps it an
ODE, of the guided velocity, so it may lift the pairs' quality where the model's own ODE falls short
of what its stochastic samplers reach.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from diffusion_lit.data.pairs import pairs_record
from diffusion_lit.lit.build import attach_guide, load_checkpoint
from diffusion_lit.runs.config_schema import ReflowConfig, check_config_types
from diffusion_lit.utils.console import console
from diffusion_lit.utils.devices import resolve_device
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import atomic_write

# Samplers whose image is a function of the starting noise (with these options).
_DETERMINISTIC = {
    "flow_sample": {},
    "flow_adaptive_sample": {},
    "ddim_sample": {"eta": 0.0},
    "dpm_solver_sample": {},
    "ode_sample": {},
    "heun_sample": {"s_churn": 0.0},
    "euler_sample": {"s_churn": 0.0},
}


def check_deterministic(sampler: DictConfig) -> None:
    """The pairs' sampler is an ODE solver (module docstring)."""
    name = str(sampler.get("_target_", "")).rsplit(".", 1)[-1]
    required = _DETERMINISTIC.get(name)
    if required is None or any(sampler.get(key, value) != value for key, value in required.items()):
        raise UserError(
            f"reflow pairs need a deterministic sampler (an ODE solver), got {name or sampler} with "
            f"{OmegaConf.to_container(sampler)}: use sampler=flow_midpoint, flow_heun, flow_adaptive, dpm_solver, "
            "or ddim with sampler.eta=0."
        )


def draw_pairs(cfg: DictConfig) -> Path:
    """Write ``cfg.num_pairs`` (noise, image[, label]) pairs of ``cfg.ckpt`` to ``cfg.out``."""
    check_config_types(cfg, ReflowConfig)
    for key in ("num_pairs", "batch_size"):
        if cfg[key] < 1:
            raise UserError(f"{key} must be >= 1, got {cfg[key]!r}.")
    out = Path(cfg.out).expanduser()
    if out.suffix != ".pt":
        raise UserError(f"out must end in .pt, got {cfg.out!r}.")
    check_deterministic(cfg.sampler)
    device = resolve_device(cfg.device)
    module = load_checkpoint(cfg.ckpt, sampler=cfg.sampler, sample_precision=cfg.get("sample_precision")).to(device)
    attach_guide(module, cfg.get("guide_ckpt"), cfg.guide_scale)
    if module.formulation.name != "flow":
        console.print(
            f"note: {cfg.ckpt} is a {module.formulation.name} model; its ODE pairs can train a rectified flow too.",
            highlight=False,
        )
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    labels = module.default_labels(cfg.num_pairs)
    noises, images = [], []
    started = time.perf_counter()
    for done in range(0, cfg.num_pairs, cfg.batch_size):
        size = min(cfg.batch_size, cfg.num_pairs - done)
        noise = torch.randn((size, *module.image_shape), generator=generator, device=device)
        batch_labels = None if labels is None else labels[done : done + size]
        images.append(
            module.sample(size, generator, noise=noise, labels=batch_labels, guidance_scale=cfg.guidance_scale).cpu()
        )
        noises.append(noise.cpu())
        elapsed = time.perf_counter() - started
        left = elapsed / (done + size) * (cfg.num_pairs - done - size)
        console.print(
            f"pairs {done + size}/{cfg.num_pairs} ({elapsed:.0f} s, about {left:.0f} s left)", highlight=False
        )
    pairs = pairs_record(
        torch.cat(images),
        torch.cat(noises),
        labels,
        module.num_classes,
        module.run_config.get("data"),
        source_checkpoint=str(Path(cfg.ckpt).resolve()),
        sampler=OmegaConf.to_container(cfg.sampler, resolve=True),
        autoguidance=module.autoguidance,
        seed=cfg.seed,
        seconds=round(time.perf_counter() - started, 1),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as file:
        torch.save(pairs, file)
    console.print(
        f"wrote {cfg.num_pairs} pairs to {out}. Next: python -m diffusion_lit.train experiment=reflow "
        f"data.path={out} init_weights={cfg.ckpt} (and the model options of the run that made {cfg.ckpt}), "
        "then experiment=reflow_distill for one call (README: Reflow).",
        highlight=False,
    )
    return out
