"""Shared fixtures: every test gets its own data root, so nothing touches the user's cache."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def isolated_data_root(tmp_path_factory):
    """One data root for the whole session (triangles and caches built once), set before any
    fixture runs, module-scoped ones included, so that no run touches the user's cache."""
    data_dir = tmp_path_factory.getbasetemp() / "data_root"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFUSION_LIT_DATA", str(data_dir))
        yield data_dir


def run_cli(module: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` as a user would, in ``cwd``; fail with its output on error."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A folder with MNIST/raw/: the real files in ../shared/datasets when present, else 600
    random 28 px images in the IDX format (the code paths are the same)."""
    if (SHARED_DATASETS / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return SHARED_DATASETS
    import numpy as np

    from diffusion_lit.data.formats import write_mnist

    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (600, 28, 28), dtype=np.uint8)
    write_mnist(root, images, np.arange(600) % 10, images[:300], np.arange(300) % 10)
    return root
