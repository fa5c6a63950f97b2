"""What a batch holds: datasets yield images alone, (image, label) pairs, or (image, label,
noise) triples (reflow pairs, :mod:`diffusion_lit.data.pairs`), and every consumer (training
steps, metrics, figures) reads them through these helpers."""

from __future__ import annotations

import torch


def images_of(batch: torch.Tensor | tuple | list) -> torch.Tensor:
    """The image tensor of a batch: datasets yield images alone or (image, label) pairs."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def labels_of(batch: torch.Tensor | tuple | list) -> torch.Tensor | None:
    """The labels (B,) of an (image, label) batch, or None for an unlabelled batch."""
    return batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None


def noise_of(batch: torch.Tensor | tuple | list) -> torch.Tensor | None:
    """The noise paired with each image of an (image, label, noise) batch, or None."""
    return batch[2] if isinstance(batch, (tuple, list)) and len(batch) > 2 else None
