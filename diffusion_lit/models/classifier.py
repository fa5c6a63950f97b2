"""A small MNIST classifier whose penultimate layer is the project's domain feature space.

Used for cheap FID/KID/precision-recall during training (``extractor=domain``) and for the
"recognisable digits" score (share of samples classified with confidence > 0.9). Trained by
``python -m diffusion_lit.train_features data=mnist`` (see :mod:`diffusion_lit.train_features`)
and saved under ``<data root>/features/mnist_classifier.pt``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import file_sha256


class DigitClassifier(nn.Module):
    """Two conv blocks (28 -> 14 -> 7 px) and a 128-unit layer (the features), then 10 logits.

    Input: (N, 1, 28, 28) in [-1, 1]. ~420k parameters; about 99% test accuracy after 2 epochs.
    """

    def __init__(self, num_classes: int = 10, num_features: int = 128) -> None:
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, num_features), nn.ReLU(),
        )  # fmt: skip
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(num_features, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))


def load_classifier(path: str | Path) -> tuple[DigitClassifier, str]:
    """(classifier in eval mode, SHA-256 of its weights file)."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        net = DigitClassifier(**stored["arch"])
        net.load_state_dict(stored["state_dict"])
    except Exception as err:
        raise UserError(
            f"could not load the domain classifier {path} ({err}); retrain it with train_features."
        ) from None
    return net.eval(), file_sha256(Path(path))
