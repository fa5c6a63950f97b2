"""Any folder of images (jpg, png, webp, ...), flat or nested, optionally one class per subfolder.

The cats dataset of seed 002 is this module with its preprocessing as defaults
(conf/data/cats.yaml: greyscale, resize + centre crop to 28 px); ``data=folder
data.path=/my/images`` is the general form.

Every file is decoded once, in a few threads, at the target size (JPEG files are decoded
directly at a reduced scale with PIL's ``draft``), and the result is cached as one uint8
tensor (see :mod:`diffusion_lit.data.in_memory`), so training never opens a file. Files that
are not images or cannot be decoded are skipped with one warning that names them; nothing can
fail mid-epoch because nothing is read from disk after setup.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from diffusion_lit.data.base import check_fraction, split_indices
from diffusion_lit.data.download import download_and_extract
from diffusion_lit.data.in_memory import DecodedImages, InMemoryImageDataModule
from diffusion_lit.data.preprocess import resize_center_crop
from diffusion_lit.utils.errors import UserError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Files decoded per round: bounds the memory of full-size decoded images held at once.
_DECODE_CHUNK = 256


def list_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (recursively, sorted), hidden files and folders
    (names starting with '.', e.g. .DS_Store, .git) excluded."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames) if not name.startswith("."))
    return found


def _as_mode(image: Image.Image, grayscale: bool) -> Image.Image:
    if image.mode.startswith("I;16"):  # 16-bit greyscale PNG/TIFF: keep the top 8 bits, not a clipped copy
        image = Image.fromarray((np.asarray(image, dtype=np.float32) / 257.0).round().astype(np.uint8))
    return image.convert("L" if grayscale else "RGB")


def decode_image(path: Path, image_size: int, grayscale: bool) -> torch.Tensor:
    """One file as uint8 (C, image_size, image_size): EXIF orientation applied, converted to
    luma or RGB (alpha dropped; first frame of animations), resized (shorter side, antialiased)
    and centre-cropped.

    Raises:
        Exception: whatever PIL raises for a file it cannot decode.
    """
    with Image.open(path) as image:
        # JPEG only: decode at the smallest 1/2^k scale that is still >= the target size.
        image.draft("L" if grayscale else "RGB", (image_size, image_size))
        image = _as_mode(ImageOps.exif_transpose(image), grayscale)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    pixels = pixels.unsqueeze(-1) if pixels.ndim == 2 else pixels
    return resize_center_crop(pixels.permute(2, 0, 1).unsqueeze(0), image_size)[0]


def _decode_or_reason(path: Path, image_size: int, grayscale: bool) -> torch.Tensor | str:
    try:
        return decode_image(path, image_size, grayscale)
    except Exception as err:  # corrupt, truncated, unsupported: skip, never crash the run
        return f"could not be decoded ({type(err).__name__}: {err})"


class ImageFolderDataModule(InMemoryImageDataModule):
    """Images from a folder, in [-1, 1]; bare images, or (image, label) with class subfolders.

    Args:
        data_dir: the data root (caches and downloaded archives).
        path: the image folder (searched recursively).
        class_subfolders: label each image by the top-level subfolder it lies in (sorted
            names = classes, as torchvision's ImageFolder); files directly in ``path`` are then
            skipped.
        val_fraction: share held out for validation (a seeded random split), in [0, 1).
        url: optional archive (zip/tar/tar.gz) unpacked into ``path`` when it holds no images.
        sha256: expected SHA-256 of that archive (recommended).
        missing_hint: extra advice appended to the error when the folder has no images.
        image_size: side of the square images (shorter side resized, centre crop).
        options: ``grayscale``, ``transform``, ``hflip``, ``num_samples``, ``num_val_samples``,
            ``seed``, ``batch_size``, ``num_workers``, ``pin_memory``: see
            :class:`InMemoryImageDataModule`.
    """

    name = "folder"
    native_channels = 3

    def __init__(
        self,
        data_dir: str,
        path: str | None = None,
        class_subfolders: bool = False,
        val_fraction: float = 0.05,
        url: str | None = None,
        sha256: str | None = None,
        missing_hint: str | None = None,
        image_size: int = 64,
        **options: Any,
    ) -> None:
        super().__init__(data_dir, image_size=image_size, **options)
        if not path:
            raise UserError("data.path is not set: give the folder of images, e.g. data.path=/my/images.")
        self.path = Path(path).expanduser()
        self.class_subfolders = bool(class_subfolders)
        self.val_fraction = check_fraction("data.val_fraction", val_fraction)
        self.url = url
        self.sha256 = sha256
        self.missing_hint = missing_hint

    def _image_files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return [file for file in list_files(self.path) if file.suffix.lower() in IMAGE_EXTENSIONS]

    def _ensure_source(self) -> None:
        if self._image_files():
            return
        if self.url:
            download_and_extract(self.url, self.data_dir / "downloads", self.path, self.sha256)
            if self._image_files():
                return
        where = f"{self.path} does not exist" if not self.path.exists() else f"{self.path} holds no image files"
        extensions = ", ".join(sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS))
        hint = f"\n{self.missing_hint}" if self.missing_hint else ""
        raise UserError(
            f"{where} ({extensions}; nested folders are fine). Put images there, point data.path at your images, "
            f"or set data.url to an archive to download and unpack there.{hint}"
        )

    def _source_fingerprint(self, split: str) -> Any:
        files = list_files(self.path)
        listing = [[str(file.relative_to(self.path)), file.stat().st_size, file.stat().st_mtime_ns] for file in files]
        return {"path": str(self.path.resolve()), "class_subfolders": self.class_subfolders, "files": listing}

    def _cached_splits(self) -> tuple[str, ...]:
        return ("all",)

    def _train_val(self) -> tuple[DecodedImages, DecodedImages]:
        decoded = self.load_split("all")
        train_index, val_index = split_indices(decoded.images.shape[0], self.val_fraction, self.seed)
        return decoded.select(train_index), decoded.select(val_index)

    def _decode(self, split: str) -> DecodedImages:
        files = list_files(self.path)
        skipped: list[str] = []
        candidates: list[tuple[Path, int]] = []  # (file, label)
        classes: list[str] | None = None
        if self.class_subfolders:
            classes = sorted({file.relative_to(self.path).parts[0] for file in files if file.parent != self.path})
        for file in files:
            relative = file.relative_to(self.path)
            if file.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(f"{relative}: not an image file (extension {file.suffix or 'none'})")
            elif classes is not None and len(relative.parts) == 1:
                skipped.append(f"{relative}: not inside a class subfolder (data.class_subfolders=true)")
            else:
                candidates.append((file, classes.index(relative.parts[0]) if classes is not None else -1))

        images: list[torch.Tensor] = []
        labels: list[int] = []
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(candidates), _DECODE_CHUNK):
                chunk = candidates[start : start + _DECODE_CHUNK]
                results = pool.map(lambda item: _decode_or_reason(item[0], self.image_size, self.grayscale), chunk)
                for (file, label), result in zip(chunk, results, strict=True):
                    if isinstance(result, str):
                        skipped.append(f"{file.relative_to(self.path)}: {result}")
                    else:
                        images.append(result)
                        labels.append(label)
        if not images:
            listed = "; ".join(skipped[:3])  # one line: the first few reasons are enough to act on
            raise UserError(
                f"none of the {len(files)} files under {self.path} is a usable image"
                + (f" (e.g. {listed}): point data.path at a folder of PNG/JPEG images." if listed else ".")
            )
        label_tensor = torch.as_tensor(labels, dtype=torch.int64) if classes is not None else None
        return DecodedImages(torch.stack(images), label_tensor, classes=classes, skipped=skipped)
