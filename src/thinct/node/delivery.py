"""Sending a result on: C-STORE to a DICOM node, or STOW-RS to a DICOMweb service. A send
either delivers every instance (the destination said so) or raises `DeliveryError` with the
reason; the queue then tries again later, so a result leaves the spool only once it arrived.
Re-sending after a partial failure sends the same SOP Instance UIDs: a PACS stores them once."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from thinct.node.settings import Destination

# C-STORE statuses that mean stored: success and the warnings (coercion, elements discarded).
_STORED = {0x0000, 0x0001, 0xB000, 0xB007, 0xB006}
_TIMEOUT = 30.0


class DeliveryError(Exception):
    """A send that did not deliver everything, with the reason in words."""


def deliver(folder: Path, destination: Destination, calling_ae_title: str) -> int:
    """Send every instance of ``folder``; returns how many."""
    files = sorted(folder.glob("*.dcm"))
    if not files:
        raise DeliveryError(f"{folder} holds no instances")
    if destination.is_dicomweb:
        return _stow(files, destination)
    return _c_store(files, destination, calling_ae_title)


def _c_store(files: list[Path], destination: Destination, calling_ae_title: str) -> int:
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = _TIMEOUT
    ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    association = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not association.is_established:
        reason = "rejected" if association.is_rejected else "no answer or refused"
        raise DeliveryError(f"association with {destination.text} {reason}")
    try:
        for path in files:
            status = association.send_c_store(pydicom.dcmread(path))
            code = getattr(status, "Status", None)
            if code not in _STORED:
                shown = "no response" if code is None else f"status 0x{code:04X}"
                raise DeliveryError(f"{destination.text} did not store {path.name} ({shown})")
    finally:
        if association.is_established:
            association.release()
    return len(files)


def _stow(files: list[Path], destination: Destination) -> int:
    # dicomweb-client is optional: only a DICOMweb destination needs it.
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise DeliveryError(
            "a DICOMweb destination needs dicomweb-client (pip install 'thinct[node]')"
        ) from None
    import requests

    client = DICOMwebClient(url=destination.url)
    try:
        client.store_instances([pydicom.dcmread(path) for path in files])
    except (requests.RequestException, OSError) as error:
        raise DeliveryError(f"STOW-RS to {destination.url} failed ({error})") from None
    return len(files)
