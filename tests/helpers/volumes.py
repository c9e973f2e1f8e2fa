"""Small synthetic volumes with chosen geometry, and the voxels thinct reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from thinct.io import read_volume


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
