"""Checkpoint files that are never half-written, wherever the temporary directory lives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.utils import get_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from diffusion_lit.utils.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each local checkpoint to a temporary file in the checkpoint's own folder, fsyncs
    it, then renames it over the target (``files.atomic_write``).

    Lightning's own writer stages the file in the system temp folder (``$TMPDIR``, usually
    /tmp) and moves it into place; when that is another file system than the run folder (a
    node-local /tmp and a shared cluster disk, say), the move is a copy into the final name, and
    a job killed during the copy leaves a truncated ``last.ckpt`` as the only checkpoint. A
    rename within one folder cannot be interrupted half-way: readers see the old checkpoint or
    the new one. Remote paths (s3://, gs://) keep Lightning's writer, whose uploads are atomic.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or get_protocol(str(path)) != "file":
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_write(path) as file:
            torch.save(checkpoint, file)
