"""One-off preprocessing of decoded images: resize + centre crop, greyscale, edge maps.

Everything here works on uint8 batches (N, C, H, W) and returns uint8 batches, because the
in-memory datasets store their pixels as uint8 (4x less memory than float) and are
preprocessed once, when their cache is built, never per training step.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from diffusion_lit.utils.errors import check_choice

Transform = Literal["none", "edges"]
TRANSFORMS: tuple[str, ...] = get_args(Transform)

# Preprocessing runs in chunks to bound the float temporaries of resizing and filtering.
_CHUNK = 4096


def check_transform(transform: str) -> Transform:
    return check_choice("data.transform", transform, TRANSFORMS)  # type: ignore[return-value]


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Scale so that the shorter side is ``size`` (antialiased bilinear), then crop the centre
    ``size`` x ``size`` square. Images already at ``size`` x ``size`` are returned unchanged.

    Args:
        images: uint8 (N, C, H, W).
        size: output side in pixels.
    """
    if images.shape[-2:] == (size, size):
        return images
    # Antialiasing matters when shrinking (e.g. 512 px cats to 28 px): without it, bilinear
    # interpolation samples a few source pixels per output pixel and aliases fine fur and edges.
    resized = TF.resize(images, [size], antialias=True)
    return TF.center_crop(resized, [size, size])


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) to luma (N, 1, H, W) with ITU-R 601-2 weights (as PIL's ``convert("L")``);
    single-channel input is returned unchanged."""
    if images.shape[1] == 1:
        return images
    return TF.rgb_to_grayscale(images, num_output_channels=1)


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """Edge maps: Sobel gradient magnitude of each channel, scaled per image so its strongest
    edge is 255 (a flat image gives all zeros).

    Seed 002 tried "an edge-detector kernel" on the cat images; it does not say which, so the
    standard 3x3 Sobel pair is used, with replicated borders so that the frame of the image is
    not detected as an edge.

    Args:
        images: uint8 (N, C, H, W).

    Returns:
        uint8 (N, C, H, W).
    """
    out = torch.empty_like(images)
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([gx, gx.T]).unsqueeze(1)  # (2, 1, 3, 3): d/dx and d/dy
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].float()
        n, c, h, w = chunk.shape
        flat = F.pad(chunk.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
        gradients = F.conv2d(flat, kernels)
        magnitude = gradients.square().sum(dim=1).sqrt().reshape(n, c, h, w)
        peak = magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        out[start : start + _CHUNK] = (magnitude * (255.0 / peak)).round_().to(torch.uint8)
    return out


def preprocess(images: torch.Tensor, image_size: int, grayscale: bool, transform: Transform = "none") -> torch.Tensor:
    """The full one-off pipeline: resize + centre crop to ``image_size``, optional greyscale,
    optional edge transform. uint8 (N, C, H, W) in, uint8 (N, C', image_size, image_size) out."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    chunks = []
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK]
        if grayscale:
            chunk = to_grayscale(chunk)  # before resizing: a third of the work
        chunks.append(resize_center_crop(chunk, image_size))
    out = (
        torch.cat(chunks)
        if chunks
        else images.new_zeros((0, 1 if grayscale else images.shape[1], image_size, image_size))
    )
    if transform == "edges":
        out = sobel_edges(out)
    return out.contiguous()
