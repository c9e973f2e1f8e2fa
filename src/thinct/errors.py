"""Errors that thinct reports to users as one line, and the exit code each one maps to.

Every problem caused by the input or by the command line is raised as a `ThinctError`
subclass with a message that reads well on its own; the CLI prints it without a traceback.
Anything else escaping is a bug in thinct and keeps its traceback.
"""

from __future__ import annotations


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
