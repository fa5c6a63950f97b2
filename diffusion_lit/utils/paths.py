"""Where the project's own files are."""

from __future__ import annotations

from pathlib import Path

# conf/ sits beside the package in the repository (installed with `pip install -e .`).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
