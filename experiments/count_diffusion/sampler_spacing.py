"""The tau-leaping sampler's own error on the Poisson-mixture test bed (exact E[n_0 - x_s | x_s], so
only the sampler errs), for its two step spacings and several step counts: the count histogram's
total variation to the data's (200,000 pixels, seed 0).

    python experiments/count_diffusion/sampler_spacing.py [--steps 10 25 100]

Mixtures: a dark background (rate 0) with lit pixels at rate 5, 20 or 100 (the photon-count
triangles' lambdas), and a two-level mixture without zeros.
"""

from __future__ import annotations

import argparse

import torch

from diffusion_lit.diffusion.count_mixture import PoissonMixture
from diffusion_lit.diffusion.count_samplers import tau_leaping_sample
from diffusion_lit.diffusion.counts import Blackout
from diffusion_lit.metrics.counts import count_histogram, total_variation

MIXTURES = [([0.0, 5.0], [0.7, 0.3]), ([0.0, 20.0], [0.7, 0.3]), ([0.0, 100.0], [0.7, 0.3]), ([1.0, 15.0], [0.6, 0.4])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--pixels", type=int, default=200000)
    args = parser.parse_args()
    print("| mixture | spacing | " + " | ".join(f"{steps} steps" for steps in args.steps) + " |")
    print("|---|---|" + "---:|" * len(args.steps))
    for rates, weights in MIXTURES:
        mixture = PoissonMixture.of(rates, weights)
        maximum = int(max(rates) * 2 + 20)
        for spacing in ("time", "amplitude"):
            cells = []
            for steps in args.steps:
                samples = tau_leaping_sample(
                    mixture.expected_dead, Blackout(count_rate=20), (args.pixels, 1, 1, 1),
                    torch.Generator().manual_seed(0), steps=steps, spacing=spacing,
                )  # fmt: skip
                cells.append(f"{total_variation(count_histogram(samples, maximum), mixture.pmf(maximum)):.4f}")
            name = " + ".join(f"{w:g} Poisson({r:g})" for r, w in zip(rates, weights, strict=True))
            print(f"| {name} | {spacing} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
