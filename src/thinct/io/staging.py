"""The hidden staging folders in which outputs are written before they are moved into place,
and the removal of those that a killed process left behind.

A staging folder is named ``.PID.HOST.TOKEN`` + `STAGING_SUFFIX`: the process that made it,
a short digest of where that process number means something (the machine's name and its
process namespace: containers on one host number their processes each their own way), and a
random token. The name is short and bounded whatever the output's name (an output name near
the system's 255-byte limit still leaves room for it), and it says who owns the folder.

A process killed outright (SIGKILL, the out-of-memory killer) cannot remove its staging
folder, which can hold a whole scan; the next write into the same folder removes it, but only
when it is surely abandoned: made on this machine (an output folder on a network file system
may be shared by several machines, whose process numbers mean nothing here) by a process that
no longer runs. Folders of live processes, of other machines, and names that do not parse are
never touched.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

# Whatever walks output folders (batch discovery) recognises a staging folder by this ending.
STAGING_SUFFIX = ".thinct-tmp"


@dataclass(frozen=True)
class Abandoned:
    """A staging folder removed because its process is gone: where it was, and its size."""

    path: Path
    size: int


def _host() -> str:
    """This machine and process namespace, as 8 hexadecimal digits (a host name alone can be
    64 characters long, and containers sharing the host's name may share an output folder)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux
        namespace = ""
    where = f"{socket.gethostname()}/{namespace}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def make_staging(parent: Path) -> Path:
    """A new, empty staging folder in ``parent``, owned by this process."""
    while True:
        path = parent / f".{os.getpid()}.{_host()}.{secrets.token_hex(4)}{STAGING_SUFFIX}"
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:  # the same token twice: draw another
            continue


def _owner(name: str) -> tuple[int, str] | None:
    """The process number and host digest in a staging folder's name, or None for a name
    this module did not make."""
    if not name.startswith(".") or not name.endswith(STAGING_SUFFIX):
        return None
    parts = name[1 : -len(STAGING_SUFFIX)].split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1]


def _running(pid: int) -> bool:
    """Whether a process with this number exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def remove_abandoned(parent: Path) -> list[Abandoned]:
    """Remove the staging folders in ``parent`` whose process has ended on this machine, and
    say which (nothing when ``parent`` cannot be listed)."""
    host = _host()
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        owner = _owner(entry.name)
        if owner is None or owner[1] != host or _running(owner[0]):
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        size = _size(path)
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(Abandoned(path, size))
    return removed
