"""The node's life: open the queue (resuming whatever a previous run left), load the model, listen,
and loop: judge the series that went quiet, process the next waiting one, deliver results, and
delete finished spool data past its retention. A stop request (SIGTERM, Ctrl-C) stops the loop:
the job in progress is cancelled at its next window, a send at its next instance, and both are
taken up again by the next run; nothing is lost.

The node runs unattended, so no series may stop it: whatever goes wrong with one series is kept
as that series' reason and the loop goes on (`Node._after_failure`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thinct._version import __version__
from thinct.errors import (
    Cancelled,
    GeometryError,
    InputError,
    ThinctError,
    UsageError,
    collected_warnings,
)
from thinct.inference.options import InferenceOptions
from thinct.node.database import Queue
from thinct.node.delivery import DeliveryError, DestinationDown, deliver
from thinct.node.receiver import Receiver
from thinct.node.selection import rejection
from thinct.node.settings import NodeSettings
from thinct.node.spool import Spool

LOG = logging.getLogger("thinct.node")
_TICK = 0.25  # seconds between rounds of the loop when there is nothing to do
# How long processing rests after the disk filled up (receiving is refused meanwhile by
# min_free_mb, and sending goes on, which frees space as retention deletes results).
FULL_DISK_PAUSE = 60.0
# How thinct words a full disk (`thinct.io.writing`), and the operating system too.
_NO_SPACE = "no space left on device"


@dataclass
class Maker:
    """What turns a thick series folder into a thin one: `thinct.pipeline.upsample_file` with
    the node's model (loaded once) or interpolation."""

    settings: NodeSettings
    model: Any = None
    model_name: str | None = None
    options: InferenceOptions | None = None

    @classmethod
    def load(cls, settings: NodeSettings) -> Maker:
        if settings.method is not None:
            return cls(settings)
        from thinct.inference.engine import load_checked_model
        from thinct.models import model_display_name

        options = settings.inference_options()
        model = load_checked_model(settings.model, options)
        return cls(settings, model, model_display_name(settings.model), options)

    @property
    def description(self) -> str:
        return (
            f"method {self.settings.method}" if self.model is None else f"model {self.model_name}"
        )

    def make(self, source: Any, target: Any, cancel: Callable[[], bool]) -> None:
        """Make the thin series; the pipeline's warnings go to the log, one line each."""
        from thinct.pipeline import upsample_file

        try:
            with collected_warnings() as warned:
                upsample_file(
                    source,
                    target,
                    method=self.settings.method or "bspline",
                    spacing=self.settings.spacing,
                    consistency=self.settings.consistency,
                    overwrite=True,
                    model=self.model,
                    model_name=self.model_name,
                    options=self.options,
                    cancel=cancel,
                    notice=LOG.warning,
                )
        finally:
            for message in warned:
                LOG.warning("%s", message)


def failure_handling(error: BaseException) -> str:
    """What a failed processing attempt means for its series:

    - ``pause``: the disk is full. The series is not at fault: it waits again without the
      attempt counting, and processing rests for `FULL_DISK_PAUSE`.
    - ``fail``: the input cannot be processed (unreadable, irregular, too large); it would fail
      the same way every time.
    - ``retry``: anything else thinct or the system reports (out of memory, an I/O error):
      tried again, up to ``max_attempts``.
    - ``unexpected``: a bug; the series fails, the traceback goes to the log.
    """
    if isinstance(error, (OSError, ThinctError)) and _NO_SPACE in str(error).lower():
        return "pause"
    if isinstance(error, (InputError, GeometryError, UsageError)):
        return "fail"
    if isinstance(error, (ThinctError, MemoryError, OSError)):
        return "retry"
    return "unexpected"


class StopRequest(threading.Event):
    """Set when the node should stop, with the reason (a signal's name) for the log. A signal
    handler only sets it: the loop does the logging and the tidying."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "requested"

    def request(self, reason: str) -> None:
        self.reason = reason
        self.set()


class Node:
    """One running node: its spool, queue and destinations, and the loop that serves them
    until ``stop`` is set. Receiving happens in the receiver's threads; everything else in
    the thread that calls `run`, one series at a time."""

    def __init__(self, settings: NodeSettings, stop: StopRequest) -> None:
        self.settings = settings
        self.stop = stop
        self.spool = Spool(settings.spool_path, settings.min_free_mb)
        self.queue = Queue(settings.spool_path)
        self.destinations = {d.text: d for d in settings.parsed_destinations()}
        self._paused_until = 0.0  # time.monotonic() before which nothing is processed
        # Destinations found down, and the time.monotonic() before which none of their
        # deliveries is tried: one dead PACS costs one timeout per retry, not one per series.
        self._down_until: dict[str, float] = {}

    def run(self) -> None:
        """Serve until ``stop`` is set."""
        settings = self.settings
        removed = self.spool.remove_partial_files()
        if removed:
            LOG.info("removed %d partly received files left by an interrupted run", removed)
        for uid in self.queue.requeue_interrupted(settings.max_attempts):
            LOG.info("series %s was interrupted while processing: it waits again", uid)
        maker = Maker.load(settings)
        receiver = Receiver(settings, self.spool, self.queue)
        receiver.start()
        LOG.info(
            "thinct %s node %s listening on %s:%d (%s), spool %s",
            __version__,
            settings.ae_title,
            settings.host,
            settings.port,
            maker.description,
            settings.spool,
        )
        try:
            while not self.stop.is_set():
                busy = self._judge_complete_series()
                busy |= self._deliver_due()
                busy |= self._process_next(maker)
                self._purge_expired()
                if not busy:
                    self.stop.wait(_TICK)
            LOG.info("stopping (%s)", self.stop.reason)
        finally:
            receiver.stop()
            self.queue.close()
            LOG.info("node %s stopped", settings.ae_title)

    def _judge_complete_series(self) -> bool:
        """Queue or ignore each series that went quiet. The headers are read without holding
        `Queue.intake`, so receiving goes on meanwhile; a series that received an instance
        since it went quiet keeps receiving and is judged again later."""
        before = time.time() - self.settings.quiet_period
        uids = self.queue.complete_series(before)
        for uid in uids:
            try:
                reason = rejection(self.spool.series_folder(uid), self.settings)
            except Exception as error:  # noqa: BLE001 - no series may stop the node (module doc)
                self._give_up(uid, "judging it", error)
                continue
            with self.queue.intake:
                if reason is None:
                    judged = self.queue.set_waiting(uid, before)
                else:
                    judged = self.queue.set_ignored(uid, reason, before)
            if judged and reason is None:
                LOG.info("series %s is complete: queued", uid)
            elif judged:
                LOG.info("ignored series %s: %s", uid, reason)
        return bool(uids)

    def _process_next(self, maker: Maker) -> bool:
        if time.monotonic() < self._paused_until:
            return False
        with self.queue.intake:
            uid = self.queue.take_next()
        if uid is None:
            return False
        row = self.queue.series(uid)
        count = row.instances if row is not None else 0
        LOG.info("processing series %s (%d instances)", uid, count)
        target = self.spool.output_folder(uid)
        started = time.monotonic()
        try:
            maker.make(self.spool.series_folder(uid), target, self.stop.is_set)
        except Cancelled:
            self.queue.requeue(uid)
            LOG.info("stopping: series %s waits again", uid)
            return True
        except Exception as error:  # noqa: BLE001 - no series may stop the node (module doc)
            # Broad on purpose: under systemd a crash would restart the node into the same
            # series and the same crash, for ever. `_after_failure` sorts what can go wrong.
            self._after_failure(uid, error)
            return True
        self.queue.processed(uid, list(self.destinations))
        made = len(list(target.glob("*.dcm")))
        seconds = time.monotonic() - started
        LOG.info("made %d thin slices of series %s in %.1f s", made, uid, seconds)
        return True

    def _after_failure(self, uid: str, error: Exception) -> None:
        handling = failure_handling(error)
        reason = str(error) or ("out of memory" if isinstance(error, MemoryError) else "")
        if handling == "pause":
            self.queue.requeue(uid, reason)
            self._paused_until = time.monotonic() + FULL_DISK_PAUSE
            LOG.error(
                "series %s waits again: %s; processing rests for %.0f s",
                uid,
                reason,
                FULL_DISK_PAUSE,
            )
        elif handling == "fail":
            self.queue.fail(uid, reason)
            LOG.error("series %s cannot be processed (%s); now failed", uid, reason)
        elif handling == "retry":
            state = self.queue.processing_failed(uid, reason, self.settings.max_attempts)
            LOG.error("series %s could not be processed (%s); now %s", uid, reason, state)
        else:
            self._give_up(uid, "processing it", error)

    def _give_up(self, uid: str, during: str, error: Exception) -> None:
        """A series that met a bug: failed, with the traceback in the log."""
        reason = f"unexpected error while {during}: {type(error).__name__}: {error}"
        self.queue.fail(uid, reason)
        LOG.exception("series %s failed: %s", uid, reason)

    def _deliver_due(self) -> bool:
        """Try the deliveries that are due; whether any was tried."""
        tried = False
        for delivery in self.queue.due_deliveries():
            if self.stop.is_set():
                break
            uid, name = delivery.series_uid, delivery.destination
            destination = self.destinations.get(name)
            if destination is None:
                reason = "the destination is no longer in the settings"
                self.queue.abandon_delivery(uid, name, reason)
                LOG.warning("abandoned sending series %s to %s: %s", uid, name, reason)
                continue
            if time.monotonic() < self._down_until.get(name, 0.0):
                continue
            tried = True
            LOG.info("sending series %s to %s", uid, name)
            try:
                sent = deliver(
                    self.spool.output_folder(uid),
                    destination,
                    self.settings.ae_title,
                    self.stop.is_set,
                )
            except Cancelled:
                LOG.info("stopping: sending series %s to %s starts again later", uid, name)
                break
            except DeliveryError as error:
                settings = self.settings
                wait = min(settings.retry_delay * 2**delivery.attempts, settings.retry_max_delay)
                attempts = self.queue.delivery_failed(uid, name, str(error), wait)
                if isinstance(error, DestinationDown):
                    self._down_until[name] = time.monotonic() + wait
                LOG.warning(
                    "sending series %s to %s failed (attempt %d: %s); next try in %.0f s",
                    uid,
                    name,
                    attempts,
                    error,
                    wait,
                )
                continue
            self.queue.delivered(uid, name)
            LOG.info("sent %d instances of series %s to %s", sent, uid, name)
        return tried

    def _purge_expired(self) -> None:
        for uid in self.queue.expired(self.settings.retention_hours):
            self.spool.purge(uid)
            self.queue.purged(uid)
            LOG.info("deleted the spool data of series %s (retention)", uid)
