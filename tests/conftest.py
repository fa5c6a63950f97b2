"""Shared fixtures: every test gets its own data root, so nothing touches the user's cache."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_data_root(tmp_path_factory, monkeypatch):
    data_dir = tmp_path_factory.getbasetemp() / "data_root"  # shared by a session: triangles cached once
    monkeypatch.setenv("DIFFUSION_LIT_DATA", str(data_dir))
    return data_dir


def run_cli(module: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` as a user would, in ``cwd``; fail with its output on error."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
