"""The node's job queue on its own: the states a series moves through, what a restart finds,
the races with receiving, and the commands IT runs on a spool (`thinct serve status`, which
must change nothing, and `thinct serve forget`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import assert_one_error, thinct_in_process

from thinct.node.database import DATABASE_FILE, Queue
from thinct.node.spool import Spool


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    opened = Queue(tmp_path)
    yield opened
    opened.close()


def quiet_now() -> float:
    """The time of a judgement: every instance counted so far arrived before it."""
    time.sleep(0.01)
    return time.time()


def taken(queue: Queue, uid: str) -> None:
    """One instance of ``uid`` received, judged complete and taken for processing."""
    queue.add_instance(uid, f"{uid}.1")
    assert queue.set_waiting(uid, quiet_now())
    assert queue.take_next() == uid


def test_the_queue_moves_a_series_through_its_states(queue):
    queue.add_instance("1.2.3", "1.2.3.1")
    queue.add_instance("1.2.3", "1.2.3.1")  # sent twice: counted once
    queue.add_instance("1.2.3", "1.2.3.2")
    assert queue.series("1.2.3").instances == 2
    assert queue.complete_series(time.time() - 3600) == []
    before = quiet_now()
    assert queue.complete_series(before) == ["1.2.3"]
    assert queue.set_waiting("1.2.3", before)
    assert queue.take_next() == "1.2.3"
    assert queue.take_next() is None
    queue.processed("1.2.3", ["A@h:1", "B@h:2"])
    assert [d.destination for d in queue.due_deliveries()] == ["A@h:1", "B@h:2"]
    queue.delivered("1.2.3", "A@h:1")
    assert queue.delivery_failed("1.2.3", "B@h:2", "refused", wait=3600) == 1
    assert queue.due_deliveries() == [] and queue.series("1.2.3").state == "sending"
    assert any("refused" in problem[2] for problem in queue.recent_problems())
    queue.delivery_failed("1.2.3", "B@h:2", "refused", wait=0)
    queue.delivered("1.2.3", "B@h:2")
    assert queue.series("1.2.3").state == "sent"
    assert queue.expired(retention_hours=1) == []
    assert queue.expired(retention_hours=0) == ["1.2.3"]
    queue.purged("1.2.3")
    assert queue.expired(retention_hours=0) == []
    assert queue.counts()["sent"] == 1


def test_a_restart_requeues_interrupted_work_until_it_fails(tmp_path):
    queue = Queue(tmp_path)
    taken(queue, "1.5")
    queue.close()
    queue = Queue(tmp_path)  # the node died while processing
    assert queue.requeue_interrupted(max_attempts=2) == ["1.5"]
    assert queue.take_next() == "1.5"
    assert queue.requeue_interrupted(max_attempts=2) == []
    assert queue.series("1.5").state == "failed"
    assert "interrupted 2 times" in queue.series("1.5").reason
    queue.close()


def test_a_failed_attempt_waits_again_until_the_last(queue):
    taken(queue, "1.6")
    assert queue.processing_failed("1.6", "unreadable", max_attempts=2) == "waiting"
    queue.take_next()
    assert queue.processing_failed("1.6", "unreadable", max_attempts=2) == "failed"


def test_a_full_disk_or_a_shutdown_does_not_count_the_attempt(queue):
    taken(queue, "1.7")
    queue.requeue("1.7", "no space left on device")
    row = queue.series("1.7")
    assert (row.state, row.attempts, row.reason) == ("waiting", 0, "no space left on device")
    assert queue.take_next() == "1.7" and queue.series("1.7").attempts == 1


def test_an_instance_arriving_during_the_judgement_keeps_the_series_open(queue):
    queue.add_instance("1.4", "1.4.1")
    before = quiet_now()
    assert queue.complete_series(before) == ["1.4"]
    queue.add_instance("1.4", "1.4.2")  # arrives while the node reads the headers
    assert not queue.set_waiting("1.4", before)
    assert not queue.set_ignored("1.4", "a localizer", before)
    assert queue.series("1.4").state == "received" and queue.take_next() is None
    assert queue.set_waiting("1.4", quiet_now())
    assert queue.take_next() == "1.4"


def test_an_instance_of_another_class_leaves_a_ct_series_alone(queue):
    queue.add_instance("1.8", "1.8.1")
    assert not queue.ignore_new("1.8", "MR Image Storage, not CT Image Storage")
    assert queue.series("1.8").state == "received"
    assert queue.ignore_new("1.9", "MR Image Storage, not CT Image Storage")
    assert not queue.ignore_new("1.9", "MR Image Storage, not CT Image Storage")  # logged once
    assert queue.series("1.9").state == "ignored"
    taken(queue, "1.10")  # judged while receiving only
    assert not queue.set_ignored("1.10", "a localizer", quiet_now())
    assert queue.series("1.10").state == "processing"


def test_a_series_made_again_is_delivered_again(queue):
    taken(queue, "2.1")
    queue.processed("2.1", ["A@h:1"])
    queue.delivery_failed("2.1", "A@h:1", "refused", wait=0)
    queue.delivered("2.1", "A@h:1")
    assert queue.due_deliveries() == [] and queue.series("2.1").state == "sent"
    queue.processed("2.1", ["A@h:1"])
    (due,) = queue.due_deliveries()
    assert (due.series_uid, due.attempts) == ("2.1", 0)
    assert queue.series("2.1").state == "sending"


def test_a_delivery_to_a_removed_destination_is_abandoned(queue):
    taken(queue, "2.2")
    queue.processed("2.2", ["GONE@h:1"])
    queue.abandon_delivery("2.2", "GONE@h:1", "the destination is no longer in the settings")
    assert queue.due_deliveries() == [] and queue.series("2.2").state == "sent"
    (problem,) = queue.recent_problems()
    assert problem[1] == "abandoned sending to GONE@h:1"


def write_result(spool: Spool, uid: str) -> None:
    spool.store(uid, f"{uid}.1", b"DICM")
    spool.output_folder(uid).mkdir(parents=True)
    (spool.output_folder(uid) / "IM00001.dcm").write_bytes(b"DICM")


def test_forget_removes_a_series_so_that_it_is_taken_as_new(tmp_path, capfd):
    spool = Spool(tmp_path, min_free_mb=0)
    write_result(spool, "3.1")
    queue = Queue(tmp_path)
    taken(queue, "3.1")
    queue.processed("3.1", ["A@h:1"])
    queue.delivered("3.1", "A@h:1")
    queue.close()
    result = thinct_in_process(capfd, "serve", "forget", "3.1", "--spool", tmp_path)
    assert result.returncode == 0 and "forgot series 3.1" in result.stderr, result.stderr
    assert not spool.series_folder("3.1").exists() and not (spool.outgoing / "3.1").exists()
    queue = Queue(tmp_path)
    assert queue.series("3.1") is None
    queue.add_instance("3.1", "3.1.1")  # sent again: a new series
    assert queue.series("3.1").instances == 1 and queue.series("3.1").state == "received"
    queue.close()


def test_forget_refuses_what_it_cannot_forget(tmp_path, capfd):
    queue = Queue(tmp_path)
    taken(queue, "3.2")
    queue.close()
    result = thinct_in_process(capfd, "serve", "forget", "3.2", "--spool", tmp_path)
    assert_one_error(result, 2, "series 3.2 is being processed")
    result = thinct_in_process(capfd, "serve", "forget", "9.9", "--spool", tmp_path)
    assert_one_error(result, 2, "no series 9.9 in the queue")
    result = thinct_in_process(capfd, "serve", "forget", "../9", "--spool", tmp_path)
    assert_one_error(result, 2, "is not a Series Instance UID")
    result = thinct_in_process(capfd, "serve", "forget", "9.9", "--spool", tmp_path / "none")
    assert_one_error(result, 2, "holds no node queue")
    assert not (tmp_path / "none").exists()


def test_status_shows_the_problems_beside_a_running_node(tmp_path, capfd, queue):
    queue.ignore_new("4.1", "MR Image Storage, not CT Image Storage")
    taken(queue, "4.2")
    queue.fail("4.2", "irregular slice spacing")
    taken(queue, "4.3")
    queue.processed("4.3", ["A@h:1"])
    time.sleep(0.01)
    tried = time.time()
    queue.delivery_failed("4.3", "A@h:1", "association refused", wait=60)
    result = thinct_in_process(capfd, "serve", "status", "--spool", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 sending, 0 sent, 1 ignored, 1 failed" in result.stdout
    assert "4.2 failed: irregular slice spacing" in result.stdout
    assert "4.3 sending to A@h:1: association refused" in result.stdout
    assert "MR Image Storage" not in result.stdout  # an ignored series is no problem
    (problem,) = [p for p in queue.recent_problems() if p[0] == "4.3"]
    assert problem[3] >= tried  # the time of the failed try, not of the result


def test_status_changes_nothing(tmp_path, capfd):
    """Read-only: not even an empty file becomes a database."""
    (tmp_path / DATABASE_FILE).write_bytes(b"")
    result = thinct_in_process(capfd, "serve", "status", "--spool", tmp_path)
    assert_one_error(result, 2, "not a node queue that can be read")
    assert (tmp_path / DATABASE_FILE).stat().st_size == 0
