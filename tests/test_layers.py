"""The layer contract of pyproject.toml ([tool.importlinter]) holds, and it catches a violation."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The `lint-imports` command, run by this interpreter (the venv's bin/ need not be on PATH).
LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else None
    return subprocess.run([*LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_package_keeps_its_layer_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_or_a_circle_breaks_the_contract(tmp_path):
    """A copy of the package where the bottom layer imports an entry point, and where two
    metrics modules import each other: lint-imports names both."""
    shutil.copytree(ROOT / "diffusion_lit", tmp_path / "diffusion_lit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    files = tmp_path / "diffusion_lit" / "utils" / "files.py"
    files.write_text(files.read_text() + "\nimport diffusion_lit.train  # noqa: E402\n")
    fid = tmp_path / "diffusion_lit" / "metrics" / "fid.py"
    fid.write_text(fid.read_text() + "\nimport diffusion_lit.metrics.memorization  # noqa: E402\n")
    memorization = tmp_path / "diffusion_lit" / "metrics" / "memorization.py"
    memorization.write_text(memorization.read_text() + "\nimport diffusion_lit.metrics.fid  # noqa: E402\n")
    result = lint_imports(tmp_path, pythonpath=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "diffusion_lit.utils.files -> diffusion_lit.train" in result.stdout
    assert "No cycles are allowed in diffusion_lit.metrics" in result.stdout and "memorization" in result.stdout
