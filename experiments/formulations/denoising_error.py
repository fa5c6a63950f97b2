"""Per-noise-level denoising error of trained checkpoints: the mean squared error of the clean-image
estimate x0_hat(x_t, t) against x_0 on validation images, at the level nearest to each sigma.

    python experiments/formulations/denoising_error.py --ckpts vp=<ckpt> edm=<ckpt> [--images 128]

Every checkpoint gets the same images and the same noise per level (x = x_0 + sigma eps, in the
VP variable x_t = x / sqrt(1 + sigma^2)); sigma is the Karras et al. 2022 noise level, so a VP and
an EDM model are compared at equal noise whatever their schedules.
"""

from __future__ import annotations

import argparse

import torch

from diffusion_lit.data.batch import images_of
from diffusion_lit.diffusion.process import q_sample
from diffusion_lit.lit.build import data_module_for, load_checkpoint
from diffusion_lit.utils.errors import UserError, report_user_errors

SIGMAS = (0.005, 0.02, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpts", nargs="+", required=True, help="name=<checkpoint> entries")
    parser.add_argument("--images", type=int, default=128)
    args = parser.parse_args()
    if not all("=" in spec for spec in args.ckpts):
        raise UserError(f"--ckpts entries are name=<checkpoint>, got {args.ckpts!r}.")
    modules = {name: load_checkpoint(path) for name, path in (spec.split("=", 1) for spec in args.ckpts)}
    datamodule = data_module_for(next(iter(modules.values())), {})
    datamodule.prepare_data()
    datamodule.setup("fit")
    x0 = images_of(next(iter(datamodule.val_dataloader())))[: args.images]
    print("| sigma | " + " | ".join(f"{name} x0 MSE" for name in modules) + " |")
    print("|---|" + "---|" * len(modules))
    with torch.inference_mode():
        for sigma in SIGMAS:
            cells = []
            for module in modules.values():
                t = int((module.schedule.sigmas.log() - torch.tensor(sigma).log()).abs().argmin())
                alpha_bar = module.schedule.alphas_bar[t]
                timesteps = torch.full((len(x0),), t)
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
                x_t = q_sample(module.schedule, x0, timesteps, noise)
                eps = module.conditional_eps(x_t, timesteps, None)
                estimate = (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
                cells.append(f"{((estimate - x0) ** 2).mean().item():.5f}")
            print(f"| {sigma} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    report_user_errors(main)
