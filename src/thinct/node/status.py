"""What IT runs beside a node, on its spool: `thinct serve status` (what the queue holds, read
without changing anything, so a running node or a stopped one can be checked at any time) and
`thinct serve forget` (remove a series, so that it is made again when it is sent again)."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from thinct.errors import UsageError
from thinct.node.database import DATABASE_FILE, Queue
from thinct.node.spool import Spool, is_uid


def _check_spool(spool: Path) -> None:
    if not (spool / DATABASE_FILE).is_file():
        raise UsageError(f"{spool} holds no node queue ({DATABASE_FILE})")


def status_report(spool: Path) -> str:
    """Counts per state and the latest problems, as lines of text."""
    _check_spool(spool)
    try:
        queue = Queue(spool, read_only=True)
        try:
            counts = queue.counts()
            problems = queue.recent_problems()
        finally:
            queue.close()
    except sqlite3.DatabaseError as error:
        raise UsageError(
            f"{spool / DATABASE_FILE}: not a node queue that can be read ({error})"
        ) from None
    lines = [f"spool {spool}", "series: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    if problems:
        lines.append("latest problems:")
        for series_uid, where, reason, when in problems:
            stamp = datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"  {stamp} {series_uid} {where}: {reason}")
    return "\n".join(lines)


def forget_series(spool: Path, series_uid: str) -> None:
    """Remove a series from the queue (its rows, instances and deliveries) and its data from
    the spool. Sent again, it is received, made and delivered as a new series. Refused while
    the node processes it."""
    if not is_uid(series_uid):
        raise UsageError(f"{series_uid!r} is not a Series Instance UID")
    _check_spool(spool)
    queue = Queue(spool)
    try:
        queue.forget(series_uid)
    finally:
        queue.close()
    # min_free_mb 0: forgetting frees space, whatever is left.
    Spool(spool, min_free_mb=0).purge(series_uid)
