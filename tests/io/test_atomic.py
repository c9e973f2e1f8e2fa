"""thinct.io.atomic: a replaced file is whole or untouched, and no staging file stays behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinct.errors import OutputError
from thinct.io.atomic import replacing, write_text


def test_write_text_replaces_the_file_and_leaves_no_staging(tmp_path: Path):
    target = tmp_path / "deeper" / "summary.md"
    write_text(target, "first")
    write_text(target, "second Δ")
    assert target.read_text(encoding="utf-8") == "second Δ"
    assert [p.name for p in target.parent.iterdir()] == ["summary.md"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "log.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as staged:
        staged.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_an_unwritable_place_is_one_output_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        write_text(blocker / "inside.txt", "text")
