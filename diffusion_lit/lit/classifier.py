"""Training the domain feature network (:class:`diffusion_lit.models.classifier.DigitClassifier`)
with Lightning: ``python -m diffusion_lit.train_features data=mnist``."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from diffusion_lit.data.batch import images_of, labels_of
from diffusion_lit.models.classifier import DigitClassifier


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of a :class:`DigitClassifier` with Adam."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.net = DigitClassifier()
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.net(images_of(batch)), labels_of(batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        logits = self.net(images_of(batch))
        accuracy = (logits.argmax(1) == labels_of(batch)).float().mean()
        self.log("val/accuracy", accuracy, prog_bar=True, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)
