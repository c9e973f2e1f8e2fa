"""The node's life: open the queue (resuming whatever a previous run left), load the model, listen,
and loop: judge the series that went quiet, process the next waiting one, deliver results, and
delete finished spool data past its retention. A stop request (SIGTERM, Ctrl-C) stops the loop:
the job in progress is cancelled at its next window and waits again; nothing is lost."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thinct._version import __version__
from thinct.errors import Cancelled, ThinctError
from thinct.node.database import Queue
from thinct.node.delivery import DeliveryError, deliver
from thinct.node.receiver import Receiver
from thinct.node.selection import rejection
from thinct.node.settings import NodeSettings
from thinct.node.spool import Spool

LOG = logging.getLogger("thinct.node")
_TICK = 0.25  # seconds between rounds of the loop when there is nothing to do


@dataclass
class Maker:
    """What turns a thick series folder into a thin one: `thinct.pipeline.upsample_file` with
    the node's model (loaded once) or interpolation."""

    settings: NodeSettings
    model: Any = None
    model_name: str | None = None

    @classmethod
    def load(cls, settings: NodeSettings) -> Maker:
        if settings.method is not None:
            return cls(settings)
        from thinct.inference.engine import load_checked_model
        from thinct.inference.options import InferenceOptions
        from thinct.models import model_display_name

        options = InferenceOptions(device=settings.device, precision=settings.precision)
        model = load_checked_model(settings.model, options)
        return cls(settings, model, model_display_name(settings.model))

    @property
    def description(self) -> str:
        return (
            f"method {self.settings.method}" if self.model is None else f"model {self.model_name}"
        )

    def make(self, source: Any, target: Any, cancel: Callable[[], bool]) -> None:
        from thinct.inference.options import InferenceOptions
        from thinct.pipeline import upsample_file

        options = None
        if self.model is not None:
            options = InferenceOptions(
                device=self.settings.device, precision=self.settings.precision
            )
        upsample_file(
            source,
            target,
            method=self.settings.method or "bspline",
            spacing=self.settings.spacing,
            overwrite=True,
            model=self.model,
            model_name=self.model_name,
            options=options,
            cancel=cancel,
        )


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
    def __init__(self, settings: NodeSettings, stop: StopRequest) -> None:
        self.settings = settings
        self.stop = stop
        self.spool = Spool(settings.spool_path, settings.min_free_mb)
        self.queue = Queue(settings.spool_path)
        self.destinations = settings.parsed_destinations()

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
        uids = self.queue.complete_series(self.settings.quiet_period)
        for uid in uids:
            with self.queue.intake:
                reason = rejection(self.spool.series_folder(uid), self.settings)
                if reason is None:
                    self.queue.set_waiting(uid)
                else:
                    self.queue.ignore(uid, reason)
            if reason is None:
                LOG.info("series %s is complete: queued", uid)
            else:
                LOG.info("ignored series %s: %s", uid, reason)
        return bool(uids)

    def _process_next(self, maker: Maker) -> bool:
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
        except (ThinctError, MemoryError) as error:
            reason = str(error) or "out of memory"
            state = self.queue.processing_failed(uid, reason, self.settings.max_attempts)
            LOG.error("series %s could not be processed (%s); now %s", uid, reason, state)
            return True
        self.queue.processed(uid, str(target), [d.text for d in self.destinations])
        made = len(list(target.glob("*.dcm")))
        seconds = time.monotonic() - started
        LOG.info("made %d thin slices of series %s in %.1f s", made, uid, seconds)
        return True

    def _deliver_due(self) -> bool:
        due = self.queue.due_deliveries()
        for delivery in due:
            if self.stop.is_set():
                break
            destination = next(d for d in self.destinations if d.text == delivery.destination)
            row = self.queue.series(delivery.series_uid)
            if row is None:
                continue
            folder = self.spool.output_folder(row.series_uid)
            try:
                sent = deliver(folder, destination, self.settings.ae_title)
            except DeliveryError as error:
                settings = self.settings
                wait = min(settings.retry_delay * 2**delivery.attempts, settings.retry_max_delay)
                attempts = self.queue.delivery_failed(
                    row.series_uid, destination.text, str(error), wait
                )
                LOG.warning(
                    "sending series %s to %s failed (attempt %d: %s); next try in %.0f s",
                    row.series_uid,
                    destination.text,
                    attempts,
                    error,
                    wait,
                )
                continue
            self.queue.delivered(row.series_uid, destination.text)
            LOG.info("sent %d instances of series %s to %s", sent, row.series_uid, destination.text)
        return bool(due)

    def _purge_expired(self) -> None:
        for uid in self.queue.expired(self.settings.retention_hours):
            self.spool.purge(uid)
            self.queue.purged(uid)
            LOG.info("deleted the spool data of series %s (retention)", uid)
