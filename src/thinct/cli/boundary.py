"""The one place where a command turns a user's mistake into what the user sees.

Every command runs its work inside `error_boundary`: a `ThinctError` raised anywhere below
becomes one ``error:`` line on stderr and the error's exit code (2 for usage, 1 otherwise),
never a traceback. Bugs (any other exception) pass through untouched, so they stay visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from thinct.errors import ThinctError
from thinct.reporting import Reporter


@contextmanager
def error_boundary(reporter: Reporter) -> Iterator[None]:
    """Report a `ThinctError` raised inside as one line and exit with its code."""
    try:
        yield
    except ThinctError as error:
        reporter.error(str(error))
        raise typer.Exit(error.exit_code) from None
