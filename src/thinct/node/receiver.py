"""The listening side of the node (pynetdicom): C-ECHO, and C-STORE into the spool.

Only callers named with ``--allow`` get in: an unknown calling AE title is rejected during
association negotiation, and a known title calling from a host it is not allowed from is
aborted as soon as the association is established, before any request is served.

A C-STORE is answered "success" only once the instance is on disk and counted in the queue.
CT instances are checked first (their headers and pixel data must be whole); other storage
classes are accepted so that a router sending a whole study does not fail, but they are not
kept: the node logs once per series that it ignores it. Log lines name UIDs, AE titles and
addresses, never a patient.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from thinct.node.database import CLOSED_STATES, Queue
from thinct.node.settings import NodeSettings
from thinct.node.spool import Spool, SpoolFull, is_uid

LOG = logging.getLogger("thinct.node")

# C-STORE statuses (PS3.4 annex B).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
# The transfer syntaxes accepted for CT: the uncompressed ones and what scanners and PACS use
# to compress CT (GDCM reads them all).
CT_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGLosslessSV1,
    JPEG2000Lossless,
    RLELossless,
    JPEG2000,
    JPEGBaseline8Bit,
]
_UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian}
# The geometry attributes and how many values each must have.
_VALUE_COUNTS = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2}


def incomplete_instance(dataset: Dataset, transfer_syntax: str) -> str | None:
    """Why a CT instance cannot be used (missing geometry or pixels), or None."""
    for keyword in (
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "Rows",
        "Columns",
        "BitsAllocated",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "PixelData",
    ):
        if keyword not in dataset or dataset[keyword].value in (None, b"", ""):
            return f"no {keyword}"
    if not (is_uid(str(dataset.SeriesInstanceUID)) and is_uid(str(dataset.SOPInstanceUID))):
        return "a malformed UID"
    for keyword, count in _VALUE_COUNTS.items():
        found = dataset[keyword].VM
        if found != count:
            return f"{keyword} with {found} value{'' if found == 1 else 's'}, not {count}"
    if transfer_syntax in _UNCOMPRESSED:
        samples = int(dataset.get("SamplesPerPixel", 1))
        expected = int(dataset.Rows) * int(dataset.Columns) * samples * dataset.BitsAllocated // 8
        if len(dataset.PixelData) < expected:
            return f"pixel data of {len(dataset.PixelData)} bytes, {expected} expected"
    return None


class Receiver:
    """The handlers of one node's server and the policy they apply."""

    def __init__(self, settings: NodeSettings, spool: Spool, queue: Queue) -> None:
        self.settings = settings
        self.spool = spool
        self.queue = queue
        self.callers = settings.callers()
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_associations = 16
        # Titles are refused during negotiation; hosts once the association is established
        # (`_established`), which also covers a title-less ``*@HOST``.
        if not any(caller.any_title for caller in self.callers):
            self.ae.require_calling_aet = sorted({c.ae_title for c in self.callers})
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(CTImageStorage, CT_TRANSFER_SYNTAXES)
        for context in StoragePresentationContexts:
            if context.abstract_syntax != CTImageStorage:
                self.ae.add_supported_context(context.abstract_syntax)
        self.server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        """Listen on the configured address in background threads."""
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_ESTABLISHED, self._established),
            (evt.EVT_REJECTED, self._rejected),
        ]
        self.server = self.ae.start_server(
            (self.settings.host, self.settings.port),
            block=False,
            evt_handlers=handlers,
            ssl_context=self._tls_context(),
        )

    def stop(self) -> None:
        """Stop listening. A store still in progress finishes; `Queue.close` waits for it."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _tls_context(self) -> ssl.SSLContext | None:
        settings = self.settings
        if settings.tls_cert is None or settings.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.tls_ca is not None:
            context.load_verify_locations(settings.tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _admitted(self, event: evt.Event) -> bool:
        title = event.assoc.requestor.ae_title
        address = event.assoc.requestor.address
        return any(caller.admits(title, address) for caller in self.callers)

    def _established(self, event: evt.Event) -> None:
        if not self._admitted(event):
            requestor = event.assoc.requestor
            LOG.warning(
                "refused association from %s at %s (not allowed from this host)",
                requestor.ae_title,
                requestor.address,
            )
            event.assoc.abort()

    def _rejected(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        LOG.warning(
            "refused association from %s at %s (calling AE title not allowed)",
            requestor.ae_title,
            requestor.address,
        )

    def _echo(self, event: evt.Event) -> int:
        return SUCCESS if self._admitted(event) else CANNOT_UNDERSTAND

    def _store(self, event: evt.Event) -> int:
        if not self._admitted(event):
            return CANNOT_UNDERSTAND
        if event.request.AffectedSOPClassUID != CTImageStorage:
            return self._ignore_other(event)
        transfer_syntax = event.context.transfer_syntax
        try:
            dataset = event.dataset
            problem = incomplete_instance(dataset, transfer_syntax)
        except Exception as error:  # noqa: BLE001 - any decoding error means a corrupt instance
            problem = f"undecodable ({type(error).__name__})"
            dataset = None
        if problem is not None:
            LOG.warning(
                "refused instance %s from %s: %s",
                event.request.AffectedSOPInstanceUID,
                event.assoc.requestor.ae_title,
                problem,
            )
            return CANNOT_UNDERSTAND
        assert dataset is not None
        series_uid, sop_uid = str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID)
        with self.queue.intake:
            if self.queue.closed:  # the node is stopping: the sender keeps the instance
                return OUT_OF_RESOURCES
            if self.queue.state_of(series_uid) in CLOSED_STATES:
                LOG.info("series %s is closed: instance %s not kept", series_uid, sop_uid)
                return SUCCESS
            try:
                self.spool.store(series_uid, sop_uid, event.encoded_dataset())
            except SpoolFull as error:
                LOG.error("refused instance %s: %s", sop_uid, error)
                return OUT_OF_RESOURCES
            except OSError as error:
                LOG.error("refused instance %s: cannot store it (%s)", sop_uid, error.strerror)
                return OUT_OF_RESOURCES
            self.queue.add_instance(series_uid, sop_uid)
        return SUCCESS

    def _ignore_other(self, event: evt.Event) -> int:
        """Acknowledge an instance of another storage class without keeping it. Its series
        is entered as ignored when it is new, with one log line; an instance of another class
        in a CT series (a dose report sharing its UID, say) leaves that series alone."""
        sop_class = UID(event.request.AffectedSOPClassUID)
        reason = f"{sop_class.name}, not {CTImageStorage.name}"
        try:
            series_uid = str(event.dataset.SeriesInstanceUID)
        except Exception:  # noqa: BLE001 - a broken non-CT instance is ignored all the same
            return SUCCESS
        if not is_uid(series_uid):
            return SUCCESS
        with self.queue.intake:
            if self.queue.closed:
                return OUT_OF_RESOURCES
            if self.queue.ignore_new(series_uid, reason):
                LOG.info("ignored series %s: %s", series_uid, reason)
            elif self.queue.state_of(series_uid) != "ignored":
                LOG.info(
                    "instance %s of series %s not kept: %s",
                    event.request.AffectedSOPInstanceUID,
                    series_uid,
                    reason,
                )
        return SUCCESS
