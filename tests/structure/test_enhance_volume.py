"""`enhance_volume`: the 2D operator on every plane perpendicular to an axis of a real CT
volume, in blocks, gives exactly the map of each plane alone."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paths import EXAMPLES

from thinct.errors import InputError, UsageError
from thinct.io import read_volume
from thinct.structure import enhance, enhance_volume, lung_window, planes


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """A (slices, rows, columns) part of the shipped thin crop on the lung window's scale."""
    hu = read_volume(EXAMPLES / "lidc0002_crop_1.25mm.nii.gz").array
    return lung_window(hu[20:30, 60:100, 50:94])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_each_axis_gives_the_map_of_each_plane(volume, axis):
    result = enhance_volume(volume, axis=axis)
    assert result.shape == volume.shape and result.dtype == np.float32
    for index in range(volume.shape[axis]):
        plane = np.take(volume, index, axis=axis)
        np.testing.assert_allclose(np.take(result, index, axis=axis), enhance(plane), atol=1e-5)


def test_blocks_do_not_change_the_map(volume, monkeypatch):
    whole = enhance_volume(volume, axis=1)
    monkeypatch.setattr(planes, "BLOCK_PIXELS", 3 * volume.shape[0] * volume.shape[2])
    np.testing.assert_allclose(enhance_volume(volume, axis=1), whole, atol=1e-5)


def test_options_reach_the_operator(volume):
    np.testing.assert_allclose(
        enhance_volume(volume, scales=(2.0,), k1=1.0, edge=2.0)[3],
        enhance(volume[3], scales=(2.0,), k1=1.0, edge=2.0),
        atol=1e-5,
    )


def test_bad_volumes_are_one_clear_error(volume):
    with pytest.raises(UsageError, match="volume must be a 3D array"):
        enhance_volume(volume[0])
    with pytest.raises(UsageError, match="axis must be 0, 1 or 2"):
        enhance_volume(volume, axis=3)
    broken = volume.copy()
    broken[4, 5, 6] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        enhance_volume(broken)
