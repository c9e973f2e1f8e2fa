"""What the CLI tells people on stderr: progress bars, warnings, errors and summaries.

stdout is left to command results (``thinct info``), so outputs can be piped. Progress bars
are drawn only on a terminal and only when not ``--quiet``; messages are single lines, never
wrapped, so each one can be grepped from a log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter:
    """Progress and messages for one command run; use as a context manager."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._progress: Progress | None = None

    def __enter__(self) -> Reporter:
        if not self.quiet and self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

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
