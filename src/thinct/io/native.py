"""Keep messages that ITK, GDCM and MetaIO print straight to the C++ error stream out of the
terminal, so that a bad file produces thinct's one-line error rather than a page of C++
diagnostics. The text is kept and used to explain the failure."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# The "ITK ERROR: GDCMImageIO(0x55d0c3a1b2c0): " prefix of ITK messages names a C++ object.
_ITK_PREFIX = re.compile(r"^ITK ERROR: \w+\(0x[0-9a-fA-F]+\): ")


@dataclass
class CapturedText:
    text: str = ""


@contextmanager
def native_stderr_captured() -> Iterator[CapturedText]:
    """Redirect file descriptor 2 into a temporary file for the duration of the block."""
    captured = CapturedText()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")


def first_reason(message: str) -> str:
    """The informative line of an ITK exception text (its last non-empty line, no paths).

    Indented lines continue the line above (MetaIO prints "data not read completely" and then
    the byte counts on an indented line), so they are kept with it.
    """
    lines: list[str] = []
    for raw in message.splitlines():
        if not raw.strip():
            continue
        if raw[:1].isspace() and lines:
            lines[-1] = f"{lines[-1]} {raw.strip()}"
        else:
            lines.append(raw.strip())
    for line in reversed(lines):
        if "sitk::ERROR:" in line:
            return line.split("sitk::ERROR:", 1)[1].strip()
    return _ITK_PREFIX.sub("", lines[-1]) if lines else "unknown error"
