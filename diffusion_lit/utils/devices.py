"""The ``device=`` option of the sample, evaluate and edit commands."""

from __future__ import annotations

from typing import Literal

import torch

Device = Literal["auto", "cpu", "cuda"] | str  # or any torch device string, e.g. cuda:1


def resolve_device(device: Device) -> str:
    """``auto`` is CUDA when a GPU is present, else the CPU; anything else passes through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
