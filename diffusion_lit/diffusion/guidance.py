"""Classifier-free guidance (Ho & Salimans 2022) and the compositions built on it: visual
anagrams and hybrid images (seed 004 part A 1.8-1.9); and autoguidance by a weaker model.
Each returns a sampler-facing ``model_fn(x_t, t) -> eps``, so every sampler runs them unchanged.

    eps = eps(x_t, t, null) + s * (eps(x_t, t, c) - eps(x_t, t, null))

s = 1 is the plain conditional model, s = 0 the unconditional one, s > 1 trades diversity for
fidelity to the class (seed 004 part A 1.6 uses s = 7 on a text-to-image model; small class-
conditional models typically want 1-4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_lit.diffusion.samplers import ModelFn
from diffusion_lit.utils.errors import UserError, check_choice

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


def check_guide_scale(scale: float) -> float:
    """The autoguidance weight w: a number >= 0 (1 = the model alone)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
        raise UserError(f"guide_scale must be a number >= 0 (1 = the model alone), got {scale!r}.")
    return scale


def autoguided_eps(model_fn: ModelFn, guide_fn: ModelFn, scale: float) -> ModelFn:
    """Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of
    itself"): extrapolate from a weaker model's prediction towards the main model's,

        eps = eps_guide(x_t, t) + w (eps_model(x_t, t) - eps_guide(x_t, t)),

    which, unlike classifier-free guidance, needs no labels: the guide (a smaller or less
    trained version of the same model) makes the same kind of errors more strongly, and the
    extrapolation moves the samples away from them. w = 1 is the main model alone.
    """
    check_guide_scale(scale)
    if scale == 1:
        return model_fn

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        guide = guide_fn(x, t)
        return guide + scale * (model_fn(x, t) - guide)

    return guided


# Invertible image transforms for visual anagrams: each is its own inverse.
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "flip": lambda x: x.flip(-2),  # upside down (seed 004 1.8)
    "mirror": lambda x: x.flip(-1),  # left-right
    "rot180": lambda x: x.flip(-2, -1),  # a 6 becomes a 9
}


def check_view(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return VIEWS[check_choice("view", name, sorted(VIEWS))]


def anagram_eps(
    eps_fn: ConditionalEpsFn,
    conditions: list[tuple[torch.Tensor, str]],
    scale: float,
    null_label: int,
    weights: list[float] | None = None,
) -> ModelFn:
    """Visual anagrams (Geng et al. 2024; seed 004 1.8): one image that shows class c_i when
    seen through view v_i. Every view's guided noise estimate is computed on the transformed
    image and transformed back, then they are averaged (weights w_i, default equal):

        eps = sum_i w_i v_i^-1( CFG(v_i(x_t), t, c_i) )

    With one condition, or identical conditions under the identity view, this is plain CFG.
    """
    if not conditions:
        raise UserError("an anagram needs at least one (labels, view) condition.")
    weights = [1.0 / len(conditions)] * len(conditions) if weights is None else list(weights)
    if len(weights) != len(conditions) or abs(sum(weights) - 1.0) > 1e-6:
        raise UserError(f"anagram weights must be one per condition and sum to 1, got {weights!r}.")
    guided = [(guided_eps(eps_fn, labels, scale, null_label), check_view(view)) for labels, view in conditions]

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # v(v(x)) = x for every view in VIEWS, so the view is its own inverse.
        return sum(weight * view(fn(view(x), t)) for weight, (fn, view) in zip(weights, guided, strict=True))

    return model_fn


def hybrid_eps(
    eps_fn: ConditionalEpsFn,
    low_labels: torch.Tensor,
    high_labels: torch.Tensor,
    scale: float,
    null_label: int,
    lowpass: Callable[[torch.Tensor], torch.Tensor],
) -> ModelFn:
    """Hybrid images (Geng et al. 2024, "factorized diffusion"; seed 004 1.9): the low spatial
    frequencies of the noise estimate come from one class, the high ones from another,

        eps = lowpass(CFG(x_t, t, c_low)) + highpass(CFG(x_t, t, c_high)),
        highpass(e) = e - lowpass(e),

    so the image reads as c_low from afar (or blurred) and as c_high up close. With identical
    classes this is plain CFG (lowpass + highpass = identity).
    """
    low = guided_eps(eps_fn, low_labels, scale, null_label)
    high = guided_eps(eps_fn, high_labels, scale, null_label)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps_high = high(x, t)
        return lowpass(low(x, t)) + eps_high - lowpass(eps_high)

    return model_fn
