"""What a clean thinct error looks like to a user."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinct.errors import ThinctError


def assert_clean_error(error: pytest.ExceptionInfo, path: Path | str) -> None:
    """A thinct error reads as one line and names the file it is about."""
    assert isinstance(error.value, ThinctError)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
