"""JSON files that users hand to thinct (model configs, dataset descriptions), read with one
kind of error: a file that is missing a character or is not text reads as a one-line
`InputError` naming it, never as a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thinct.errors import InputError


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON: {error}") from None
    except OSError as error:
        raise InputError(f"cannot read {path} ({error.strerror or error})") from None
