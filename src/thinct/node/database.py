"""The node's job queue: one SQLite database in the spool (write-ahead log, so the receiving
threads, the worker and `thinct serve status` can read and write it at once), with one row per
series and one per delivery of a result to a destination.

A series moves through these states::

    received   -> waiting     quiet for the quiet period, and selected
    received   -> ignored     quiet and not selected (or not CT from its first instance on)
    received   -> failed      it could not be judged at all (a bug, logged with its traceback)
    waiting    -> received    another instance arrived: it was not complete after all
    waiting    -> processing  taken by the worker, one attempt more
    processing -> sending     made; a delivery per destination is pending
    processing -> waiting     an attempt failed and may be tried again; or a full disk, a
                              shutdown or a crash interrupted it
    processing -> failed      the input cannot be processed, or the last attempt failed
    sending    -> sent        every delivery is done (or abandoned: destination removed)

A restart finds every row where it was left; a series that was ``processing`` when the node
died goes back to ``waiting`` and counts the attempt. A series is processed once: instances that
arrive after its processing started are acknowledged and not stored; `Queue.forget` removes a
series so that, sent again, it is made again (see docs/dicom-node.md).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from thinct.errors import UsageError

DATABASE_FILE = "queue.sqlite3"
STATES = ("received", "waiting", "processing", "sending", "sent", "ignored", "failed")
# States in which a series takes no more instances.
CLOSED_STATES = ("processing", "sending", "sent", "ignored", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    instances INTEGER NOT NULL DEFAULT 0,
    last_received REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    purged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    series_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL,
    last_try REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (series_uid, destination)
);
"""


@dataclass(frozen=True)
class SeriesRow:
    """What the worker and the reports read of one series."""

    series_uid: str
    state: str
    instances: int
    attempts: int  # processing attempts so far (a crash counts, a shutdown does not)
    reason: str  # why it was ignored, failed, or waits again; empty otherwise


@dataclass(frozen=True)
class DeliveryRow:
    """One pending send of a series' result to one destination (as given in the settings)."""

    series_uid: str
    destination: str
    attempts: int  # failed sends so far: the next wait doubles with each


class Queue:
    """The queue of one spool. Every method is one transaction, safe from any thread.

    ``read_only`` opens an existing queue for reading only (`thinct serve status`): it changes
    nothing in the spool, even beside a running node; its writing methods fail.
    """

    def __init__(self, spool: Path, *, read_only: bool = False) -> None:
        self.path = spool / DATABASE_FILE
        self._lock = threading.Lock()
        # Held while an instance is checked, stored and counted, and while a series is marked
        # complete or taken for processing: an instance either joins a series before its
        # processing starts, or is not kept at all. `close` takes it too, so that the
        # database never closes under a store in progress.
        self.intake = threading.Lock()
        self.closed = False
        if read_only:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._connection = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30
            )
            return
        spool.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.executescript(_SCHEMA)

    def close(self) -> None:
        with self.intake, self._lock:
            self._connection.close()
            self.closed = True

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a writing one takes the database's write lock at once, so that
        what it reads cannot change before it writes."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    # --- receiving ---------------------------------------------------------------------

    def state_of(self, series_uid: str) -> str | None:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT state FROM series WHERE series_uid=?", (series_uid,))
            found = row.fetchone()
        return None if found is None else str(found[0])

    def add_instance(self, series_uid: str, sop_uid: str) -> None:
        """Count a stored instance (a re-sent one once) and reopen a waiting series: it was
        not complete after all. The caller holds `intake` and checked that the series is not
        closed."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO series (series_uid, state, last_received, updated)"
                " VALUES (?, 'received', ?, ?)",
                (series_uid, now, now),
            )
            db.execute(
                "INSERT OR IGNORE INTO instances (sop_uid, series_uid) VALUES (?, ?)",
                (sop_uid, series_uid),
            )
            count = db.execute(
                "SELECT COUNT(*) FROM instances WHERE series_uid=?", (series_uid,)
            ).fetchone()[0]
            db.execute(
                "UPDATE series SET state='received', instances=?, last_received=?, updated=?"
                " WHERE series_uid=?",
                (count, now, now, series_uid),
            )

    def ignore_new(self, series_uid: str, reason: str) -> bool:
        """Enter a series unknown so far as ignored (its first instance is not CT); False,
        changing nothing, when the series is known already (a stray instance of another class
        in a CT series must not close it)."""
        now = time.time()
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT INTO series (series_uid, state, last_received, updated, reason)"
                " VALUES (?, 'ignored', ?, ?, ?) ON CONFLICT(series_uid) DO NOTHING",
                (series_uid, now, now, reason),
            )
            return inserted.rowcount == 1

    # --- the worker ---------------------------------------------------------------------

    def requeue_interrupted(self, max_attempts: int) -> list[str]:
        """After a restart: series left ``processing`` wait again, or fail after too many
        attempts. Returns the requeued UIDs."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute("SELECT series_uid, attempts FROM series WHERE state='processing'")
            interrupted = rows.fetchall()
            requeued = []
            for uid, attempts in interrupted:
                if attempts >= max_attempts:
                    reason = f"interrupted {attempts} times while processing"
                    db.execute(
                        "UPDATE series SET state='failed', reason=?, updated=? WHERE series_uid=?",
                        (reason, now, uid),
                    )
                else:
                    db.execute(
                        "UPDATE series SET state='waiting', updated=? WHERE series_uid=?",
                        (now, uid),
                    )
                    requeued.append(uid)
        return requeued

    def complete_series(self, before: float) -> list[str]:
        """Series still receiving whose last instance arrived at or before ``before`` (a
        time.time()), oldest first."""
        return self._series_uids(
            "state='received' AND last_received<=? ORDER BY last_received", before
        )

    def set_waiting(self, series_uid: str, before: float) -> bool:
        """Queue a series judged complete, unless an instance arrived after ``before`` (the
        judgement then missed it: the series is judged again once quiet). Whether it was
        queued."""
        return self._judged(series_uid, "waiting", "", before)

    def set_ignored(self, series_uid: str, reason: str, before: float) -> bool:
        """Ignore a series judged not to be processed, on the terms of `set_waiting`."""
        return self._judged(series_uid, "ignored", reason, before)

    def _judged(self, series_uid: str, state: str, reason: str, before: float) -> bool:
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE series SET state=?, reason=?, updated=? WHERE series_uid=?"
                " AND state='received' AND last_received<=?",
                (state, reason, time.time(), series_uid, before),
            )
            return changed.rowcount == 1

    def take_next(self) -> str | None:
        """The oldest waiting series, now ``processing`` with one more attempt."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT series_uid FROM series WHERE state='waiting' ORDER BY last_received LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE series SET state='processing', attempts=attempts+1, updated=?"
                " WHERE series_uid=?",
                (now, row[0]),
            )
        return str(row[0])

    def processed(self, series_uid: str, destinations: list[str]) -> None:
        """The result is in the spool: a pending delivery per destination, from scratch also
        where an earlier result of the series went out already (it was made again)."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE series SET state='sending', reason='', updated=? WHERE series_uid=?",
                (now, series_uid),
            )
            db.executemany(
                "INSERT INTO deliveries (series_uid, destination, state, next_try)"
                " VALUES (?, ?, 'pending', ?) ON CONFLICT(series_uid, destination) DO UPDATE"
                " SET state='pending', attempts=0, next_try=excluded.next_try, last_try=0,"
                " reason=''",
                [(series_uid, destination, now) for destination in destinations],
            )

    def processing_failed(self, series_uid: str, reason: str, max_attempts: int) -> str:
        """A failed attempt: wait for another, or ``failed`` after ``max_attempts``. Returns
        the new state."""
        now = time.time()
        with self._transaction() as db:
            attempts = db.execute(
                "SELECT attempts FROM series WHERE series_uid=?", (series_uid,)
            ).fetchone()[0]
            state = "failed" if attempts >= max_attempts else "waiting"
            db.execute(
                "UPDATE series SET state=?, reason=?, updated=? WHERE series_uid=?",
                (state, reason, now, series_uid),
            )
        return state

    def fail(self, series_uid: str, reason: str) -> None:
        """Give a series up at once: trying again would fail the same way."""
        with self._transaction() as db:
            db.execute(
                "UPDATE series SET state='failed', reason=?, updated=? WHERE series_uid=?",
                (reason, time.time(), series_uid),
            )

    def requeue(self, series_uid: str, reason: str = "") -> None:
        """A job stopped by a shutdown or a full disk: it waits again, and the attempt does
        not count."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE series SET state='waiting', attempts=MAX(attempts-1, 0), reason=?,"
                " updated=? WHERE series_uid=?",
                (reason, now, series_uid),
            )

    # --- delivering ---------------------------------------------------------------------

    def due_deliveries(self) -> list[DeliveryRow]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT series_uid, destination, attempts FROM deliveries"
                " WHERE state='pending' AND next_try<=? ORDER BY next_try",
                (time.time(),),
            )
            return [DeliveryRow(*row) for row in rows.fetchall()]

    def delivered(self, series_uid: str, destination: str) -> None:
        """One destination acknowledged the result; the series is ``sent`` once all have."""
        self._delivery_done(series_uid, destination, "delivered", "", tries=1)

    def abandon_delivery(self, series_uid: str, destination: str, reason: str) -> None:
        """A delivery that can never happen (its destination left the settings): done with
        it as if delivered, the reason kept."""
        self._delivery_done(series_uid, destination, "abandoned", reason, tries=0)

    def _delivery_done(
        self, series_uid: str, destination: str, state: str, reason: str, tries: int
    ) -> None:
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET state=?, attempts=attempts+?, last_try=?, reason=?"
                " WHERE series_uid=? AND destination=?",
                (state, tries, now, reason, series_uid, destination),
            )
            pending = db.execute(
                "SELECT COUNT(*) FROM deliveries WHERE series_uid=? AND state='pending'",
                (series_uid,),
            ).fetchone()[0]
            if not pending:
                db.execute(
                    "UPDATE series SET state='sent', updated=? WHERE series_uid=?"
                    " AND state='sending'",
                    (now, series_uid),
                )

    def delivery_failed(self, series_uid: str, destination: str, reason: str, wait: float) -> int:
        """A failed send, tried again after ``wait`` seconds; returns the attempts so far (0
        when the delivery is gone: the series was forgotten meanwhile)."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET attempts=attempts+1, next_try=?, last_try=?, reason=?"
                " WHERE series_uid=? AND destination=?",
                (now + wait, now, reason, series_uid, destination),
            )
            row = db.execute(
                "SELECT attempts FROM deliveries WHERE series_uid=? AND destination=?",
                (series_uid, destination),
            ).fetchone()
        return 0 if row is None else int(row[0])

    # --- housekeeping and reports --------------------------------------------------------

    def expired(self, retention_hours: float) -> list[str]:
        """Finished series whose spool data is older than the retention and still there."""
        cutoff = time.time() - retention_hours * 3600
        return self._series_uids(
            "state IN ('sent', 'ignored', 'failed') AND purged=0 AND updated<=?", cutoff
        )

    def _series_uids(self, condition: str, *values: object) -> list[str]:
        """The UIDs of the series that meet an SQL condition (with its ``?`` values)."""
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT series_uid FROM series WHERE {condition}", values)
            return [str(uid) for (uid,) in rows.fetchall()]

    def purged(self, series_uid: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE series SET purged=1 WHERE series_uid=?", (series_uid,))
            db.execute("DELETE FROM instances WHERE series_uid=?", (series_uid,))

    def forget(self, series_uid: str) -> None:
        """Remove every row of a series, so that the node takes it as new when it is sent
        again. Refused while the series is being processed (by a running node, or by one that
        stopped in the middle and will take it up again)."""
        with self._transaction() as db:
            found = db.execute("SELECT state FROM series WHERE series_uid=?", (series_uid,))
            row = found.fetchone()
            if row is None:
                raise UsageError(f"no series {series_uid} in the queue of {self.path.parent}")
            if row[0] == "processing":
                raise UsageError(
                    f"series {series_uid} is being processed; forget it once it is finished"
                )
            db.execute("DELETE FROM series WHERE series_uid=?", (series_uid,))
            db.execute("DELETE FROM instances WHERE series_uid=?", (series_uid,))
            db.execute("DELETE FROM deliveries WHERE series_uid=?", (series_uid,))

    def counts(self) -> dict[str, int]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT state, COUNT(*) FROM series GROUP BY state").fetchall()
        found = {str(state): int(count) for state, count in rows}
        return {state: found.get(state, 0) for state in STATES}

    def series(self, series_uid: str) -> SeriesRow | None:
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT series_uid, state, instances, attempts, reason FROM series"
                " WHERE series_uid=?",
                (series_uid,),
            ).fetchone()
        return None if row is None else SeriesRow(*row)

    def recent_problems(self, limit: int = 10) -> list[tuple[str, str, str, float]]:
        """The latest problems (series, what went wrong where, reason, when), newest first:
        failed series, series waiting again after a failed attempt, and deliveries that
        failed (at their last try) or were abandoned. Ignored series are no problem."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT series_uid, state, reason, updated FROM series WHERE reason!=''"
                " AND state IN ('failed', 'waiting')"
                " UNION ALL SELECT series_uid, CASE state WHEN 'pending' THEN 'sending to '"
                " ELSE 'abandoned sending to ' END || destination, reason, last_try"
                " FROM deliveries WHERE state IN ('pending', 'abandoned') AND reason!=''"
                " ORDER BY 4 DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]
