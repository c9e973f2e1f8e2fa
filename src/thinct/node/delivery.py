"""Sending a result on: C-STORE to a DICOM node, or STOW-RS to a DICOMweb service. A send
either delivers every instance (the destination said so) or raises `DeliveryError` with the
reason; the queue then tries again later, so a result leaves the spool only once it arrived.
Re-sending after a partial failure sends the same SOP Instance UIDs: a PACS stores them once.
A stop request ends a send between two instances (`Cancelled`): it starts again later."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from thinct.errors import Cancelled
from thinct.node.settings import Destination

# C-STORE statuses that mean stored: success and the warnings (coercion, elements discarded).
_STORED = {0x0000, 0x0001, 0xB000, 0xB007, 0xB006}
_TIMEOUT = 30.0


class DeliveryError(Exception):
    """A send that did not deliver everything, with the reason in words."""


class DestinationDown(DeliveryError):
    """The destination cannot take anything now (no association, or none for CT): no other
    result is tried there until its next try either."""


def deliver(
    folder: Path, destination: Destination, calling_ae_title: str, stop: Callable[[], bool]
) -> int:
    """Send every instance of ``folder``; returns how many. ``stop`` is asked before each
    instance."""
    files = sorted(folder.glob("*.dcm"))
    if not files:
        raise DeliveryError(f"{folder} holds no instances")
    if destination.is_dicomweb:
        return _stow(files, destination, stop)
    return _c_store(files, destination, calling_ae_title, stop)


def _read(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError) as error:
        raise DeliveryError(f"cannot read {path} ({error})") from None


def _c_store(
    files: list[Path], destination: Destination, calling_ae_title: str, stop: Callable[[], bool]
) -> int:
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = _TIMEOUT
    ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    association = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not association.is_established:
        if association.is_rejected:
            reason = "rejected"
        elif association.is_aborted:  # pynetdicom does so when it accepts no context
            reason = "aborted"
        else:
            reason = "no answer or refused"
        raise DestinationDown(f"association with {destination.text} {reason}")
    try:
        if not any(c.abstract_syntax == CTImageStorage for c in association.accepted_contexts):
            raise DestinationDown(f"{destination.text} accepts no CT Image Storage")
        for path in files:
            if stop():
                raise Cancelled("stopped while sending")
            dataset = _read(path)
            try:
                status = association.send_c_store(dataset)
            except (RuntimeError, ValueError) as error:
                # pynetdicom: the association ended (the peer aborted), or the instance does
                # not fit the accepted transfer syntax.
                raise DeliveryError(f"{destination.text}: {path.name} not sent ({error})") from None
            code = getattr(status, "Status", None)
            if code not in _STORED:
                shown = "no response" if code is None else f"status 0x{code:04X}"
                raise DeliveryError(f"{destination.text} did not store {path.name} ({shown})")
    finally:
        if association.is_established:
            association.release()
    return len(files)


def _stow(files: list[Path], destination: Destination, stop: Callable[[], bool]) -> int:
    # dicomweb-client is optional: only a DICOMweb destination needs it.
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise DeliveryError(
            "a DICOMweb destination needs dicomweb-client (pip install 'thinct[node]')"
        ) from None
    import requests

    client = DICOMwebClient(url=destination.url)
    datasets = [_read(path) for path in files]
    if stop():  # one request carries them all: the last point to stop at
        raise Cancelled("stopped while sending")
    try:
        client.store_instances(datasets)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise DestinationDown(f"STOW-RS to {destination.url} failed ({error})") from None
    except (requests.RequestException, OSError) as error:
        raise DeliveryError(f"STOW-RS to {destination.url} failed ({error})") from None
    return len(files)
