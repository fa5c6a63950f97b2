"""Errors a user can cause through configuration or input, reported without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from typing import NoReturn, TypeVar

from omegaconf.errors import MissingMandatoryValue

from diffusion_lit.utils.console import error_console

Result = TypeVar("Result")
Choice = TypeVar("Choice")


class UserError(ValueError):
    """A bad config value, missing file or incompatible checkpoint.

    The message must say what was wrong and what to do; entry points print it alone
    (no traceback) and exit with status 2.
    """


def check_choice(key: str, value: Choice, choices: Collection[Choice]) -> Choice:
    """``value`` if it is one of ``choices`` (a closed option set, e.g. a ``Literal``'s
    ``get_args``), else a UserError naming the config ``key`` and the allowed values."""
    if value not in choices:
        raise UserError(f"{key} must be one of {list(choices)}, got {value!r}.")
    return value


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


def exit_with(error: UserError) -> NoReturn:
    """Print a user error as one message (no traceback) and exit with status 2."""
    error_console.print("[bold red]error:[/bold red]", end=" ")
    error_console.print(str(error), markup=False, highlight=False, soft_wrap=True)
    sys.exit(2)


def report_user_errors(task: Callable[[], Result]) -> Result:
    """Run ``task``; a UserError is printed as one message (no traceback) and exits with status 2."""
    try:
        return task()
    except Exception as raised:
        error = find_user_error(raised)
        if error is None:
            raise
        exit_with(error)
