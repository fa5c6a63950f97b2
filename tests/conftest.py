"""Shared fixtures: every test gets its own data root, so nothing touches the user's cache."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion_lit.data.formats import write_mnist
from tests.mnist_standin import standin_mnist

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def pytest_configure(config):
    """Under pytest-xdist (``make test``), share the cores between the workers: each worker's torch,
    and the commands it runs (through OMP_NUM_THREADS), gets cores // workers threads rather than
    every core each, where oversubscribed OpenMP threads would spin against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


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


def has_real_mnist() -> bool:
    return (SHARED_DATASETS / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


@pytest.fixture(scope="session")
def mnist_standin_root(tmp_path_factory) -> Path:
    """A folder with MNIST/raw/ holding the stand-in digits (tests/mnist_standin.py) in the IDX
    format: what a user's fresh clone, without ../shared, tests on."""
    root = tmp_path_factory.mktemp("mnist_standin")
    write_mnist(root, *standin_mnist(num_train=1200, num_test=300))
    return root


@pytest.fixture(scope="session")
def mnist_root(mnist_standin_root) -> Path:
    """A folder with MNIST/raw/: the real files in ../shared/datasets when present, else the
    stand-in (the code paths are the same)."""
    return SHARED_DATASETS if has_real_mnist() else mnist_standin_root


@pytest.fixture(params=["real", "standin"])  # function scope: no reordering of module-scoped fixtures
def each_mnist_root(request, mnist_standin_root) -> Path:
    """Each MNIST source in turn, for tests whose assertions depend on the images: the real files
    (skipped where ../shared is absent, as on a user's fresh clone) and the stand-in, so that a
    green run with ../shared also means a green fresh clone."""
    if request.param == "standin":
        return mnist_standin_root
    if not has_real_mnist():
        pytest.skip(f"the real MNIST files are not in {SHARED_DATASETS} (the stand-in runs instead)")
    return SHARED_DATASETS
