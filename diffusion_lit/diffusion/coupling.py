"""Minibatch optimal-transport coupling of noise and data (Tong et al. 2023, "Improving and
Generalizing Flow-Based Generative Models with Minibatch Optimal Transport"; Pooladian et al. 2023).

Flow matching pairs each image x_0 of a batch with a noise draw eps. Independent pairs give
crossing straight paths, and the learned velocity averages over them, so its trajectories
curve. Pairing the batch's noise with its images by the permutation that minimises the total
squared distance sum_i ||x_0^i - eps^pi(i)||^2 (exact OT between the two empirical measures of
equal size, uniform weights) gives nearly non-crossing paths, which few-step samplers follow
better. The assignment is solved exactly by scipy's ``linear_sum_assignment`` (the Hungarian /
Jonker-Volgenant algorithm, O(B^3)); at batch 64 it is far cheaper than the network's step
(experiments/formulations/README.md measures it).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from scipy.optimize import linear_sum_assignment

Coupling = Literal["independent", "ot"]
COUPLINGS: tuple[str, ...] = get_args(Coupling)


def ot_permutation(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The permutation ``perm`` (B,) minimising sum_i ||x0[i] - noise[perm[i]]||^2, on x0's device."""
    cost = torch.cdist(x0.detach().flatten(1).double(), noise.detach().flatten(1).double()).pow(2)
    rows, columns = linear_sum_assignment(cost.cpu().numpy())
    permutation = torch.empty(len(rows), dtype=torch.long)
    permutation[torch.from_numpy(rows)] = torch.from_numpy(columns)
    return permutation.to(x0.device)


def couple(x0: torch.Tensor, noise: torch.Tensor, coupling: Coupling) -> torch.Tensor:
    """``noise`` reordered to pair with ``x0``: unchanged for ``independent``, by exact minibatch
    OT for ``ot`` (labels stay with their images: only the noise moves)."""
    if coupling == "independent" or x0.shape[0] < 2:
        return noise
    return noise[ot_permutation(x0, noise)]
