"""Errors that thinct reports to users as one line, and the exit code each one maps to.

Every problem caused by the input or by the command line is raised as a `ThinctError`
subclass with a message that reads well on its own; the CLI prints it without a traceback.
Anything else escaping is a bug in thinct and keeps its traceback.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass


class ThinctError(Exception):
    """A failure while processing a volume (exit code 1).

    The message is its arguments joined: text, and `Argument`s where it names an argument of
    the caller, so that the library and the command line each name it their own way
    (``UsageError("--spacing ...")`` would speak flags to a Python caller).
    """

    exit_code = 1

    def __str__(self) -> str:
        return "".join(str(part) for part in self.args)


class UsageError(ThinctError):
    """The command line asks for something that cannot work (exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Argument:
    """An argument named inside an error message, spelled the way the caller gives it: the
    Python name (``spacing``, or with a ``value``: ``profile='gaussian'``) to library
    callers, the option (``--spacing``, ``--profile gaussian``; a flag when the value is
    True) on the command line."""

    name: str
    value: object = None

    def __str__(self) -> str:
        if _option_names is None:
            return self.name if self.value is None else f"{self.name}={self.value!r}"
        option = _option_names.get(self.name, "--" + self.name.replace("_", "-"))
        return option if self.value is None or self.value is True else f"{option} {self.value}"


# Set while the command line runs (`arguments_as_options`); None: Python names.
_option_names: Mapping[str, str] | None = None


@contextmanager
def arguments_as_options(renamed: Mapping[str, str] | None) -> Iterator[None]:
    """Inside, error messages name their `Argument`s as command-line options: ``--`` and
    the name with dashes, or the option in ``renamed`` (``series_uid`` is ``--series``).
    ``None`` keeps the Python names."""
    global _option_names
    earlier, _option_names = _option_names, None if renamed is None else dict(renamed)
    try:
        yield
    finally:
        _option_names = earlier


def option_names() -> Mapping[str, str] | None:
    """How arguments are named now: what a worker process is given to speak as its parent."""
    return _option_names


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
