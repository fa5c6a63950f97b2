"""The commands' allocator setting (utils/allocator.py): freed buffers are reused, not unmapped."""

import os
import platform
import subprocess
import sys

import pytest

from diffusion_lit.utils import allocator
from diffusion_lit.utils.allocator import ENVIRONMENT_SETTINGS, keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates, touches and frees a 64 MiB buffer ten times, with or without keep_freed_memory(), and
# prints the minor page faults that took: with glibc's default every buffer is a fresh mapping.
CHURN = """
import resource, sys
from diffusion_lit.utils.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    buffer = bytearray(64 << 20)
    buffer[::4096] = b"x" * len(range(0, len(buffer), 4096))
    del buffer
print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults_of_churn(mode: str) -> tuple[bool, int]:
    environment = {name: value for name, value in os.environ.items() if name not in ENVIRONMENT_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode], env=environment, capture_output=True, text=True, check=True
    )
    applied, faults = done.stdout.split()
    return applied == "1", int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_kept_memory_is_reused_instead_of_mapped_afresh_each_time():
    applied, kept = page_faults_of_churn("keep")
    assert applied
    _, default = page_faults_of_churn("default")
    pages = 10 * (64 << 20) // 4096
    assert default > 0.8 * pages  # every buffer faulted in again
    assert kept < 0.3 * pages  # the first buffer's pages, then reuse


def test_a_setting_in_the_environment_wins(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: calls.append(name))
    for name in ENVIRONMENT_SETTINGS:
        monkeypatch.setenv(name, "65536")
        assert not keep_freed_memory()
        monkeypatch.delenv(name)
    assert calls == []
