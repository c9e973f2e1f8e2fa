"""Errors that thinct reports to users as one line, and the exit code each one maps to.

Every problem caused by the input or by the command line is raised as a `ThinctError`
subclass with a message that reads well on its own; the CLI prints it without a traceback.
Anything else escaping is a bug in thinct and keeps its traceback.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class ThinctError(Exception):
    """A failure while processing a volume (exit code 1)."""

    exit_code = 1


class UsageError(ThinctError):
    """The command line asks for something that cannot work (exit code 2)."""

    exit_code = 2


class InputError(ThinctError):
    """The input cannot be read, or is not a volume thinct can process."""


class OutputError(ThinctError):
    """The output cannot be written."""


class GeometryError(ThinctError):
    """The scan's geometry does not allow the requested operation."""


class Cancelled(ThinctError):
    """The caller (a Cancel button) asked a running job to stop; it returns nothing."""


class ThinctWarning(UserWarning):
    """Something looks wrong but processing can go on (e.g. intensities that are not HU)."""


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The messages of the `ThinctWarning`s raised inside, every one of them (also repeats
    from the same line, which Python would show once), in a list filled when the block ends.

    Front ends print them their own way: between progress-bar redraws, from a worker process
    back in the main one, or in a napari notification.
    """
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThinctWarning)
        try:
            yield messages
        finally:
            messages.extend(
                str(warning.message)
                for warning in caught
                if issubclass(warning.category, ThinctWarning)
            )
