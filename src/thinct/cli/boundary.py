"""The one place where a command turns a user's mistake, or a request to stop, into what the
user sees.

Every command runs its work inside `error_boundary`: a `ThinctError` raised anywhere below
becomes one ``error:`` line on stderr and the error's exit code (2 for usage, 1 otherwise),
never a traceback. Bugs (any other exception) pass through untouched, so they stay visible.

The whole command line runs inside `stop_signals_caught`: Ctrl-C (SIGINT) and SIGTERM (kill,
Slurm's scancel, systemd, torchrun) both raise `KeyboardInterrupt` wherever the program is,
from the loading of a model to the last write, so every run stops the same tidy way (staging
folders removed, worker processes ended, a batch's summary) and says so.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer

from thinct.errors import ThinctError
from thinct.reporting import Reporter

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def error_boundary(reporter: Reporter) -> Iterator[None]:
    """Report a `ThinctError` raised inside as one line and exit with its code."""
    try:
        yield
    except ThinctError as error:
        reporter.error(str(error))
        raise typer.Exit(error.exit_code) from None


@dataclass
class Stop:
    """Whether a stop signal came (typer turns the `KeyboardInterrupt` it raised into exit
    code 130 before the caller sees it, so the caller asks here)."""

    received: bool = False


@contextmanager
def stop_signals_caught() -> Iterator[Stop]:
    """Inside, SIGINT and SIGTERM raise `KeyboardInterrupt` and are recorded. Only the main
    thread may handle signals: elsewhere (a test runner's thread) nothing changes."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def interrupt(signum: int, frame: object) -> None:
        stop.received = True
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in _STOP_SIGNALS}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
