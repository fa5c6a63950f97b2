"""Checkpoints are replaced atomically: a failure or a kill during a save leaves the previous
checkpoint whole."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from diffusion_lit.lit.checkpoint_io import AtomicCheckpointIO


class FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "weights": torch.arange(1000.0)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(100_000), "bad": FailsToPickle()}, path)
    assert io.load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


SAVE_FOREVER = """
import sys, torch
from diffusion_lit.lit.checkpoint_io import AtomicCheckpointIO
io, step = AtomicCheckpointIO(), 0
weights = torch.randn(8_000_000)  # 32 MB: a save takes long enough to be killed in the middle
while True:
    step += 1
    io.save_checkpoint({"step": step, "weights": weights}, sys.argv[1])
    print(step, flush=True)
"""


def test_a_kill_during_saves_never_leaves_a_broken_last_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    for delay in (0.15,):
        process = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip()  # one checkpoint is complete
        time.sleep(delay)  # then kill somewhere in a later save
        process.send_signal(signal.SIGKILL)
        process.wait()
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["step"] >= 1 and checkpoint["weights"].shape == (8_000_000,)


KILLED_AFTER_WRITING = """
import os, sys, time, torch
from diffusion_lit.lit.checkpoint_io import AtomicCheckpointIO
io = AtomicCheckpointIO()
io.save_checkpoint({"step": 1, "weights": torch.ones(1_000_000)}, sys.argv[1])
def stall(fd):  # the new checkpoint's bytes are all written: stop here until killed
    print("written", flush=True)
    time.sleep(60)
os.fsync = stall
io.save_checkpoint({"step": 2, "weights": torch.zeros(1_000_000)}, sys.argv[1])
"""


def test_a_kill_after_the_bytes_are_written_but_before_the_rename_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    command = [sys.executable, "-c", KILLED_AFTER_WRITING, str(path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "written"
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["step"] == 1 and bool((checkpoint["weights"] == 1).all())
    (leftover,) = tmp_path.glob("last.ckpt.*.tmp")  # the killed save's bytes never took the name
    assert torch.load(leftover, weights_only=True)["step"] == 2
