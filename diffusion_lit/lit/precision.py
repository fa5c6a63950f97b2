"""Which precision to train and sample in: ``auto`` picks bf16 autocast only where the device
computes bf16 natively.

bf16 autocast is a speed-up only with hardware bf16: on the project's AVX-512 BF16 development
CPU it made the small U-Net's training step ~1.45x faster, but on an AVX2-only CPU (AMD EPYC
Zen 3) oneDNN has no bf16 kernels and the same step ran 11-17x slower than in fp32 (3.4
against 58.6 img/s in experiments/benchmarks/train_step.py; see its README). ``auto`` therefore
resolves to ``bf16-mixed`` on CUDA GPUs that support bf16 and on CPUs with oneDNN bf16 support,
to ``16-mixed`` on older GPUs (fp16 with loss scaling) and to ``32-true`` otherwise.
"""

from __future__ import annotations

import functools
from typing import Literal, get_args

import torch

from diffusion_lit.utils.console import console

AUTO = "auto"
# model.sample_precision: the net's sampling calls in fp32, under bf16 autocast, or bf16 where native.
SamplePrecision = Literal["32-true", "bf16-mixed", "auto"]
SAMPLE_PRECISIONS: tuple[str, ...] = get_args(SamplePrecision)


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` ("cpu", "cuda") runs bf16 matmuls and convolutions natively."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        # oneDNN's own check (AVX-512 core / AVX-512 BF16 / AMX); torch's inductor uses the same.
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def trainer_device_type(accelerator: str | None) -> str:
    """The device type a Lightning ``accelerator`` setting trains on (auto: CUDA when present)."""
    accelerator = (accelerator or "auto").lower()
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu" if accelerator in ("auto", "cpu") else accelerator


def resolve_trainer_precision(precision: str | int | None, accelerator: str | None) -> str | int | None:
    """``trainer.precision``: ``auto`` becomes the fastest safe choice for the device; an explicit
    ``bf16-mixed`` on a device without native bf16 is kept, with a warning (it is much slower)."""
    device_type = trainer_device_type(accelerator)
    if precision == AUTO:
        if native_bf16(device_type):
            return "bf16-mixed"
        return "16-mixed" if device_type == "cuda" else "32-true"
    if precision in ("bf16-mixed", "bf16-true", "bf16") and device_type in ("cpu", "cuda"):
        warn_slow_bf16(device_type, "trainer.precision")
    return precision


def sample_in_bf16(precision: SamplePrecision, device_type: str) -> bool:
    """Whether the net's sampling calls run under bf16 autocast for ``model.sample_precision``."""
    if precision == AUTO:
        return native_bf16(device_type)
    if precision == "bf16-mixed":
        warn_slow_bf16(device_type, "model.sample_precision")
        return True
    return False


@functools.cache
def warn_slow_bf16(device_type: str, key: str) -> None:
    """Say once per setting that bf16 was asked for where it is emulated (no native support)."""
    if device_type in ("cpu", "cuda") and not native_bf16(device_type):
        console.print(
            f"warning: {key}=bf16-mixed on a {device_type.upper()} without native bf16: emulated bf16 is "
            f"10-17x slower than fp32 here; use {key}=auto (bf16 only where it is native) or 32-true.",
            highlight=False,
        )
