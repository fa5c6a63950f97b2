"""Is a flow's ODE, run backwards from its stochastic samples, a source of reflow pairs?

    python experiments/formulations/inverted_noise.py --ckpt <flow run>/checkpoints/last.ckpt \
        [--num-samples 1024] [--steps 8] [--seed 777]

Draws samples with ``flow_dpm_sde`` (10 calls, eta 5, shift 1: better images than the ODE's),
integrates the model's ODE dx/dt = v(x, t) from each (t = 0) up to the top level with midpoint steps
on the grid ``flow_midpoint`` uses forwards, and prints how far the noise found is from N(0, I)
(mean, std, squared norm per pixel and its spread against a Gaussian's, neighbouring pixels'
correlation), then runs ``flow_midpoint`` forwards from it: the images it gives back (validity, RMS
distance to the samples) and, for reference, the validity of the same sampler from Gaussian noise.
A pairing (inverted noise, sample) is deterministic; it is worth training on only if the noise
looks like what the student will be given at sampling time.
"""

from __future__ import annotations

import argparse
import math

import torch

from diffusion_lit.diffusion.flow_samplers import FlowTime, flow_dpm_sde_sample, flow_sample
from diffusion_lit.lit.build import load_checkpoint
from diffusion_lit.metrics.triangles import triangle_validity


def invert(path: FlowTime, images: torch.Tensor, steps: int, shift: float) -> torch.Tensor:
    """The noise (a VP x_T, as samplers take it) that ``flow_midpoint`` at ``steps``, ``shift``
    would map to about ``images``: its grid walked upwards from t = 0 with midpoint steps."""
    levels = path.grid(steps, shift)
    times = [0.0] + [path.time(level) for level in reversed(levels)]
    x = images
    for start, end in zip(times[:-1], times[1:], strict=False):
        v, _ = path.velocity(x, path.level(max(start, path.time(0))))  # t = 0 read at the lowest level
        half = path.level(0.5 * (start + end))
        v, _ = path.velocity(x + (path.time(half) - start) * v, half)
        x = x + (end - start) * v
    return x / math.sqrt((1.0 - times[-1]) ** 2 + times[-1] ** 2)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--num-samples", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8, help="midpoint steps each way")
    parser.add_argument("--shift", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args()
    module = load_checkpoint(args.ckpt)
    model_fn = module.eps_fn()
    generator = torch.Generator().manual_seed(args.seed)
    noise = torch.randn((args.num_samples, *module.image_shape), generator=generator)
    samples = flow_dpm_sde_sample(model_fn, module.schedule, noise, steps=10, generator=generator, shift=1.0, eta=5.0)
    samples = samples.clamp(-1.0, 1.0)
    found = invert(FlowTime(model_fn, module.schedule, samples, True, None), samples, args.steps, args.shift)
    per_pixel = found.pow(2).flatten(1).mean(1)
    pixels = found[0].numel()
    pairs = torch.stack([found[..., :-1].flatten(), found[..., 1:].flatten()])
    print(f"samples: flow_dpm_sde 10, valid {triangle_validity(samples).rate:.3f}")
    print(f"inverted noise: mean {found.mean():.3f}, std {found.std():.3f}, "
          f"squared norm per pixel {per_pixel.mean():.3f} "
          f"± {per_pixel.std():.3f} (N(0, I): 1 ± {math.sqrt(2 / pixels):.3f}), neighbour correlation "
          f"{torch.corrcoef(pairs)[0, 1]:.3f}")  # fmt: skip
    back = flow_sample(model_fn, module.schedule, found, steps=args.steps, method="midpoint", shift=args.shift)
    back = back.clamp(-1.0, 1.0)
    rms = (back - samples).pow(2).mean().sqrt()
    print(f"flow_midpoint {args.steps} from it: valid {triangle_validity(back).rate:.3f}, RMS to the samples {rms:.4f}")
    gaussian = flow_sample(model_fn, module.schedule, noise, steps=args.steps, method="midpoint", shift=args.shift)
    print(
        f"flow_midpoint {args.steps} from Gaussian noise: valid {triangle_validity(gaussian.clamp(-1.0, 1.0)).rate:.3f}"
    )


if __name__ == "__main__":
    main()
