"""The node's loop meeting faults set up in its spool before it starts (a node in a thread of
the test, `node_in_thread`), and its deliveries meeting peers that misbehave (pynetdicom
stand-ins for a misconfigured PACS): whatever goes wrong with one series or one destination,
the node goes on."""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from helpers.dicom_series import thick_series
from helpers.orthanc import free_port, require_pynetdicom, wait_for
from pydicom.errors import InvalidDicomError
from pydicom.uid import CTImageStorage

from thinct.errors import Cancelled, GeometryError, InputError, OutputError, UsageError
from thinct.node.database import Queue
from thinct.node.settings import Destination
from thinct.node.spool import Spool


def result_to_send(spool: Path, uid: str, destinations: list[str]) -> None:
    """A series already made, its result in the spool, to be sent to ``destinations``."""
    queue = Queue(spool)
    queue.add_instance(uid, f"{uid}.1")
    queue.set_waiting(uid, time.time())
    assert queue.take_next() == uid
    queue.processed(uid, destinations)
    queue.close()
    output = Spool(spool, min_free_mb=0).output_folder(uid)
    output.mkdir(parents=True)
    (output / "IM00001.dcm").write_bytes(b"DICM")


def received(spool: Path, files: list[Path]) -> str:
    """A series received into the spool as the node would have received it; its UID."""
    store, queue = Spool(spool, min_free_mb=0), Queue(spool)
    for path in files:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        uid, sop = str(header.SeriesInstanceUID), str(header.SOPInstanceUID)
        store.store(uid, sop, path.read_bytes())
        queue.add_instance(uid, sop)
    queue.close()
    return uid


def cut_where_pydicom_breaks(path: Path) -> None:
    """Truncate a DICOM file (as a damaged disk may) where reading its header fails with
    something else than the errors of unreadable files: what no one expects."""
    data = path.read_bytes()
    for size in range(132, len(data)):
        path.write_bytes(data[:size])
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue
        except Exception:  # noqa: BLE001 - the kind of failure this looks for
            return
    pytest.skip("pydicom reads every truncation of this file cleanly")


def stored_state(spool: Path, uid: str) -> tuple[str, str]:
    queue = Queue(spool, read_only=True)
    try:
        row = queue.series(uid)
    finally:
        queue.close()
    assert row is not None
    return row.state, row.reason


@pytest.mark.parametrize(
    ("error", "handling"),
    [
        (OutputError("cannot write IM00001.dcm: no space left on device"), "pause"),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "pause"),
        (InputError("unreadable DICOM slice"), "fail"),
        (GeometryError("non-uniform slice spacing"), "fail"),
        (UsageError("the output needs more memory than this machine has"), "fail"),
        (OutputError("cannot write: permission denied"), "retry"),
        (MemoryError(), "retry"),
        (KeyError("bug"), "unexpected"),
    ],
)
def test_what_a_failed_attempt_means(error, handling):
    require_pynetdicom()
    from thinct.node.service import failure_handling

    assert failure_handling(error) == handling


def test_a_delivery_to_a_removed_destination_is_abandoned(tmp_path, node_in_thread, caplog):
    spool = tmp_path / "spool"
    result_to_send(spool, "5.1", ["GONE@127.0.0.1:9"])
    node_in_thread()
    line = "abandoned sending series 5.1 to GONE@127.0.0.1:9"
    wait_for(lambda: line in caplog.text, 30, "the delivery to be abandoned")
    assert stored_state(spool, "5.1")[0] == "sent"


def test_a_series_that_breaks_the_judgement_fails_alone(tmp_path, node_in_thread, caplog):
    spool = tmp_path / "spool"
    broken = received(spool, thick_series(tmp_path / "broken", seed=1))
    cut_where_pydicom_breaks(sorted(Spool(spool, 0).series_folder(broken).iterdir())[-1])
    good = received(spool, thick_series(tmp_path / "good", seed=2))
    node_in_thread()
    made = f"thin slices of series {good}"
    wait_for(lambda: made in caplog.text, 60, "the other series to be made")
    state, reason = stored_state(spool, broken)
    assert state == "failed" and reason.startswith("unexpected error while judging it")
    assert "Traceback" in caplog.text


def test_a_dead_destination_costs_one_try_per_wait(tmp_path, node_in_thread, caplog):
    """Three results for a destination that is down: one association attempt, not three."""
    spool, dead = tmp_path / "spool", f"DEAD@127.0.0.1:{free_port()}"
    for uid in ("6.1", "6.2", "6.3"):
        result_to_send(spool, uid, [dead])
    node_in_thread(destinations=(dead,), retry_delay=60)
    wait_for(lambda: "failed (attempt 1" in caplog.text, 30, "a failed delivery")
    time.sleep(1.0)  # rounds of the loop, in which the other two are due
    starts = [m for m in caplog.messages if re.fullmatch(r"sending series \S+ to \S+", m)]
    assert len(starts) == 1, starts


@pytest.fixture
def peer() -> Iterator[Callable[..., Destination]]:
    """A DICOM node that supports only the SOP classes given (storing whatever it is sent):
    a stand-in for a PACS configured wrongly."""
    require_pynetdicom()
    from pynetdicom import AE, evt

    servers = []

    def start(*sop_classes: str) -> Destination:
        ae = AE(ae_title="PEER")
        for sop_class in sop_classes:
            ae.add_supported_context(sop_class)
        port = free_port()
        handlers = [(evt.EVT_C_STORE, lambda event: 0x0000)]
        servers.append(ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers))
        return Destination.parse(f"PEER@127.0.0.1:{port}")

    yield start
    for server in servers:
        server.shutdown()


def test_a_peer_that_takes_no_ct_is_down_for_the_node(tmp_path, peer):
    from pynetdicom.sop_class import Verification

    from thinct.node.delivery import DestinationDown, deliver

    thick_series(tmp_path / "result")
    # pynetdicom aborts an association in which it accepts no context; other PACS accept it
    # with no context for CT, which `deliver` takes for the same.
    with pytest.raises(DestinationDown, match="aborted"):
        deliver(tmp_path / "result", peer(Verification), "THINCT", lambda: False)


def test_an_unreadable_result_is_a_failed_delivery(tmp_path, peer):
    from thinct.node.delivery import DeliveryError, deliver

    thick_series(tmp_path / "result")
    (tmp_path / "result" / "0.dcm").write_bytes(b"not DICOM")
    with pytest.raises(DeliveryError, match="cannot read"):
        deliver(tmp_path / "result", peer(CTImageStorage), "THINCT", lambda: False)


def test_a_stop_request_ends_a_send_between_instances(tmp_path, peer):
    from thinct.node.delivery import deliver

    thick_series(tmp_path / "result")
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(Cancelled):
        deliver(tmp_path / "result", peer(CTImageStorage), "THINCT", stop)
    assert len(asked) == 3
