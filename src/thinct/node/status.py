"""`thinct serve status`: what a node's queue holds, read from its database, so that IT can
check a running node (or a stopped one) without touching it."""

from __future__ import annotations

import datetime
from pathlib import Path

from thinct.errors import UsageError
from thinct.node.database import DATABASE_FILE, Queue


def status_report(spool: Path) -> str:
    """Counts per state and the latest problems, as lines of text."""
    if not (spool / DATABASE_FILE).is_file():
        raise UsageError(f"{spool} holds no node queue ({DATABASE_FILE})")
    queue = Queue(spool)
    try:
        counts = queue.counts()
        problems = queue.recent_problems()
    finally:
        queue.close()
    lines = [f"spool {spool}", "series: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    if problems:
        lines.append("latest problems:")
        for series_uid, where, reason, when in problems:
            stamp = datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"  {stamp} {series_uid} {where}: {reason}")
    return "\n".join(lines)
