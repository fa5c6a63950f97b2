"""Diffusion on counts: the blackout process, a pure-death process on the non-negative integers
(Santos et al. 2023, "Blackout Diffusion: Generative Diffusion Models in Discrete-State Spaces").

Counts live in images as values on a grid: a pixel holding n of at most ``count_max`` = c counts
is the image value 2 n / c - 1 in [-1, 1] (:func:`counts_to_images`), so that grids, metrics and a
Gaussian model trained on the same data see one representation.

Forward process. Each of a pixel's n_0 counts dies independently; one alive at process time
s = 0 is still alive at s in [0, 1] with probability p(s) = cos^2(pi s / 2). Blackout's clock is
tau = -log p (every count dies at rate 1); the cosine spacing of p is our choice (Nichol &
Dhariwal 2021's alpha-bar), and p(1) = 0 makes the end state exactly all-zero, so the reverse
process starts from a known image and the bound below has no prior term. Closed forms:

    x_s | n_0 ~ Binomial(n_0, p),   E[x_s] = p E[n_0],   Var[x_s] = p (1 - p) E[n_0] + p^2 Var[n_0];

for Poisson data n_0 ~ Poisson(r), x_s ~ Poisson(r p) exactly (thinning).

Reverse process: pure birth. Going back in time each of the y = n_0 - x_s dead counts is reborn at
rate h(s) = -p'(s) / (1 - p(s)) = pi cot(pi s / 2), and between times s > s' with probability
(p(s') - p(s)) / (1 - p(s)). The model does not know n_0: its birth rate is m(x_s, s) h(s) with
m = E[n_0 - x_s | x_s] (the minimiser of the loss below). Here the net outputs F and
m = c (1 - p) softplus(F): for photon counts n_0 ~ Poisson(lambda i) of an intensity i,
m = lambda (1 - p) E[i | x_s], so softplus(F) estimates the clean intensity times lambda / c.

Loss and bound. For a continuous-time Markov chain the path-space KL between the true reverse
process (rate y h) and the model's (rate m h) gives (Campbell et al. 2022, "A Continuous Time
Framework for Discrete Denoising Models"; Blackout sec. 3)

    -log p_model(n_0) <= int_0^1 h(s) E_{x_s | n_0} [ sum_pixels d(y, m) ] ds,
    d(y, m) = y log(y / m) - y + m          (the Poisson / generalised-KL Bregman divergence),

with no prior term (x_1 = 0 for model and data) and no decoder (the process ends at s = 0 with
the counts themselves). It is tight when m is exact. Training draws s ~ U(0, 1) and minimises
h(s) d(y, m) (``weighting=elbo``) or d(y, m) (``uniform``), divided by c for a loss near 1.

The data's counts are clipped at c = :func:`count_max` of the photon rate (a 1e-6 tail).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from scipy.stats import poisson

from diffusion_lit.diffusion.likelihood import BoundTerms
from diffusion_lit.utils.errors import UserError, check_choice

# Counts of an intensity-1 pixel above this tail probability are kept; the rest are clipped to it.
COUNT_TAIL = 1e-6
CountWeighting = Literal["elbo", "uniform"]
COUNT_FORMULATIONS = ("blackout",)
# The model's m = E[n_0 - x_s | x_s] at (x_s, s): what the bound and the samplers call.
ExpectedDeadFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# The net sees 1000 s: the span of the VP nets' timestep indices.
_TIME_SCALE = 1000.0
# The smallest process time drawn: h(s) ~ 2 / s, and y = 0 there almost surely.
_S_MIN = 1e-5


@functools.lru_cache(maxsize=64)
def count_max(rate: float) -> int:
    """The largest count kept at photon rate ``rate`` (lambda counts at intensity 1): the smallest
    n with P(Poisson(rate) > n) <= 1e-6 (5 -> 19, 20 -> 45, 100 -> 151)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1e6:
        raise UserError(f"data.counts.lambda must be a number in (0, 1e6] (photons at full intensity), got {rate!r}.")
    return max(1, int(poisson.isf(COUNT_TAIL, rate)))


def counts_to_images(counts: torch.Tensor, maximum: int) -> torch.Tensor:
    """Counts n in [0, c] as image values 2 n / c - 1 in [-1, 1]."""
    return counts.float() * (2.0 / maximum) - 1.0


def images_to_counts(images: torch.Tensor, maximum: int) -> torch.Tensor:
    """Image values back to counts: (x + 1) c / 2 rounded to the nearest integer in [0, c]
    (a Gaussian model's samples are rounded the same way)."""
    return torch.round((images.float() + 1.0) * (maximum / 2.0)).clamp_(0, maximum)


def survival(s: torch.Tensor) -> torch.Tensor:
    """p(s) = cos^2(pi s / 2): the probability that a count alive at s = 0 is alive at s (written
    as sin^2(pi (1 - s) / 2), which is exactly 0 at s = 1 in floating point)."""
    return torch.sin(0.5 * math.pi * (1.0 - s)) ** 2


def birth_rate(s: torch.Tensor) -> torch.Tensor:
    """h(s) = -p'(s) / (1 - p(s)) = pi cot(pi s / 2): a dead count's rebirth rate in reverse time."""
    return math.pi / torch.tan(0.5 * math.pi * s)


def reborn_fraction(s: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
    """(p(s') - p(s)) / (1 - p(s)): the share of the counts dead at s that are alive at s' < s."""
    p = survival(s)
    return (survival(s_next) - p) / (1.0 - p)


def thin(counts: torch.Tensor, s: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_s ~ Binomial(n_0, p(s)) per pixel, for counts (B, ...) and times s (B,)."""
    p = survival(s.double()).reshape(-1, *[1] * (counts.ndim - 1)).expand_as(counts)
    return torch.binomial(counts.double(), p.contiguous(), generator=generator).to(counts.dtype)


def bregman(y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """d(y, m) = y log(y / m) - y + m, elementwise, with 0 log 0 = 0."""
    return torch.xlogy(y, y) - y * torch.log(mean) - y + mean


def marginal_moments(p: torch.Tensor, mean: float, variance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x_s] and Var[x_s] at survival p for data of the given mean and variance (module docstring)."""
    return p * mean, p * (1.0 - p) * mean + p**2 * variance


class CountExample(NamedTuple):
    """One thinned batch: the net's inputs, the dead counts y to predict, each sample's weight."""

    net_input: torch.Tensor
    net_time: torch.Tensor
    dead: torch.Tensor
    weight: torch.Tensor  # (B,)


@dataclass(frozen=True)
class Blackout:
    """The blackout process on counts (module docstring).

    Args:
        count_rate: photons at full intensity, lambda (``${data.counts.lambda}``): the data's
            counts run from 0 to ``count_max(count_rate)``.
        weighting: ``elbo`` (the bound's weight h(s), Blackout's objective) or ``uniform``.
    """

    count_rate: float | None = None
    weighting: CountWeighting = "elbo"
    name: str = "blackout"

    def __post_init__(self) -> None:
        if self.count_rate is None:
            raise UserError(
                "formulation=blackout trains on counts: set data.counts.lambda (photons at full intensity, "
                "e.g. data.counts.lambda=20), which turns the images into Poisson counts."
            )
        check_choice("formulation.weighting", self.weighting, get_args(CountWeighting))

    @property
    def count_max(self) -> int:
        return count_max(self.count_rate)

    def draw_levels(self, batch: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """Process times s ~ U(0, 1) (kept off 0, where h is infinite), shape (B,)."""
        return torch.rand(batch, device=device, generator=generator).clamp_min(_S_MIN)

    def net_inputs(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(2 x / (c p + 1) - 1, 1000 s): the counts on the scale of those still alive, so that the
        net's input stays near [-1, 1] at every s (x / c alone would be ~ -1 for most of the process)."""
        scale = self.count_max * survival(s) + 1.0
        return 2.0 * x / scale.reshape(-1, *[1] * (x.ndim - 1)) - 1.0, _TIME_SCALE * s

    def expected_dead(self, output: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """m = c (1 - p(s)) softplus(F): the model's E[n_0 - x_s | x_s] (> 0 for s > 0)."""
        dead_share = (1.0 - survival(s)).reshape(-1, *[1] * (output.ndim - 1))
        return self.count_max * dead_share * F.softplus(output.float()) + 1e-8

    def training_example(
        self, counts: torch.Tensor, s: torch.Tensor, generator: torch.Generator | None
    ) -> CountExample:
        """``counts`` thinned to times ``s``, as the net's inputs and the dead counts to predict."""
        alive = thin(counts, s, generator)
        net_input, net_time = self.net_inputs(alive, s)
        weight = birth_rate(s.float()) if self.weighting == "elbo" else torch.ones_like(s, dtype=torch.float32)
        return CountExample(net_input, net_time, counts - alive, weight / self.count_max)

    def loss(self, example: CountExample, expected: torch.Tensor) -> torch.Tensor:
        """Per-sample loss (B,): weight x mean over pixels of d(y, m) (the y log y - y part has no
        gradient; kept, the validation loss is the bound's integrand per pixel, divided by c)."""
        return bregman(example.dead.float(), expected).flatten(1).mean(dim=1) * example.weight


@torch.no_grad()
def count_bound(
    expected_dead_fn: ExpectedDeadFn,
    counts: torch.Tensor,
    levels: int = 16,
    generator: torch.Generator | None = None,
) -> BoundTerms:
    """The bound of the module docstring for a batch of counts (B, C, H, W), in nats per image.

    The integral over s is estimated by stratified sampling: one time s_j = (j + u_j) / K in each
    of ``levels`` = K equal strata, and one thinning x_{s_j} per image and time (unbiased).

    Args:
        expected_dead_fn: the model's m, ``fn(x_s, s) -> E[n_0 - x_s | x_s]`` (B, ...).
        counts: the data (non-negative integers).
        levels: K, the strata (network calls per image).
        generator: the source of the draws (on the counts' device).
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise UserError(f"levels must be an integer >= 1 (network calls per image), got {levels!r}.")
    batch, device = counts.shape[0], counts.device
    counts = counts.float()
    total = torch.zeros(batch, dtype=torch.float64, device=device)
    for stratum in range(levels):
        u = torch.rand(batch, device=device, generator=generator)
        s = ((stratum + u) / levels).clamp_min(_S_MIN)
        alive = thin(counts, s, generator)
        expected = expected_dead_fn(alive, s).double()
        per_image = bregman((counts - alive).double(), expected).flatten(1).sum(dim=1)
        total += birth_rate(s.double()) * per_image / levels
    zero = torch.zeros_like(total)
    return BoundTerms(prior=zero, diffusion=total, decoder=zero, num_dims=counts[0].numel())


def is_count_formulation(formulation: object) -> bool:
    return getattr(formulation, "name", None) in COUNT_FORMULATIONS
