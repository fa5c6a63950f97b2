"""Which count process: blackout (Santos et al. 2023) or binomial-thinning JUMP (Chen & Zhou 2023),
each with its exact reverse model on the Poisson-mixture test bed, so that only the processes differ.

    python experiments/count_diffusion/process_choice.py [--steps 100] [--pixels 200000]

Blackout's state is the counts themselves: x_s ~ Binomial(n_0, p(s)), and its chain ends at n_0.
JUMP's latent counts are Poisson of the data read as an intensity: z_t ~ Poisson(n_0 alpha_t), the
reverse step adds Poisson((alpha_{t-1} - alpha_t) E[n_0 | z_t]) births, and its chain ends at
z_0 ~ Poisson(n_0), one Poisson draw more than the data; its output is the prediction
x0_hat = E[n_0 | z_1] (a number, not a count). Both chains here run on the same survival
p = alpha = cos^2(pi s / 2) and the same equal steps; E[n_0 | z_t] is exact by enumeration of n_0.
Prints each output's count histogram's total variation to the data's, its mean and variance.
"""

from __future__ import annotations

import argparse

import torch

from diffusion_lit.diffusion.count_mixture import PoissonMixture
from diffusion_lit.diffusion.count_samplers import tau_leaping_sample
from diffusion_lit.diffusion.counts import Blackout, survival
from diffusion_lit.metrics.counts import count_histogram, total_variation

MAXIMUM = 120  # the enumeration of n_0 (the mixture below has P(n_0 > 120) < 1e-30)


def jump_posterior_mean(mixture: PoissonMixture, z: torch.Tensor, alpha: float) -> torch.Tensor:
    """E[n_0 | z_t] with z_t ~ Poisson(n_0 alpha), n_0 ~ the mixture, by enumerating n_0."""
    support = torch.arange(MAXIMUM + 1, dtype=torch.float64)
    log_prior = mixture.log_pmf(support)
    rate = (support * alpha).clamp_min(1e-300)
    log_likelihood = torch.xlogy(z.unsqueeze(-1), rate) - support * alpha - torch.lgamma(z.unsqueeze(-1) + 1.0)
    posterior = (log_prior + log_likelihood).softmax(dim=-1)
    return (posterior * support).sum(dim=-1)


def jump_sample(mixture: PoissonMixture, pixels: int, steps: int, generator: torch.Generator):
    """(z_0, x0_hat) of JUMP's exact reverse chain from z_1 = 0."""
    z = torch.zeros(pixels, dtype=torch.float64)
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    prediction = z
    for index in range(steps):
        alpha, alpha_next = float(survival(times[index])), float(survival(times[index + 1]))
        prediction = jump_posterior_mean(mixture, z, alpha)
        z = z + torch.poisson((alpha_next - alpha) * prediction, generator=generator)
    return z, prediction


def describe(name: str, values: torch.Tensor, mixture: PoissonMixture) -> None:
    tv = total_variation(count_histogram(values, MAXIMUM), mixture.pmf(MAXIMUM))
    print(f"| {name} | {tv:.4f} | {float(values.mean()):.3f} | {float(values.var()):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pixels", type=int, default=50000)
    args = parser.parse_args()
    # Dark background and lit pixels, as in the photon-count triangles at lambda = 20.
    mixture = PoissonMixture.of([0.0, 20.0], [0.7, 0.3])
    generator = torch.Generator().manual_seed(0)
    blackout = tau_leaping_sample(mixture.expected_dead, Blackout(count_rate=20), (args.pixels, 1, 1, 1), generator,
                                  steps=args.steps)  # fmt: skip
    z0, prediction = jump_sample(mixture, args.pixels, args.steps, generator)
    print(f"data: {mixture.weights.tolist()} x Poisson({mixture.rates.tolist()}); {args.steps} steps, exact models")
    print("| output | count histogram TV | mean | variance |\n|---|---:|---:|---:|")
    print(f"| data (exact) | 0 | {mixture.mean:.3f} | {mixture.variance:.2f} |")
    describe("blackout: x_0", blackout.flatten(), mixture)
    describe("JUMP: z_0", z0, mixture)
    describe("JUMP: x0_hat rounded", prediction.round(), mixture)


if __name__ == "__main__":
    main()
