"""What the editing tasks work on: dataset images, user image files and inpainting masks, all
brought to the model's size, channels and range."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.functional import pil_to_tensor

from diffusion_lit.data.preprocess import resize_center_crop
from diffusion_lit.utils.errors import UserError

# Named inpainting regions (1 = replace), as fractions of the image: (top, bottom, left, right).
MASK_BOXES = {
    "center": (0.25, 0.75, 0.25, 0.75),
    "top": (0.0, 0.5, 0.0, 1.0),
    "bottom": (0.5, 1.0, 0.0, 1.0),
    "left": (0.0, 1.0, 0.0, 0.5),
    "right": (0.0, 1.0, 0.5, 1.0),
}


def _open_image(path: str | Path, what: str) -> Image.Image:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"could not read {what} {path} as an image: {error}") from None
    return ImageOps.exif_transpose(image)


def load_image_file(path: str | Path, image_shape: tuple[int, int, int], invert: bool | None = None) -> torch.Tensor:
    """A user's image as the model sees images: (1, C, H, W) in [-1, 1].

    Resized (shorter side) and centre-cropped to the model's size, converted to its channels.
    A greyscale model trained on light strokes on black (MNIST) gets a drawing of dark strokes
    on white inverted: ``invert=None`` decides by the border, which is background in both.
    """
    channels, size = image_shape[0], image_shape[1]
    image = _open_image(path, "image")
    image = image.convert("L" if channels == 1 else "RGB")
    pixels = pil_to_tensor(image).unsqueeze(0)  # uint8 (1, C, H, W)
    tensor = resize_center_crop(pixels, size)[0].float() / 127.5 - 1.0
    if channels == 1 and invert is None:
        border = torch.cat([tensor[0, 0], tensor[0, -1], tensor[0, :, 0], tensor[0, :, -1]])
        invert = bool(border.mean() > 0)  # a light background: the drawing is dark on white
    if invert:
        tensor = -tensor
    return tensor.unsqueeze(0)


def make_mask(spec: str, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """The region to replace, (1, 1, H, W) with 1 = generate and 0 = keep: a named box
    (center, top, bottom, left, right) or a mask image file (white = replace)."""
    size = image_shape[1]
    if spec in MASK_BOXES:
        top, bottom, left, right = MASK_BOXES[spec]
        mask = torch.zeros(1, 1, size, size)
        mask[..., round(top * size) : round(bottom * size), round(left * size) : round(right * size)] = 1.0
        return mask
    if not Path(spec).expanduser().is_file():
        raise UserError(f"mask must be one of {sorted(MASK_BOXES)} or a mask image file, got {spec!r}.")
    image = _open_image(spec, "mask").convert("L").resize((size, size), Image.Resampling.NEAREST)
    mask = (pil_to_tensor(image).unsqueeze(0) > 127).float()
    if mask.sum() == 0:
        raise UserError(f"the mask {spec} has no white pixels: nothing to inpaint (white = replace).")
    return mask
