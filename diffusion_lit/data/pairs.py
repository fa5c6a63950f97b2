"""Reflow pairs (Liu et al. 2022, "Flow Straight and Fast", sec. 2.3): each image drawn by a
trained flow model from a noise draw, served with that noise, so that the next rectified flow
learns the straight path between the two (``python -m diffusion_lit.reflow`` draws them).

An item is (image, label, noise); label is -1 for pairs of an unconditional model (an
unconditional net ignores labels). Sample metrics are those of the data the pairs' model was
trained on (triangle validity for triangles), read from the pairs file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from diffusion_lit.data.base import ImageDataModule, check_fraction, split_indices
from diffusion_lit.utils.errors import UserError

PAIRS_FORMAT = 1
UNLABELLED = -1


class PairsDataset(Dataset):
    """(image, label, noise) items from three tensors held by reference."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor) -> None:
        self.images, self.labels, self.noise = images, labels, noise

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index], self.noise[index]

    def __getitems__(self, indices: Sequence[int]) -> list:
        """A whole batch with one indexing (the DataLoader's default collate stacks it)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return list(zip(self.images[index], self.labels[index], self.noise[index], strict=True))


def pairs_record(
    images: torch.Tensor,
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    num_classes: int,
    source_data: Mapping[str, Any] | None,
    **provenance: Any,
) -> dict[str, Any]:
    """The contents of a pairs file, as :func:`load_pairs` reads it: (N, C, H, W) images and the noise
    each was drawn from, their labels (None for an unconditional model), the model's number of
    classes and the data config it was trained on (the pairs' reference data), plus any provenance
    (checkpoint, sampler, seed...)."""
    return {"format": PAIRS_FORMAT, "images": images, "noise": noise, "labels": labels,
            "num_classes": num_classes, "source_data": source_data, **provenance}  # fmt: skip


def load_pairs(path: str | Path) -> dict[str, Any]:
    """The contents of a pairs file, checked; a clear error if it is missing or not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"no reflow pairs at {path}: draw them first with python -m diffusion_lit.reflow ckpt=<flow run>/"
            f"checkpoints/last.ckpt out={path}"
        )
    try:
        pairs = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise UserError(f"{path} could not be read as reflow pairs ({error}); draw it again.") from None
    if not isinstance(pairs, dict) or pairs.get("format") != PAIRS_FORMAT:
        raise UserError(
            f"{path} is not a reflow pairs file of this version: draw it with python -m diffusion_lit.reflow."
        )
    return pairs


class PairsDataModule(ImageDataModule):
    """The pairs of ``path`` split into training and validation (``val_fraction``, ``seed``).

    Args:
        path: a file written by ``python -m diffusion_lit.reflow``.
        val_fraction: share of the pairs held out for the validation loss.
        seed: the split's seed.
        image_size: the pairs' size, which the network is built for (checked: pairs are not resized);
            None takes the file's.
    """

    def __init__(
        self,
        path: str,
        val_fraction: float = 0.05,
        seed: int = 0,
        image_size: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        self.path = Path(path).expanduser()
        self.val_fraction = check_fraction("data.val_fraction", val_fraction)
        self.seed = int(seed)
        self.requested_size = image_size
        self.save_hyperparameters()
        self._pairs: dict[str, Any] | None = None
        self._source: Any = None

    @property
    def pairs(self) -> dict[str, Any]:
        if self._pairs is None:
            self._pairs = load_pairs(self.path)
        return self._pairs

    @property
    def num_channels(self) -> int:
        return int(self.pairs["images"].shape[1])

    @property
    def image_size(self) -> int:
        size = int(self.pairs["images"].shape[-1])
        if self.requested_size is not None and self.requested_size != size:
            raise UserError(
                f"data.image_size={self.requested_size}, but the pairs in {self.path} are {size} px (pairs are not "
                f"resized): set data.image_size={size}."
            )
        return size

    @property
    def num_classes(self) -> int | None:
        """The classes of a conditional model's pairs; None for an unconditional model's."""
        return self.pairs.get("num_classes") or None

    def prepare_data(self) -> None:
        load_pairs(self.path)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        pairs = self.pairs
        images, noise = pairs["images"].float(), pairs["noise"].float()
        labels = pairs.get("labels")
        if labels is None:
            labels = torch.full((images.shape[0],), UNLABELLED, dtype=torch.long)
        train, val = split_indices(images.shape[0], self.val_fraction, self.seed)
        self.train_set = PairsDataset(images[train], labels[train], noise[train])
        self.val_set = PairsDataset(images[val], labels[val], noise[val])

    def reference_data(self) -> ImageDataModule:
        """The data the pairs' model was trained on (its data config, stored in the file): the
        real images a reflow model's samples are compared with, not its teacher's samples."""
        if self._source is None:
            self._source = instantiate(reference_data_config(self.pairs["source_data"]))
        return self._source

    def sample_metrics(self, samples: torch.Tensor) -> dict[str, float]:
        """The metrics of the data the pairs' model was trained on."""
        return self.reference_data().sample_metrics(samples)


PAIRS_TARGET = f"{PairsDataModule.__module__}.{PairsDataModule.__qualname__}"


def reference_data_config(data_cfg: Mapping[str, Any]) -> DictConfig:
    """A run's data config, or for a run on reflow pairs the config of the data the pairs' model
    was trained on (followed through pairs of pairs: a reflow of a reflow)."""
    data_cfg = OmegaConf.create(dict(data_cfg))
    seen: set[str] = set()
    while data_cfg.get("_target_") == PAIRS_TARGET:
        path = str(Path(data_cfg.path).expanduser().resolve())
        if path in seen:
            raise UserError(f"the reflow pairs {data_cfg.path} name themselves as their source data.")
        seen.add(path)
        source = load_pairs(path).get("source_data")
        if not source:
            raise UserError(f"{data_cfg.path} records no source data: draw the pairs again with diffusion_lit.reflow.")
        data_cfg = OmegaConf.create(dict(source))
    return data_cfg
