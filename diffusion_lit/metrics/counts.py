"""Metrics of count images: how far the histogram of a sample's pixel counts is from the data's."""

from __future__ import annotations

import torch


def count_histogram(counts: torch.Tensor, maximum: int) -> torch.Tensor:
    """The share of pixels holding each count 0..maximum (counts above are put in the last bin)."""
    values = counts.detach().flatten().round().clamp(0, maximum).long().cpu()
    return torch.bincount(values, minlength=maximum + 1).double() / max(1, values.numel())


def total_variation(first: torch.Tensor, second: torch.Tensor) -> float:
    """Half the L1 distance between two histograms (0 = equal, 1 = disjoint)."""
    return 0.5 * float((first - second).abs().sum())
