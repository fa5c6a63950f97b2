"""Writing images: sample grids and labelled strips, as PNG files a person can read."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map images from the model range [-1, 1] to [0, 1] for display."""
    return ((images.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save (N, C, H, W) images in [-1, 1] as one PNG grid (square by default); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    save_image(to_unit_range(images), path, nrow=nrow, padding=2, pad_value=0.5)
    return path


def grid_tensor(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """The (3, H', W') grid image of ``save_grid``, for loggers that take tensors."""
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    return make_grid(to_unit_range(images), nrow=nrow, padding=2, pad_value=0.5)


def save_strips(
    rows: Sequence[torch.Tensor],
    column_labels: Sequence[str],
    path: str | Path,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Save rows of images side by side with a label over each column (and, optionally, one
    left of each row).

    ``rows``: one (K, C, H, W) tensor in [-1, 1] per row, K = len(column_labels).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    num_rows, num_cols = len(rows), len(column_labels)
    width = 1.3 * num_cols + (0.5 if row_labels else 0.0)
    # Narrow figures (two columns) would cut a long title: wrap it to ~14 characters per inch.
    title_lines = textwrap.wrap(title, width=max(20, int(14 * width))) if title else []
    title_inches = 0.15 * len(title_lines)
    height = 1.3 * num_rows + 0.25 + title_inches
    figure, axes = plt.subplots(num_rows, num_cols, figsize=(width, height), squeeze=False)
    for row_index, row in enumerate(rows):
        for col_index in range(num_cols):
            image = to_unit_range(row[col_index])
            axis = axes[row_index][col_index]
            if image.shape[0] == 1:
                axis.imshow(image[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.imshow(image.permute(1, 2, 0).numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if row_index == 0:
                axis.set_title(column_labels[col_index], fontsize=8)
            if col_index == 0 and row_labels is not None:
                axis.set_ylabel(row_labels[row_index], fontsize=8)
    if title_lines:
        figure.suptitle("\n".join(title_lines), fontsize=9)
    # Keep the title's band out of tight_layout, which would otherwise let column labels overlap it.
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - title_inches / height))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
