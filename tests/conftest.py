"""Shared fixtures: the shipped example scans and a small CT-like array. Helpers that tests
import (paths, synthetic volumes, command runners) live in tests/helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import EXAMPLES

# napari's widgets render off screen; its OpenGL canvas still needs the X display that
# pytest-xvfb starts. Set before any test module creates a QApplication.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def example_thin() -> Path:
    """Real thin CT: a 192 x 192 x 64 crop of LIDC-IDRI-0002 at 0.68 x 0.68 x 1.25 mm."""
    return EXAMPLES / "lidc0002_crop_1.25mm.nii.gz"


@pytest.fixture(scope="session")
def example_thick() -> Path:
    """The same crop with 5 mm slices simulated by boxcar averaging (192 x 192 x 16)."""
    return EXAMPLES / "lidc0002_crop_5mm.nii.gz"


@pytest.fixture
def ct_like() -> np.ndarray:
    """A small (z, y, x) int16 array with air, soft tissue and bone, varying along z."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[0:12, 0:40, 0:48]
    body = ((y - 20) ** 2 / 18**2 + (x - 24) ** 2 / 22**2) < 1
    values = np.where(body, 40.0, -1000.0) + 300.0 * np.sin(z / 2.0) * body
    values += rng.normal(0, 10, values.shape)
    return values.astype(np.int16)
