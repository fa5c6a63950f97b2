"""When an every-n-epochs callback (sample grids, strips, FID) runs."""

from __future__ import annotations

import lightning.pytorch as pl


def is_due(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """True on every n-th epoch and on the last one, never during the sanity check."""
    if trainer.sanity_checking:
        return False
    epoch = trainer.current_epoch + 1
    is_last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
    return epoch % every_n_epochs == 0 or is_last
