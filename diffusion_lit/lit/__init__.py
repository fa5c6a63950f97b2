"""Lightning glue: the LightningModules (diffusion, single-step denoiser, MNIST classifier), building
them from a config or a checkpoint, precision, checkpoint writes, logging, sample metrics."""

from diffusion_lit.lit.module import DiffusionModule

__all__ = ["DiffusionModule"]
