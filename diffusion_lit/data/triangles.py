"""Synthetic images of filled triangles, the thesis' toy dataset.

The thesis trains on 10,000 single-channel images, each a filled triangle spanned by three
random points on an n x n canvas, foreground 1 on background 0. It compares three ways of
drawing them, all provided by :func:`render_triangles`:

* ``"aliased"``: drawn directly at n x n with ``PIL.ImageDraw.polygon``; every pixel is 0 or 1
  and the edges are jagged staircases.
* ``"supersampled"``: drawn with PIL at ``supersample_size`` x ``supersample_size`` (thesis:
  720) and shrunk to n x n with an area (box) filter, so each edge pixel holds the fraction of
  it the triangle covers, quantised to 1/255: grey, anti-aliased edges.
* ``"binary"``: a raw {0, 1} numpy array, pixel on iff its centre lies inside the triangle
  (edges included); no image library involved.

Geometry shared by all three variants: the canvas is the square [0, n] x [0, n]; pixel (row r,
column c) covers [c, c + 1] x [r, r + 1] and has its centre at (c + 0.5, r + 0.5). Vertices are
drawn uniformly (continuous) from the canvas, so one seed gives the same triangles in every
variant and at every resolution. PIL puts pixel centres at integer coordinates and snaps
vertices to its own pixel grid, so the PIL variants receive ``n * u - 0.5`` rounded to the
drawing grid (a 1/720 snap for ``"supersampled"``, a whole-pixel snap for ``"aliased"``).
PIL's polygon fill also paints boundary pixels, so an aliased triangle is slightly fatter than
its binary twin (by about one edge-pixel row); at 720 px the effect is invisible after
down-sampling.

Triangles covering less than ``min_area_fraction`` of the canvas are rejected and redrawn:
three uniform points often form a near-degenerate sliver, which at 32 px renders as a broken
line or a handful of pixels, not as something recognisable as a triangle. With the default
0.02 about a fifth of the draws are rejected and the smallest triangle covers ~20 px^2 at 32 px
(mean ~92 px^2).

Measured cost (one core of the 2-core development machine): 10,000 supersampled 32 px images
from 720 px take about 3 s; aliased and binary take well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from PIL import Image, ImageDraw

from diffusion_lit.data.base import (
    ImageDataModule,
    TensorImageDataset,
    check_fraction,
    check_int,
    split_indices,
    subset_index,
)
from diffusion_lit.metrics.triangles import triangle_validity
from diffusion_lit.utils.errors import UserError, check_choice
from diffusion_lit.utils.files import atomic_write

Variant = Literal["aliased", "supersampled", "binary"]
VARIANTS: tuple[str, ...] = get_args(Variant)

# Triangles are drawn in chunks of a fixed size so that the random stream, and hence the
# first k images, do not depend on how many images are requested in total.
_SAMPLE_CHUNK = 4096
# Bump when the rendering changes, so stale caches are not reused.
_CACHE_FORMAT_VERSION = 1


def _check_variant(variant: str) -> None:
    check_choice("data.variant", variant, VARIANTS)


def _check_min_area_fraction(min_area_fraction: float) -> float:
    # 0.5 is the largest area any triangle inside the unit square can have. (Values above
    # ~0.3 accept so few draws that sample_triangle_vertices gives up with an error.)
    if (
        isinstance(min_area_fraction, bool)
        or not isinstance(min_area_fraction, (int, float))
        or not 0.0 <= min_area_fraction < 0.5
    ):
        raise UserError(
            f"data.min_area_fraction must lie in [0, 0.5) (fraction of the canvas a triangle must "
            f"cover; default 0.02), got {min_area_fraction!r}."
        )
    return float(min_area_fraction)


def _check_supersample_size(supersample_size: int, image_size: int) -> int:
    supersample_size = check_int("data.supersample_size", supersample_size, 1)
    if supersample_size < image_size:
        raise UserError(
            f"data.supersample_size must be >= data.image_size={image_size} (it is the drawing "
            f"resolution before down-sampling; thesis: 720), got {supersample_size!r}."
        )
    return supersample_size


def sample_triangle_vertices(
    num_triangles: int, min_area_fraction: float = 0.02, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Draw triangles with vertices uniform on the unit square, rejecting small ones.

    Args:
        num_triangles: how many triangles to return, >= 0.
        min_area_fraction: reject triangles whose area is below this fraction of the canvas.
        rng: numpy random generator (a fresh unseeded one if None).

    Returns:
        float64 array (num_triangles, 3, 2) of vertices (x, y) in [0, 1); x runs along
        columns, y along rows.
    """
    rng = np.random.default_rng() if rng is None else rng
    kept: list[np.ndarray] = []
    have = 0
    drawn = 0
    # Far more draws than any sane min_area_fraction needs: the share of uniform triangles
    # accepted is ~79% at 0.02, ~29% at 0.1, ~2.5% at 0.25, ~0.03% at 0.4.
    max_draws = 1000 * num_triangles + 10 * _SAMPLE_CHUNK
    while have < num_triangles:
        cand = rng.random((_SAMPLE_CHUNK, 3, 2))
        e1 = cand[:, 1] - cand[:, 0]
        e2 = cand[:, 2] - cand[:, 0]
        area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        good = cand[area >= min_area_fraction]
        kept.append(good)
        have += len(good)
        drawn += _SAMPLE_CHUNK
        if have < num_triangles and drawn >= max_draws:
            raise UserError(
                f"min_area_fraction={min_area_fraction!r} is too large: only {have} of {drawn} random "
                "triangles were large enough; use a smaller value (default 0.02)."
            )
    if not kept:
        return np.zeros((0, 3, 2))
    return np.concatenate(kept)[:num_triangles]


def _render_binary(vertices: np.ndarray, image_size: int) -> np.ndarray:
    """Pixel-centre point-in-triangle test. vertices: (N, 3, 2) in canvas pixels. Returns
    uint8 (N, n, n) in {0, 1}."""
    n = image_size
    out = np.empty((len(vertices), n, n), dtype=np.uint8)
    centres = np.arange(n, dtype=np.float64) + 0.5
    px = centres[None, None, :]  # column coordinate, broadcast over rows
    py = centres[None, :, None]
    chunk = 512  # bounds the (chunk, n, n) float64 temporaries
    for start in range(0, len(vertices), chunk):
        v = vertices[start : start + chunk]
        signs = []
        for i in range(3):
            a = v[:, i]
            b = v[:, (i + 1) % 3]
            ax, ay = a[:, 0, None, None], a[:, 1, None, None]
            bx, by = b[:, 0, None, None], b[:, 1, None, None]
            # z-component of (b - a) x (p - a): which side of edge a->b the centre p is on.
            signs.append((bx - ax) * (py - ay) - (by - ay) * (px - ax))
        d = np.stack(signs)
        # Inside (or on an edge) iff no two edge functions have strictly opposite signs;
        # this is independent of the vertices' winding order.
        inside = ~((d < 0).any(axis=0) & (d > 0).any(axis=0))
        out[start : start + chunk] = inside
    return out


def _render_pil(vertices: np.ndarray, image_size: int, canvas_size: int) -> np.ndarray:
    """Draw with PIL at canvas_size and box-filter down to image_size (no resize when they are
    equal). vertices: (N, 3, 2) in units of the unit square. Returns uint8 (N, n, n) 0..255."""
    n = image_size
    out = np.empty((len(vertices), n, n), dtype=np.uint8)
    # PIL's pixel centres sit at integer coordinates, ours at half-integers: shift by -0.5.
    pil_vertices = np.rint(vertices * canvas_size - 0.5).astype(np.int64)
    # One canvas reused for all images: allocation is a noticeable share of the cost.
    canvas = Image.new("L", (canvas_size, canvas_size), 0)
    draw = ImageDraw.Draw(canvas)
    for i, tri in enumerate(pil_vertices.tolist()):
        draw.rectangle((0, 0, canvas_size, canvas_size), fill=0)
        draw.polygon([tuple(p) for p in tri], fill=255)
        img = canvas if canvas_size == n else canvas.resize((n, n), Image.Resampling.BOX)
        out[i] = np.asarray(img)
    return out


def render_triangles(
    num_images: int,
    image_size: int = 32,
    variant: Variant = "supersampled",
    supersample_size: int = 720,
    min_area_fraction: float = 0.02,
    seed: int = 0,
) -> np.ndarray:
    """Render filled-triangle images (see the module docstring for the geometry).

    Deterministic: the same arguments give the same array. The triangles depend only on
    ``seed`` and ``min_area_fraction`` (not on the variant, size or count), so the first k
    images of a larger request equal a request for k images.

    Args:
        num_images: number of images N, >= 0.
        image_size: side n of the square output images in pixels, >= 4.
        variant: ``"aliased"``, ``"supersampled"`` or ``"binary"``.
        supersample_size: drawing resolution of ``"supersampled"`` (ignored otherwise), >= image_size.
        min_area_fraction: smallest accepted triangle area as a fraction of the canvas, in [0, 0.5).
        seed: seed of the numpy random generator.

    Returns:
        float32 array (N, n, n) in [0, 1]: exactly {0, 1} for ``"aliased"`` and ``"binary"``,
        multiples of 1/255 for ``"supersampled"``.
    """
    _check_variant(variant)
    num_images = check_int("num_images", num_images, 0)
    image_size = check_int("data.image_size", image_size, 4)
    min_area_fraction = _check_min_area_fraction(min_area_fraction)
    seed = check_int("data.seed", seed, 0)
    if variant == "supersampled":
        supersample_size = _check_supersample_size(supersample_size, image_size)

    vertices = sample_triangle_vertices(num_images, min_area_fraction, np.random.default_rng(seed))
    if variant == "binary":
        return _render_binary(vertices * image_size, image_size).astype(np.float32)
    canvas = supersample_size if variant == "supersampled" else image_size
    pixels = _render_pil(vertices, image_size, canvas)
    if variant == "aliased":
        return (pixels > 0).astype(np.float32)
    return pixels.astype(np.float32) / np.float32(255.0)


class TrianglesDataModule(ImageDataModule):
    """Filled-triangle images (1 channel) for Lightning, generated once and cached on disk.

    ``prepare_data()`` renders the images with :func:`render_triangles` and stores them in
    ``<data_dir>/triangles/<name>.npz``, the name encoding every parameter that changes the
    pixels; a later run with the same parameters loads that file instead. ``setup()`` loads
    it into one float32 tensor (N, 1, n, n) in [-1, 1] and splits it into train and
    validation sets by a permutation drawn from ``seed``. Items are bare image tensors
    (1, n, n) (there are no labels).

    Args:
        data_dir: root folder for cached datasets.
        num_images: total number of images (train + validation), >= 2.
        image_size: side n in pixels, >= 4.
        variant: ``"aliased"``, ``"supersampled"`` or ``"binary"`` (see the module docstring).
        supersample_size: drawing resolution of ``"supersampled"``, >= image_size (thesis: 720).
        min_area_fraction: smallest accepted triangle area as a fraction of the canvas.
        val_fraction: share of the images held out for validation, in [0, 1); at least one
            image is held out when it is > 0, and at least one is kept for training.
        num_samples: train on a seeded random subset of this many of the training images
            (None = all), as the real-image data modules do.
        seed: seeds both the rendering and the train/val split.
        batch_size: samples per batch, >= 1.
        num_workers: data-loading worker processes, >= 0.
        pin_memory: page-lock batches for faster host-to-GPU copies.
        counts: ``{lambda: L}``: photon counts of the triangles (:mod:`diffusion_lit.data.counts`).
    """

    def __init__(
        self,
        data_dir: str,
        num_images: int = 10000,
        image_size: int = 32,
        variant: Variant = "supersampled",
        supersample_size: int = 720,
        min_area_fraction: float = 0.02,
        val_fraction: float = 0.1,
        num_samples: int | None = None,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        counts: Mapping[str, Any] | None = None,
    ) -> None:
        # A plain dict (Hydra passes a DictConfig): the hyperparameters go into checkpoints, which
        # Lightning reads back with weights_only=True.
        counts = None if counts is None else dict(counts)
        super().__init__(batch_size, num_workers, pin_memory, counts, counts_seed=check_int("data.seed", seed, 0))
        _check_variant(variant)
        self.num_images = check_int("data.num_images", num_images, 2, " (one for training, one for validation)")
        self._image_size = check_int("data.image_size", image_size, 4)
        # Only the supersampled variant draws at supersample_size, so only it needs a valid one.
        if variant == "supersampled":
            supersample_size = _check_supersample_size(supersample_size, self._image_size)
        self.supersample_size = supersample_size
        self.min_area_fraction = _check_min_area_fraction(min_area_fraction)
        self.val_fraction = check_fraction("data.val_fraction", val_fraction)
        self.num_samples = None if num_samples is None else check_int("data.num_samples", num_samples, 1, " or null")
        self.seed = check_int("data.seed", seed, 0)
        self.data_dir = Path(data_dir)
        self.variant: Variant = variant
        self.save_hyperparameters()

    @property
    def num_channels(self) -> int:
        return 1

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def cache_path(self) -> Path:
        """Cache file; its name encodes every parameter that affects the pixels."""
        name = f"n{self.num_images}_s{self._image_size}_{self.variant}"
        if self.variant == "supersampled":  # the drawing size matters for this variant only
            name += f"{self.supersample_size}"
        name += f"_area{self.min_area_fraction:g}_seed{self.seed}_v{_CACHE_FORMAT_VERSION}.npz"
        return self.data_dir / "triangles" / name

    def image_metrics(self, samples: torch.Tensor) -> dict[str, float]:
        """``{"triangle_validity": rate}``: share of samples (N, 1, n, n) in [-1, 1] that show one
        clean filled triangle (see :mod:`diffusion_lit.metrics.triangles`)."""
        return {"triangle_validity": triangle_validity(samples).rate}

    def _generation_params(self) -> dict[str, object]:
        return {
            "num_images": self.num_images,
            "image_size": self._image_size,
            "variant": self.variant,
            "supersample_size": self.supersample_size,
            "min_area_fraction": self.min_area_fraction,
            "seed": self.seed,
            "format_version": _CACHE_FORMAT_VERSION,
        }

    def prepare_data(self) -> None:
        """Render the images and write the cache, unless the cache file already exists."""
        path = self.cache_path
        if path.exists():
            return
        images = render_triangles(
            self.num_images,
            image_size=self._image_size,
            variant=self.variant,
            supersample_size=self.supersample_size,
            min_area_fraction=self.min_area_fraction,
            seed=self.seed,
        )
        # Every value is k/255 (k integer), so uint8 storage is lossless and 4x smaller.
        stored = np.rint(images * 255.0).astype(np.uint8)
        # Atomic: a crash mid-write (or a second process writing the same file) never leaves
        # a truncated cache behind under the final name.
        with atomic_write(path) as f:
            np.savez_compressed(f, images=stored, params=np.array(json.dumps(self._generation_params())))

    def _load_images(self) -> torch.Tensor:
        path = self.cache_path
        if not path.exists():
            # Lets setup() work without the Trainer (e.g. in a notebook); safe under
            # concurrency because the write is atomic.
            self.prepare_data()
        try:
            with np.load(path) as archive:
                stored = archive["images"]
        except Exception as err:  # a foreign or damaged file under our name
            raise UserError(f"could not read the triangle cache {path} ({err}); delete it to regenerate.") from err
        expected = (self.num_images, self._image_size, self._image_size)
        if stored.shape != expected or stored.dtype != np.uint8:
            raise UserError(
                f"triangle cache {path} holds {stored.dtype} {stored.shape}, expected uint8 {expected}; "
                "delete it to regenerate."
            )
        # [0, 255] -> [-1, 1], with a channel axis: (N, 1, n, n).
        images = torch.from_numpy(stored).to(torch.float32).div_(127.5).sub_(1.0)
        return images.unsqueeze(1)

    def setup(self, stage: str | None = None) -> None:
        """Load the cached images and split them into ``train_set`` and ``val_set``."""
        if self.train_set is not None:  # Lightning calls setup once per stage; load once.
            return
        images = self._load_images()
        train_index, val_index = split_indices(images.shape[0], self.val_fraction, self.seed)
        if self.num_samples is not None and self.num_samples < len(train_index):
            train_index = train_index[subset_index(len(train_index), self.num_samples, self.seed)]
        # Index once into contiguous tensors so that batches are cheap slices of memory.
        self.train_set = TensorImageDataset(images[train_index].contiguous())
        self.val_set = TensorImageDataset(images[val_index].contiguous())
