"""Files that appear whole or not at all: written under a hidden name beside their
destination, then renamed into place (an interruption leaves the old file, never half a new
one). Volumes have their own, format-aware path in `thinct.io.writing`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from thinct.errors import OutputError


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a hidden staging path to write to; on success it replaces ``path``.

    The parent folder is created; a failure to write or rename is one `OutputError` line, and
    the staging file never stays behind.
    """
    path = Path(path)
    staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield staged
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write {path} ({error.strerror or error})") from None


def write_text(path: str | Path, text: str) -> None:
    """Replace a UTF-8 text file whole."""
    with replacing(path) as staged:
        staged.write_text(text, encoding="utf-8")
