"""Classifier-free guidance (Ho & Salimans 2022): one conditional net, two predictions.

    eps = eps(x_t, t, null) + s * (eps(x_t, t, c) - eps(x_t, t, null))

s = 1 is the plain conditional model, s = 0 the unconditional one, s > 1 trades diversity for
fidelity to the class (seed 004 part A 1.6 uses s = 7 on a text-to-image model; small class-
conditional models typically want 1-4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_lit.diffusion.samplers import ModelFn
from diffusion_lit.errors import UserError

# eps prediction of a class-conditional net: (x_t, t, labels) -> eps.
ConditionalEpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided_eps(eps_fn: ConditionalEpsFn, labels: torch.Tensor, scale: float, null_label: int) -> ModelFn:
    """The sampler-facing ``model_fn(x_t, t) -> eps`` of classifier-free guidance at ``scale``.

    Scales 0 and 1 need one network call (the unconditional or the conditional prediction,
    exactly); any other scale evaluates both branches in one batch of 2B.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
        raise UserError(f"guidance_scale must be a number >= 0 (1 = conditional, 0 = unconditional), got {scale!r}.")
    null = torch.full_like(labels, null_label)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1:
            return eps_fn(x, t, labels)
        if scale == 0:
            return eps_fn(x, t, null)
        both = eps_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        conditional, unconditional = both.chunk(2)
        return unconditional + scale * (conditional - unconditional)

    return model_fn
