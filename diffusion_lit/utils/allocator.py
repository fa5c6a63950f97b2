"""The C allocator setting the commands run with: freed buffers stay with the process.

glibc's malloc serves large requests with ``mmap`` and hands them back to the OS when they are
freed, so a CPU training step maps and unmaps its activation buffers every step: page faults and
system time that made steps up to 1.24x slower here (``experiments/benchmarks/README.md``,
``../shared/PERF_NOTES.md``) and, worse, uneven: the first steps of a process paid more in fp32
than under bf16 autocast (whose activations are half the size), which made ``precision=auto``'s
start-of-run measurement read 1.2x for bf16 where a whole epoch ran 1.02-1.04x faster
(:mod:`diffusion_lit.lit.precision`). ``make`` exports ``MALLOC_MMAP_MAX_=0`` and a large
``MALLOC_TRIM_THRESHOLD_``; :func:`keep_freed_memory` sets the same through ``mallopt`` so that
``python -m diffusion_lit.train`` runs as ``make train`` does.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
ENVIRONMENT_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
# mallopt takes an int: keep up to 2 GiB of free memory at the top of the heap (the Makefile's
# environment setting, which glibc reads as a size_t, says 64 GiB; a training process peaks at 2-4 GiB).
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve every request from its heap (no ``mmap``) and to keep freed
    memory, unless the environment sets either option itself (that choice wins). Returns whether
    it changed anything: False on other C libraries and platforms, where nothing is needed or known."""
    if any(name in os.environ for name in ENVIRONMENT_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success; fixing both values also stops glibc's dynamic mmap threshold.
    return bool(libc.mallopt(M_MMAP_MAX, 0)) & bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
