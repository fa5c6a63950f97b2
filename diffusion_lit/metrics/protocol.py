"""The protocol card: everything an evaluation number depends on, stored next to the number.

FID in particular moves with the feature network and its weights, the number of real and
generated images, the sampler and its steps, whether EMA weights were used, the seed and the
library versions; a number without these cannot be compared or reproduced.
"""

from __future__ import annotations

from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

import torch
import torchmetrics
import torchvision

from diffusion_lit import __version__


def _model_fields(run_config: dict[str, Any], image_shape: tuple[int, ...], checkpoint: str | None) -> dict[str, Any]:
    """What was evaluated: the checkpoint, its weights, data, formulation and image shape."""
    return {
        "checkpoint": checkpoint,
        "ema_weights": bool((run_config.get("callbacks") or {}).get("ema")),
        "dataset": (run_config.get("data") or {}).get("_target_"),
        # Runs from before the formulation choice are VP.
        "formulation": str((run_config.get("formulation") or {}).get("_target_", "VP")).rsplit(".", 1)[-1],
        "image_shape": list(image_shape),
    }


def _environment_fields() -> dict[str, Any]:
    return {
        "versions": {
            "diffusion_lit": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "torchmetrics": torchmetrics.__version__, "lightning": version("lightning"),
        },
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }  # fmt: skip


def nll_protocol_card(
    *,
    run_config: dict[str, Any],
    image_shape: tuple[int, ...],
    num_timesteps: int,
    split: str,
    num_images: int,
    timesteps: int | None,
    variance: str,
    seed: int,
    checkpoint: str | None = None,
    ode: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable description of one likelihood evaluation (``evaluate metrics=nll``):
    which real images (split, count), and either which bound (every one of the T terms, or an
    unbiased estimate from K random timesteps per image, seeded) with which reverse variance, or
    with ``ode`` (the nll options: trace, probes, rtol, atol) the probability-flow ODE's."""
    if ode is not None:
        method = {
            "metric": "bits per dimension of the probability-flow ODE likelihood of uniformly dequantized images",
            "trace_estimator": "exact" if ode["trace"] == "exact" else f"Hutchinson, {ode['probes']} Rademacher probes",
            "solver": f"scipy RK45, rtol {ode['rtol']:g}, atol {ode['atol']:g}",
        }
    else:
        estimator = "all terms" if timesteps is None else f"{timesteps} uniform random timesteps per image (unbiased)"
        method = {
            "metric": "bits per dimension of the discrete variational bound",
            "timestep_estimator": estimator,
            "reverse_variance": variance,
        }
    return {
        **_model_fields(run_config, image_shape, checkpoint),
        **method,
        "schedule_timesteps": num_timesteps,
        "split": split,
        "num_images": num_images,
        "seed": seed,
        **_environment_fields(),
    }


def protocol_card(
    *,
    run_config: dict[str, Any],
    image_shape: tuple[int, ...],
    sampler: dict[str, Any],
    num_generated: int,
    seed: int,
    extractor: Any | None = None,
    num_real: int | None = None,
    reference_split: str | None = None,
    guidance_scale: float | None = None,
    checkpoint: str | None = None,
    autoguidance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable description of one evaluation.

    Args:
        run_config: the training run's resolved config (from the checkpoint or the module).
        image_shape: (C, H, W) of the generated images.
        sampler: the sampler config (``_target_`` and options) that generated them.
        num_generated, seed: how many images were generated, from which seed.
        extractor: the feature network (``name``, ``weights_source``, ``weights_sha256``), if any.
        num_real, reference_split: the real reference images of feature metrics.
        guidance_scale: classifier-free guidance scale of conditional models.
        checkpoint: the evaluated checkpoint file.
        autoguidance: the guide's checkpoint and scale, when sampling was autoguided.
    """
    card: dict[str, Any] = {
        **_model_fields(run_config, image_shape, checkpoint),
        "sampler": str(sampler.get("_target_", "")).rsplit(".", 1)[-1],
        "sampler_options": {k: v for k, v in sampler.items() if not str(k).startswith("_")},
        "guidance_scale": guidance_scale,
        "autoguidance": autoguidance,
        "num_generated": num_generated,
        "seed": seed,
        **_environment_fields(),
    }  # fmt: skip
    if extractor is not None:
        card.update(
            extractor=extractor.name, extractor_weights=extractor.weights_source,
            extractor_sha256=extractor.weights_sha256, reference_split=reference_split, num_real=num_real,
        )  # fmt: skip
    return card
