"""The spool: the node's folder on disk. What it receives is there before the sender hears
"stored", and what it makes stays there until every destination has acknowledged it.

Layout (UIDs as folder and file names; a UID is digits and dots only, which is checked, so no
name from the network can point outside the spool)::

    SPOOL/queue.sqlite3                     the job queue (`thinct.node.database`)
    SPOOL/incoming/SERIES_UID/SOP_UID.dcm   received instances, one folder per series
    SPOOL/outgoing/SERIES_UID/thin/         the thin series made from it
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
OUTPUT_NAME = "thin"


class SpoolFull(OSError):
    """Too little free space to accept more: the sender is told to try again later."""


def is_uid(text: str) -> bool:
    """A DICOM UID: at most 64 characters of digits and dots."""
    return len(text) <= 64 and _UID.fullmatch(text) is not None


class Spool:
    """One node's folder: where each series' instances and result live, and the free space
    below which nothing more is taken in."""

    def __init__(self, root: Path, min_free_mb: float) -> None:
        self.root = root
        self.min_free_bytes = int(min_free_mb * 1024 * 1024)
        # Patient data: a spool the node creates is for its own user only.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.incoming = root / "incoming"
        self.outgoing = root / "outgoing"
        for folder in (self.incoming, self.outgoing):
            folder.mkdir(parents=True, exist_ok=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def series_folder(self, series_uid: str) -> Path:
        return self.incoming / series_uid

    def output_folder(self, series_uid: str) -> Path:
        return self.outgoing / series_uid / OUTPUT_NAME

    def store(self, series_uid: str, sop_uid: str, encoded: bytes) -> Path:
        """Write one instance durably: a temporary file, flushed to disk, renamed into place,
        and the folder's entry flushed too, so that a power cut after "stored" loses nothing.

        Raises `SpoolFull` when the write would leave less than the reserve free, and OSError
        when the disk refuses it (the caller answers with a failure status either way).
        """
        if self.free_bytes() - len(encoded) < self.min_free_bytes:
            raise SpoolFull(f"less than {self.min_free_bytes // 2**20} MiB free in {self.root}")
        folder = self.series_folder(series_uid)
        folder.mkdir(exist_ok=True)
        target = folder / f"{sop_uid}.dcm"
        handle, temporary = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(encoded)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _sync_folder(folder)
        return target

    def remove_partial_files(self) -> int:
        """Temporary files of writes a crash interrupted (never acknowledged): removed at
        start-up. Returns how many."""
        removed = 0
        for part in self.incoming.glob("*/.*.part"):
            part.unlink(missing_ok=True)
            removed += 1
        return removed

    def purge(self, series_uid: str) -> None:
        """Delete a finished series' data (received and made) from the spool."""
        shutil.rmtree(self.series_folder(series_uid), ignore_errors=True)
        shutil.rmtree(self.outgoing / series_uid, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
