"""Lightning glue: the LightningModule that trains and samples a diffusion model."""

from diffusion_lit.lit.module import DiffusionModule

__all__ = ["DiffusionModule"]
