"""What every entry point shares: clean reporting of user errors, the config folder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf.errors import MissingMandatoryValue
from rich.console import Console

from diffusion_lit.errors import UserError

# conf/ sits beside the package in the repository (installed with `pip install -e .`).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Progress and results: paths and overrides hold brackets (logger=[csv,wandb]) that must print as they
# are, and long paths must stay on one line (copy-paste), so no markup and no wrapping.
console = Console(markup=False, soft_wrap=True)
error_console = Console(stderr=True)
Result = TypeVar("Result")


def find_user_error(error: BaseException | None) -> UserError | None:
    """The UserError behind ``error``: Hydra's instantiate wraps errors raised by constructors.

    A config value left as ``???`` (e.g. ``data.path`` of ``data=folder``) is a user error too.
    """
    while error is not None:
        if isinstance(error, UserError):
            return error
        if isinstance(error, MissingMandatoryValue):
            key = error.full_key or "a config value"
            return UserError(f"{key} must be set: add {key}=... to the command line.")
        error = error.__cause__
    return None


def report_user_errors(task: Callable[[], Result]) -> Result:
    """Run ``task``; a UserError is printed as one message (no traceback) and exits with status 2."""
    try:
        return task()
    except Exception as raised:
        error = find_user_error(raised)
        if error is None:
            raise
        error_console.print("[bold red]error:[/bold red]", end=" ")
        error_console.print(str(error), markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
