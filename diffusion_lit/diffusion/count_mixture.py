"""An analytic test bed for the count process: pixels drawn independently from a mixture of
Poissons, whose E[n_0 - x_s | x_s] is exact at every process time, so that the blackout
sampler's and bound's own errors can be measured apart from any network's.

With n_0 ~ sum_k w_k Poisson(r_k), thinning gives x_s ~ sum_k w_k Poisson(r_k p) and, given x_s
and the component k, the dead counts n_0 - x_s ~ Poisson(r_k (1 - p)) independent of x_s, so

    E[n_0 - x_s | x_s] = (1 - p) sum_k q_k(x_s) r_k,
    q_k(x) = w_k Poisson(x; r_k p) / sum_j w_j Poisson(x; r_j p)   (the component's posterior).

One component is the case where the reverse process is exactly Poisson at any step count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion_lit.diffusion.counts import survival


@dataclass(frozen=True)
class PoissonMixture:
    """``rates`` (K,) and ``weights`` (K,) summing to 1; float64."""

    rates: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def of(cls, rates: list[float], weights: list[float]) -> PoissonMixture:
        return cls(torch.tensor(rates, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Counts of ``shape``, every pixel independent."""
        component = torch.multinomial(self.weights, int(torch.Size(shape).numel()), True, generator=generator)
        return torch.poisson(self.rates[component], generator=generator).reshape(shape)

    def log_pmf(self, counts: torch.Tensor) -> torch.Tensor:
        """log P(n) elementwise."""
        return self._log_joint(counts.double(), self.rates).logsumexp(dim=-1)

    def pmf(self, maximum: int) -> torch.Tensor:
        """P(n) for n = 0..maximum."""
        return self.log_pmf(torch.arange(maximum + 1, dtype=torch.float64)).exp()

    @property
    def mean(self) -> float:
        return float((self.weights * self.rates).sum())

    @property
    def variance(self) -> float:
        # Var = E[Var | k] + Var[E | k] = sum w r + sum w r^2 - mean^2.
        return float((self.weights * (self.rates + self.rates**2)).sum()) - self.mean**2

    def expected_dead(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """E[n_0 - x_s | x_s] (module docstring) for counts x (B, ...) at times s (B,)."""
        p = survival(s.double()).reshape(-1, *[1] * (x.ndim - 1), 1)
        posterior = self._log_joint(x.double(), self.rates * p).softmax(dim=-1)
        return (1.0 - p[..., 0]) * (posterior * self.rates).sum(dim=-1)

    def _log_joint(self, x: torch.Tensor, rates: torch.Tensor) -> torch.Tensor:
        """log w_k + log Poisson(x; rate_k), with a trailing component axis."""
        x = x.unsqueeze(-1)
        return self.weights.log() + torch.xlogy(x, rates) - rates - torch.lgamma(x + 1.0)
