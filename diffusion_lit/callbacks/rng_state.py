"""Exact resume: the random number generators' states travel with every checkpoint.

Lightning restores weights, optimizer, schedulers, loops and callback states from a checkpoint,
but not the global random generators, so a resumed run would draw different timesteps, noise,
flips and shuffles than the run it continues. This callback stores the states of Python's,
NumPy's and torch's generators (CPU, and CUDA when in use) of each process in the checkpoint
and sets them back as soon as Lightning hands the callback its state (before the sanity check
and before the next epoch's data loader draws its shuffle seed), so that training continued
with ``ckpt_path=`` draws exactly what the uninterrupted run drew (tests/test_resume.py).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RNGStateCheckpoint(Callback):
    """Save and restore the global random generator states with the checkpoint (per rank)."""

    def state_dict(self) -> dict[str, Any]:
        # Plain tensors and numbers only: Lightning loads checkpoints with weights_only=True.
        _, keys, position, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
        }  # fmt: skip
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Restored here rather than in a later hook: the resumed fit loop creates the next
        # epoch's data loader iterator (which draws the shuffle seed) before on_train_start.
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        saved = state_dict["numpy"]
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, saved["position"], saved["has_gauss"], saved["cached_gaussian"]))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
