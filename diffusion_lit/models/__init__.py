"""Neural networks (nn.Modules only): the U-Net and its embeddings, the MNIST feature classifier."""

from diffusion_lit.models.embeddings import TimeEmbedding, sinusoidal_embedding
from diffusion_lit.models.unet import UNet

__all__ = ["UNet", "TimeEmbedding", "sinusoidal_embedding"]
