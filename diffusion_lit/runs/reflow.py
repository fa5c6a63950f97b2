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
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from diffusion_lit.data.pairs import pairs_record
from diffusion_lit.lit.build import attach_guide, load_checkpoint
from diffusion_lit.lit.module import DiffusionModule
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


def partial_path(out: Path) -> Path:
    """Where the pairs drawn so far are kept while ``out`` is being drawn."""
    return out.with_name(out.stem + ".partial.pt")


def draw_identity(cfg: DictConfig, module: DiffusionModule) -> dict[str, Any]:
    """What makes two draws the same sequence of pairs (a partial file resumes only a draw that
    matches it in all of these); the pairs file records the first three as its provenance."""
    return {
        "source_checkpoint": str(Path(cfg.ckpt).expanduser().resolve()),
        "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
        "autoguidance": module.autoguidance,
        "guidance_scale": cfg.guidance_scale,
        "sample_precision": cfg.get("sample_precision"),
        "num_pairs": int(cfg.num_pairs),
        "batch_size": int(cfg.batch_size),
        "seed": int(cfg.seed),
        "image_shape": list(module.image_shape),
    }


class DrawnPairs:
    """The pairs drawn so far, kept in ``path`` so that an interrupted draw can resume exactly.

    ``consistent`` is one tuple, (batches drawn, the noise generator's state after them), assigned
    in one statement: a Ctrl-C between two lines of :meth:`add` cannot save a state that does not
    belong to the batches saved with it.
    """

    def __init__(self, path: Path, identity: dict[str, Any], generator: torch.Generator) -> None:
        self.path, self.identity, self.generator = path, identity, generator
        self.noises: list[torch.Tensor] = []
        self.images: list[torch.Tensor] = []
        self.seconds_before = 0.0
        self.consistent = (0, generator.get_state())
        self.saved_batches = 0

    @property
    def count(self) -> int:
        return sum(len(noise) for noise in self.noises[: self.consistent[0]])

    def resume(self) -> None:
        """Take up the partial draw in ``path``, if there is one, after checking it is this draw's."""
        if not self.path.is_file():
            return
        try:
            partial = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
            raise UserError(
                f"{self.path} (pairs of an interrupted draw) could not be read ({error}): delete it."
            ) from None
        stored = partial.get("identity", {}) if isinstance(partial, dict) else {}
        differences = sorted(key for key, value in self.identity.items() if stored.get(key) != value)
        if differences:
            raise UserError(
                f"{self.path} holds the pairs of an interrupted draw with other {', '.join(differences)}: run that "
                "draw again to finish it, or delete the file (or choose another out=) to start this one."
            )
        self.noises, self.images = [partial["noise"]], [partial["images"]]
        self.seconds_before = float(partial["seconds"])
        self.generator.set_state(partial["generator_state"])
        self.consistent = (1, self.generator.get_state())
        self.saved_batches = 1

    def add(self, noise: torch.Tensor, images: torch.Tensor) -> None:
        self.noises.append(noise)
        self.images.append(images)
        self.consistent = (len(self.noises), self.generator.get_state())

    def save(self, seconds: float) -> None:
        """Write the consistent part of the draw to ``path`` (atomically), unless it is there already."""
        batches, state = self.consistent
        if batches == self.saved_batches:
            return
        with atomic_write(self.path) as file:
            torch.save({"identity": self.identity, "noise": torch.cat(self.noises[:batches]),
                        "images": torch.cat(self.images[:batches]), "generator_state": state,
                        "seconds": self.seconds_before + seconds}, file)  # fmt: skip
        self.saved_batches = batches


def draw_pairs(cfg: DictConfig) -> Path:
    """Write ``cfg.num_pairs`` (noise, image[, label]) pairs of ``cfg.ckpt`` to ``cfg.out``.

    About every ``cfg.save_every`` pairs, and on Ctrl-C, the pairs drawn so far go to
    ``<out stem>.partial.pt``; the same command run again resumes from them and draws exactly the
    pairs the uninterrupted draw would have (the noise generator's state is kept with them).
    """
    check_config_types(cfg, ReflowConfig)
    for key in ("num_pairs", "batch_size", "save_every"):
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
    identity = draw_identity(cfg, module)
    drawn = DrawnPairs(partial_path(out), identity, generator)
    drawn.resume()
    first = drawn.count
    if first:
        console.print(f"resuming from {drawn.path}: {first} of {cfg.num_pairs} pairs drawn", highlight=False)
    labels = module.default_labels(cfg.num_pairs)
    started = time.perf_counter()
    try:
        for done in range(first, cfg.num_pairs, cfg.batch_size):
            size = min(cfg.batch_size, cfg.num_pairs - done)
            noise = torch.randn((size, *module.image_shape), generator=generator, device=device)
            batch_labels = None if labels is None else labels[done : done + size]
            batch = module.sample(size, generator, noise=noise, labels=batch_labels, guidance_scale=cfg.guidance_scale)
            drawn.add(noise.cpu(), batch.cpu())
            elapsed = time.perf_counter() - started
            left = elapsed / (done + size - first) * (cfg.num_pairs - done - size)
            console.print(
                f"pairs {done + size}/{cfg.num_pairs} ({elapsed:.0f} s, about {left:.0f} s left)", highlight=False
            )
            if (done + size) // cfg.save_every > done // cfg.save_every and done + size < cfg.num_pairs:
                drawn.save(elapsed)
    except KeyboardInterrupt:
        drawn.save(time.perf_counter() - started)
        if drawn.path.is_file():
            console.print(f"interrupted: the pairs drawn so far are in {drawn.path}; the same command resumes.")
        raise
    pairs = pairs_record(
        torch.cat(drawn.images),
        torch.cat(drawn.noises),
        labels,
        module.num_classes,
        module.run_config.get("data"),
        source_checkpoint=identity["source_checkpoint"],
        sampler=identity["sampler"],
        autoguidance=identity["autoguidance"],
        seed=cfg.seed,
        seconds=round(drawn.seconds_before + time.perf_counter() - started, 1),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as file:
        torch.save(pairs, file)
    drawn.path.unlink(missing_ok=True)
    console.print(
        f"wrote {cfg.num_pairs} pairs to {out}. Next: python -m diffusion_lit.train experiment=reflow "
        f"data.path={out} init_weights={cfg.ckpt} (and the model options of the run that made {cfg.ckpt}), "
        "then experiment=reflow_distill for one call (README: Reflow).",
        highlight=False,
    )
    return out
