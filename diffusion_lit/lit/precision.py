"""Which precision to train and sample in: ``auto`` picks bf16 autocast only where the device
computes bf16 natively, and for training only where it measures faster there.

bf16 autocast is a speed-up only with hardware bf16: on the project's AVX-512 BF16 development
CPU it made the small U-Net's training step ~1.45x faster, but on an AVX2-only CPU (AMD EPYC
Zen 3) oneDNN has no bf16 kernels and the same step ran 11-17x slower than in fp32 (3.4
against 58.6 img/s in experiments/benchmarks/train_step.py; see its README). ``auto`` therefore
resolves to ``bf16-mixed`` on CUDA GPUs that support bf16 and on CPUs with oneDNN bf16 support,
to ``16-mixed`` on older GPUs (fp16 with loss scaling) and to ``32-true`` otherwise.

Native is not the same as faster. On an Intel Xeon with AVX-512 BF16 but no AMX (2 cores,
2026-12-04) the same small U-Net's step ran at 0.61x of fp32 under bf16 autocast (83.7 against
138.1 img/s, channels_last), so ``make train`` there took 1.65x longer than it needed to, and
that CPU reports the same oneDNN support as the EPYC where bf16 won. So where bf16 is native, a
training run with ``auto`` times a few training steps of its own network in both precisions
(:func:`bf16_speedup`, a few seconds) and keeps bf16 only when it is at least
``BF16_MIN_SPEEDUP`` times faster. A resumed run keeps what its checkpoint recorded
(:func:`diffusion_lit.runs.training.precision_of_resumed_run`), so that it goes on as it began.

The measurement is only as fair as the process's C allocator: with glibc's default malloc the first
fp32 steps of a process pay page faults that bf16's half-size activations largely escape, and the
default narrow U-Net's step read 1.13-1.20x faster under bf16 on an AVX-512 BF16 EPYC (six fresh
processes) where a whole epoch ran 1.00-1.04x faster, so it trained in bf16 when started with
``python -m`` and in fp32 under ``make``. The commands now set the allocator as ``make`` does
(:mod:`diffusion_lit.utils.allocator`): 0.97-1.05x there, fp32 either way.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import nn

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


# bf16 autocast costs accuracy; where it is not clearly faster, fp32 is the better choice.
BF16_MIN_SPEEDUP = 1.1


def resolve_trainer_precision(
    precision: str | int | None, accelerator: str | None, measure_bf16: Callable[[str], float | None] | None = None
) -> str | int | None:
    """``trainer.precision``: ``auto`` becomes the fastest safe choice for the device; an explicit
    ``bf16-mixed`` on a device without native bf16 is kept, with a warning (it is much slower).

    ``measure_bf16(device_type)``, when given, returns how many times faster the run's training
    step is under bf16 autocast than in fp32 (:func:`bf16_speedup`), or None where it cannot
    tell; ``auto`` then keeps bf16 only where it is native and at least ``BF16_MIN_SPEEDUP``
    times faster.
    """
    device_type = trainer_device_type(accelerator)
    if precision == AUTO:
        if native_bf16(device_type):
            speedup = None if measure_bf16 is None else measure_bf16(device_type)
            if speedup is None:
                return "bf16-mixed"
            chosen = "bf16-mixed" if speedup >= BF16_MIN_SPEEDUP else "32-true"
            console.print(
                f"trainer.precision=auto: a training step ran {speedup:.2f}x as fast under bf16 autocast as in "
                f"fp32 on this {device_type.upper()} (native bf16): training in {chosen}.",
                highlight=False,
            )
            return chosen
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


def bf16_speedup(step: Callable[[bool], None], device_type: str, repeats: int = 3) -> float:
    """fp32 seconds / bf16 seconds of ``step(bf16)``: the median of ``repeats`` interleaved timings
    each (fp32, bf16, fp32, ...), after one untimed call each (kernel choice, first allocations).
    The random generators are left as they were, so that the run trains as it would have."""
    seconds: dict[bool, list[float]] = {False: [], True: []}
    with random_state_kept(device_type):
        for repeat in range(repeats + 1):
            for bf16 in (False, True):
                synchronize(device_type)
                started = time.perf_counter()
                step(bf16)
                synchronize(device_type)
                if repeat:
                    seconds[bf16].append(time.perf_counter() - started)
    return statistics.median(seconds[False]) / statistics.median(seconds[True])


def loss_backward_step(module: nn.Module, x0: torch.Tensor, labels: torch.Tensor | None) -> Callable[[bool], None]:
    """A training step's arithmetic for :func:`bf16_speedup`: ``module.diffusion_loss`` on ``x0``
    under bf16 autocast or not, and its backward; the gradients are dropped again."""

    def step(bf16: bool) -> None:
        with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = module.diffusion_loss(x0, labels)
        loss.backward()
        module.zero_grad(set_to_none=True)

    return step


def random_state_kept(device_type: str) -> contextlib.AbstractContextManager:
    """A context after which torch's random generators (the CPU's, and the current GPU's on
    ``cuda``) are as they were before it."""
    return torch.random.fork_rng(devices=[torch.cuda.current_device()] if device_type == "cuda" else [])


def synchronize(device_type: str) -> None:
    """Wait for queued GPU work, so that a timing includes it."""
    if device_type == "cuda":
        torch.cuda.synchronize()
