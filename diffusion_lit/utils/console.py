"""The consoles every layer prints through: progress and results to stdout, errors to stderr."""

from __future__ import annotations

from rich.console import Console

# Progress and results: paths and overrides hold brackets (logger=[csv,wandb]) that must print as they
# are, and long paths must stay on one line (copy-paste), so no markup and no wrapping.
console = Console(markup=False, soft_wrap=True)
error_console = Console(stderr=True)
