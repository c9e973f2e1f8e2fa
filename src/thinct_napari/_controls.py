"""Run and Cancel buttons, a progress bar and a status line over one background job.

A job runs in a napari `thread_worker` so the viewer stays responsive. It gets `Hooks`:
``progress(fraction)`` and ``post(anything)`` may be called from the worker thread (Qt
signals carry them to the progress bar and the panel on the main thread), and
``cancelled()`` becomes True when Cancel is pressed (or napari stops the worker as its
window closes); thinct's engine polls it between steps and stops with
`thinct.errors.Cancelled`. Loading a model is not interrupted: Cancel takes effect after it.

A `thinct.ThinctError` (a user's mistake, a file that cannot be read) ends the run with
its one-line message in the status line and a napari notification, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from thinct.errors import Cancelled, ThinctError
from thinct.reporting import out_of_memory

_STEPS = 1000  # progress bar resolution


class _Relay(QObject):
    """Carries values from the worker thread to the main thread (queued connections)."""

    progressed = Signal(float)
    posted = Signal(object)


@dataclass(frozen=True)
class Hooks:
    """What a job may call from its thread: report progress (0 to 1), post a value to the
    panel, and ask whether Cancel was pressed."""

    progress: Callable[[float], None]
    post: Callable[[Any], None]
    cancelled: Callable[[], bool]


Job = Callable[[Hooks], Any]


@dataclass(frozen=True)
class Ended:
    """How a job ended: its result, or the one-line error that stopped it, or Cancel."""

    value: Any = None
    error: str | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


def _run_job(job: Job, hooks: Hooks) -> Ended:
    try:
        return Ended(value=job(hooks))
    except Cancelled:
        return Ended(cancelled=True)
    except ThinctError as error:
        return Ended(error=str(error))
    except MemoryError as error:
        return Ended(error=out_of_memory(error))


class RunControls:
    """The Run/Cancel row, progress bar and status line of a panel (``widgets``, for the
    panel's form)."""

    def __init__(self, run_text: str, on_run: Callable[[], None]) -> None:
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=_STEPS, value=0, label="progress")
        self.status = Label(value="", label="status")
        self.status.native.setWordWrap(True)  # a long message must not widen the panel
        buttons = Container(
            widgets=[self.run_button, self.cancel_button], layout="horizontal", label=""
        )
        buttons.margins = (0, 0, 0, 0)
        self.widgets = [buttons, self.progress, self.status]
        self.worker: FunctionWorker | None = None
        self._relay: _Relay | None = None
        self.run_button.changed.connect(on_run)
        self.cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(
        self,
        job: Job,
        on_end: Callable[[Ended], None],
        status: str,
        on_post: Callable[[Any], None] | None = None,
    ) -> None:
        """Run ``job`` in a worker thread. On the main thread, ``on_post`` gets what the job
        posts and ``on_end`` its `Ended`."""
        if self.running:
            raise RuntimeError("a run is in progress")  # the disabled Run button prevents it

        def cancelled() -> bool:
            # The worker's own flag: Cancel sets it, and so does napari when its window closes.
            return worker.abort_requested

        relay = _Relay()
        relay.progressed.connect(self._show_progress)
        if on_post is not None:
            relay.posted.connect(on_post)
        hooks = Hooks(relay.progressed.emit, relay.posted.emit, cancelled)
        # The worker does not emit `returned` once quit() was called, so the outcome is kept
        # here and read when it has finished, whatever happened.
        outcome: list[Ended] = []
        worker = create_worker(lambda: outcome.append(_run_job(job, hooks)))
        worker.finished.connect(lambda: self._finished(outcome, on_end))
        self._relay = relay  # kept alive (and connected) while the job runs
        self.worker = worker
        self.progress.value = 0
        self.report(status)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.enabled = False
            self.report("cancelling...")

    def report(self, message: str) -> None:
        self.status.value = message

    def fail(self, message: str) -> None:
        """A one-line error in the status line and as a napari notification."""
        self.report(f"error: {message}")
        show_error(message)

    def _show_progress(self, fraction: float) -> None:
        self.progress.value = round(min(max(fraction, 0.0), 1.0) * _STEPS)

    def _finished(self, outcome: list[Ended], on_end: Callable[[Ended], None]) -> None:
        cancelled = self.worker is not None and self.worker.abort_requested
        self.worker = None
        self._relay = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if cancelled:
            # Cancel wins even when the job finished before it looked: nothing is added.
            ended = Ended(cancelled=True)
            self.report("cancelled")
            show_info("thinct: run cancelled")
        elif not outcome:  # an exception that is a bug: napari shows it with its traceback
            ended = Ended(error="unexpected error; see the notification")
            self.report(f"error: {ended.error}")
        else:
            ended = outcome[0]
            if ended.cancelled:
                self.report("cancelled")
                show_info("thinct: run cancelled")
            elif ended.error is not None:
                self.fail(ended.error)
            else:
                self.progress.value = _STEPS
        on_end(ended)
