"""What every entry point shares: clean reporting of user errors, the config folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, TypeVar

from rich.console import Console

from diffusion_lit.errors import UserError

# conf/ sits beside the package in the repository (installed with `pip install -e .`).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

console = Console(stderr=True)
Result = TypeVar("Result")


def report_user_errors(task: Callable[[], Result]) -> Result:
    """Run ``task``; a UserError is printed as one message (no traceback) and exits with status 2."""
    try:
        return task()
    except UserError as error:
        console.print(f"[bold red]error:[/bold red] {error}", highlight=False)
        sys.exit(2)
