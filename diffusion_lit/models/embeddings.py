"""Timestep embeddings for diffusion networks.

The network has to know how noisy its input is, so the (integer or continuous)
diffusion timestep is turned into a vector: a fixed sinusoidal code, as in the
Transformer positional encoding used by DDPM, followed by a small learned MLP.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from diffusion_lit.utils.errors import UserError

__all__ = ["sinusoidal_embedding", "TimeEmbedding"]


def sinusoidal_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal embedding of diffusion timesteps.

    Frequencies are geometrically spaced from 1 down to ``1 / max_period`` so that
    both neighbouring timesteps (high frequencies) and the coarse position in the
    schedule (low frequencies) are easy to read off linearly.

    Args:
        timesteps: Tensor of shape ``(B,)``, integer or floating point timesteps
            (fractional values are allowed, e.g. for continuous-time models).
        dim: Size of the embedding, at least 2. When odd, the last column is zero.
        max_period: Longest period of the sinusoids; must be > 1.

    Returns:
        Float tensor of shape ``(B, dim)``: ``[sin(t * f_0..f_{h-1}), cos(t * f_0..f_{h-1})]``
        with ``h = dim // 2`` (plus a zero column when ``dim`` is odd). float64
        timesteps give a float64 result, everything else float32.

    Raises:
        ValueError: If ``timesteps`` is not 1-D, ``dim < 2`` or ``max_period <= 1``.
    """
    if timesteps.ndim != 1:
        raise UserError(f"timesteps must be a 1-D tensor of shape (B,), got shape {tuple(timesteps.shape)}")
    if dim < 2:
        raise UserError(f"embedding dim must be >= 2 (one sin/cos pair), got {dim}")
    if max_period <= 1:
        raise UserError(f"max_period must be > 1, got {max_period}")
    half = dim // 2
    # Compute in float32 (or float64 if given) even under autocast: t * freq reaches
    # ~1000 rad and bf16 would lose all the phase information.
    dtype = torch.float64 if timesteps.dtype == torch.float64 else torch.float32
    exponent = torch.arange(half, device=timesteps.device, dtype=dtype) * (-math.log(max_period) / half)
    freqs = torch.exp(exponent)  # (half,)
    args = timesteps.to(dtype)[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, 2*half)
    if dim % 2 == 1:
        # Odd sizes: pad one zero column so the output has exactly `dim` features.
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal timestep code followed by an MLP: sinusoidal -> Linear -> SiLU -> Linear.

    Args:
        embed_dim: Output size of the embedding (and hidden size of the MLP).
        sinusoidal_dim: Size of the fixed sinusoidal code fed to the MLP
            (defaults to ``embed_dim // 4``, the usual ``base_channels``).
        max_period: Longest sinusoid period, see :func:`sinusoidal_embedding`.

    Shapes:
        forward(t): ``t`` of shape ``(B,)`` (int or float) -> ``(B, embed_dim)``.
    """

    def __init__(self, embed_dim: int, sinusoidal_dim: int | None = None, max_period: float = 10000.0) -> None:
        super().__init__()
        if embed_dim < 1:
            raise UserError(f"time embed_dim must be >= 1, got {embed_dim}")
        if sinusoidal_dim is None:
            sinusoidal_dim = max(2, embed_dim // 4)
        if sinusoidal_dim < 2:
            raise UserError(f"sinusoidal_dim must be >= 2, got {sinusoidal_dim}")
        self.sinusoidal_dim = sinusoidal_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(sinusoidal_dim, embed_dim),
            nn.SiLU(),
            nn.Linear(embed_dim, embed_dim),
        )

    def forward(self, t: Tensor) -> Tensor:
        """Embed timesteps.

        Args:
            t: Timesteps, shape ``(B,)``, integer or float.

        Returns:
            Tensor of shape ``(B, embed_dim)``.
        """
        emb = sinusoidal_embedding(t, self.sinusoidal_dim, self.max_period)
        # Match the parameter dtype (e.g. a model cast to float64); autocast still
        # downcasts inside the Linear layers where it is enabled.
        return self.mlp(emb.to(self.mlp[0].weight.dtype))
