"""The node's job queue: one SQLite database in the spool (write-ahead log, so the receiving
threads, the worker and `thinct serve status` can read and write it at once), with one row per
series and one per delivery of a result to a destination.

A series moves through these states::

    received -> waiting -> processing -> sending -> sent
                   \\-> ignored (not a series to process)      \\-> failed (after max attempts)

A restart finds every row where it was left; a series that was ``processing`` when the node
died goes back to ``waiting`` and counts the attempt. A series is processed once: instances that
arrive after its processing started are acknowledged and not stored (see docs/dicom-node.md).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATABASE_FILE = "queue.sqlite3"
STATES = ("received", "waiting", "processing", "sending", "sent", "ignored", "failed")
# States in which a series takes no more instances.
CLOSED_STATES = ("processing", "sending", "sent", "ignored", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    instances INTEGER NOT NULL DEFAULT 0,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    output TEXT NOT NULL DEFAULT '',
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
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (series_uid, destination)
);
"""


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    state: str
    instances: int
    last_received: float
    attempts: int
    reason: str
    output: str
    updated: float


@dataclass(frozen=True)
class DeliveryRow:
    series_uid: str
    destination: str
    state: str
    attempts: int
    next_try: float
    reason: str


class Queue:
    """The queue of one spool. Every method is one transaction, safe from any thread."""

    def __init__(self, spool: Path) -> None:
        spool.mkdir(parents=True, exist_ok=True)
        self.path = spool / DATABASE_FILE
        self._lock = threading.Lock()
        # Held while an instance is checked, stored and counted, and while a series is judged
        # complete or taken for processing: an instance either joins a series before its
        # processing starts, or is not kept at all.
        self.intake = threading.Lock()
        self._connection = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    # --- receiving ---------------------------------------------------------------------

    def state_of(self, series_uid: str) -> str | None:
        with self._transaction() as db:
            row = db.execute("SELECT state FROM series WHERE series_uid=?", (series_uid,))
            found = row.fetchone()
        return None if found is None else str(found[0])

    def add_instance(self, series_uid: str, sop_uid: str) -> None:
        """Count a stored instance (a re-sent one once) and reopen a waiting series: it was
        not complete after all. The caller holds `intake` and checked that the series is not
        closed."""
        now = time.time()
        with self._transaction() as db:
            found = db.execute("SELECT state FROM series WHERE series_uid=?", (series_uid,))
            if found.fetchone() is None:
                db.execute(
                    "INSERT INTO series (series_uid, state, first_received, last_received,"
                    " updated) VALUES (?, 'received', ?, ?, ?)",
                    (series_uid, now, now, now),
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

    def ignore(self, series_uid: str, reason: str) -> bool:
        """Mark a series as not to be processed; False if it was already marked."""
        now = time.time()
        with self._transaction() as db:
            found = db.execute("SELECT state FROM series WHERE series_uid=?", (series_uid,))
            row = found.fetchone()
            if row is not None and row[0] == "ignored":
                return False
            db.execute(
                "INSERT INTO series (series_uid, state, first_received, last_received, updated,"
                " reason) VALUES (?, 'ignored', ?, ?, ?, ?) ON CONFLICT(series_uid) DO UPDATE"
                " SET state='ignored', reason=excluded.reason, updated=excluded.updated",
                (series_uid, now, now, now, reason),
            )
        return True

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

    def complete_series(self, quiet_period: float) -> list[str]:
        """Series that received nothing for ``quiet_period`` seconds, oldest first."""
        cutoff = time.time() - quiet_period
        with self._transaction() as db:
            rows = db.execute(
                "SELECT series_uid FROM series WHERE state='received' AND last_received<=?"
                " ORDER BY last_received",
                (cutoff,),
            )
            return [str(uid) for (uid,) in rows.fetchall()]

    def set_waiting(self, series_uid: str) -> None:
        self._set(series_uid, "waiting", only_from="received")

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

    def processed(self, series_uid: str, output: str, destinations: list[str]) -> None:
        """The result is in the spool: one pending delivery per destination."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE series SET state='sending', output=?, reason='', updated=?"
                " WHERE series_uid=?",
                (output, now, series_uid),
            )
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (series_uid, destination, state, next_try)"
                " VALUES (?, ?, 'pending', ?)",
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

    def requeue(self, series_uid: str) -> None:
        """A job stopped by a shutdown: it waits again, and the attempt does not count."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE series SET state='waiting', attempts=MAX(attempts-1, 0), updated=?"
                " WHERE series_uid=?",
                (now, series_uid),
            )

    # --- delivering ---------------------------------------------------------------------

    def due_deliveries(self) -> list[DeliveryRow]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT series_uid, destination, state, attempts, next_try, reason"
                " FROM deliveries WHERE state='pending' AND next_try<=? ORDER BY next_try",
                (time.time(),),
            )
            return [DeliveryRow(*row) for row in rows.fetchall()]

    def delivered(self, series_uid: str, destination: str) -> None:
        """One destination acknowledged the result; the series is ``sent`` once all have."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET state='delivered', attempts=attempts+1, reason=''"
                " WHERE series_uid=? AND destination=?",
                (series_uid, destination),
            )
            pending = db.execute(
                "SELECT COUNT(*) FROM deliveries WHERE series_uid=? AND state='pending'",
                (series_uid,),
            ).fetchone()[0]
            if not pending:
                db.execute(
                    "UPDATE series SET state='sent', updated=? WHERE series_uid=?",
                    (now, series_uid),
                )

    def delivery_failed(self, series_uid: str, destination: str, reason: str, wait: float) -> int:
        """A failed send, tried again after ``wait`` seconds; returns the attempts so far."""
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET attempts=attempts+1, next_try=?, reason=?"
                " WHERE series_uid=? AND destination=?",
                (time.time() + wait, reason, series_uid, destination),
            )
            return int(
                db.execute(
                    "SELECT attempts FROM deliveries WHERE series_uid=? AND destination=?",
                    (series_uid, destination),
                ).fetchone()[0]
            )

    # --- housekeeping and reports --------------------------------------------------------

    def expired(self, retention_hours: float) -> list[str]:
        """Finished series whose spool data is older than the retention and still there."""
        cutoff = time.time() - retention_hours * 3600
        with self._transaction() as db:
            rows = db.execute(
                "SELECT series_uid FROM series WHERE state IN ('sent', 'ignored', 'failed')"
                " AND purged=0 AND updated<=?",
                (cutoff,),
            )
            return [str(uid) for (uid,) in rows.fetchall()]

    def purged(self, series_uid: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE series SET purged=1 WHERE series_uid=?", (series_uid,))
            db.execute("DELETE FROM instances WHERE series_uid=?", (series_uid,))

    def counts(self) -> dict[str, int]:
        with self._transaction() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM series GROUP BY state").fetchall()
        found = {str(state): int(count) for state, count in rows}
        return {state: found.get(state, 0) for state in STATES}

    def series(self, series_uid: str) -> SeriesRow | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT series_uid, state, instances, last_received, attempts, reason, output,"
                " updated FROM series WHERE series_uid=?",
                (series_uid,),
            ).fetchone()
        return None if row is None else SeriesRow(*row)

    def recent_problems(self, limit: int = 10) -> list[tuple[str, str, str, float]]:
        """The latest reasons (series, state or destination, reason, time), newest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT series_uid, state, reason, updated FROM series WHERE reason!=''"
                " AND state IN ('failed', 'waiting', 'ignored')"
                " UNION ALL SELECT d.series_uid, 'sending to ' || d.destination, d.reason,"
                " s.updated FROM deliveries d JOIN series s USING (series_uid)"
                " WHERE d.state='pending' AND d.reason!='' ORDER BY 4 DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]

    def _set(self, series_uid: str, state: str, only_from: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE series SET state=?, updated=? WHERE series_uid=? AND state=?",
                (state, time.time(), series_uid, only_from),
            )
