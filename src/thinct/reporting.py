"""What the CLI tells people on stderr: progress bars, warnings, errors and summaries.

stdout is left to command results (``thinct info``), so outputs can be piped. Progress bars
are drawn only on a terminal and only when not ``--quiet``; messages are single lines, never
wrapped, so each one can be grepped from a log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from thinct.errors import collected_warnings


def _own_stderr() -> TextIO | None:
    """A stream on a duplicate of the stderr file descriptor, or None when stderr has no
    descriptor (an in-memory capture such as typer's CliRunner)."""
    try:
        descriptor = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return os.fdopen(descriptor, "w", buffering=1, encoding="utf-8", errors="replace")


class Reporter:
    """Progress and messages for one command run; use as a context manager.

    The console writes to its own duplicate of the stderr descriptor. While ITK works, thinct
    points descriptor 2 at a file to keep ITK's messages (`thinct.io.native`); the progress
    bar, redrawn by a thread of its own, must go on drawing on the terminal rather than into
    those messages, where it would garble the error they explain.
    """

    console: Console  # made by __enter__, on the stream it opens

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._stream: TextIO | None = None
        self._progress: Progress | None = None

    def __enter__(self) -> Reporter:
        self._stream = _own_stderr()
        self.console = Console(
            file=self._stream, stderr=self._stream is None, highlight=False, soft_wrap=True
        )
        if not self.quiet and self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    @contextmanager
    def task(self, description: str, total: float = 1.0) -> Iterator[Callable[[float], None]]:
        """A progress bar for one step; yields a callback taking the amount completed."""
        if self._progress is None:
            yield lambda completed: None
            return
        task_id = self._progress.add_task(description, total=total)
        try:
            yield lambda completed: self._progress.update(task_id, completed=completed)
        finally:
            self._progress.remove_task(task_id)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def warning(self, message: str) -> None:
        self.console.print(f"warning: {message}", style="yellow", markup=False)

    def error(self, message: str) -> None:
        self.console.print(f"error: {message}", style="red", markup=False)

    @contextmanager
    def warnings_reported(self) -> Iterator[None]:
        """Report the `ThinctWarning`s raised inside as one ``warning:`` line each when the
        block ends (also when it ends with an error)."""
        messages: list[str] = []
        try:
            with collected_warnings() as messages:
                yield
        finally:
            for message in messages:
                self.warning(message)


def out_of_memory(error: MemoryError) -> str:
    """The message for a scan too large for the memory. It is no bug, so no traceback; the size
    numpy or ITK asked for, when it says, tells how far out of reach the scan is."""
    return f"out of memory ({str(error) or 'the scan and its result do not fit'})"


def os_failure(error: OSError) -> str:
    """The message for a path the system refuses (a folder the user may not enter, a name too
    long): the path first and the system's reason, like thinct's own errors."""
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename else reason
