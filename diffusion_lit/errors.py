"""Errors a user can cause through configuration or input, reported without a traceback."""


class UserError(ValueError):
    """A bad config value, missing file or incompatible checkpoint.

    The message must say what was wrong and what to do; entry points print it alone
    (no traceback) and exit with status 2.
    """
