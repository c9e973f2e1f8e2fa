"""`thinct.resample.interpolation.refine_in_plane`: the pixels of every slice refined with a
classical interpolator, on the exact refined grid, close to a smooth function sampled there,
and the same as one 3D interpolation when slices and pixels are both refined."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import DIRECTIONS, make_image

from thinct import upsample_volume
from thinct.errors import Cancelled, UsageError
from thinct.geometry import Grid, in_plane_grid, thin_grid
from thinct.resample.interpolation import METHODS, refine_in_plane
from thinct.volume import Volume


def smooth(world: np.ndarray) -> np.ndarray:
    """A smooth HU-like field of world position (mm): features tens of mm wide."""
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    return 300.0 * np.sin(x / 6.0) + 200.0 * np.cos(y / 7.0) + 4.0 * z


def sampled(grid: Grid, function=smooth) -> np.ndarray:
    """``function`` at the centres of the grid's voxels, as a (z, y, x) array."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in grid.size], indexing="ij"), axis=-1)
    return np.transpose(function(grid.index_to_world(index)), (2, 1, 0))


def smooth_scan(axis: int = 2, direction_name: str = "oblique") -> Volume:
    """40 x 36 pixels of 0.7 mm, 6 slices of 5 mm along ``axis``, holding `smooth`."""
    size, spacing = [40, 36, 40], [0.7, 0.7, 0.7]
    size[axis], spacing[axis] = 6, 5.0
    empty = make_image(
        np.zeros(size[::-1], np.float32), spacing, direction=DIRECTIONS[direction_name]
    )
    image = make_image(
        sampled(Grid.of(empty)).astype(np.float32), spacing, direction=DIRECTIONS[direction_name]
    )
    return Volume(image, slice_thickness=5.0)


@pytest.mark.parametrize(
    ("method", "tolerance"), [("bspline", 0.05), ("lanczos", 2.0), ("linear", 1.0)]
)
@pytest.mark.parametrize("axis", [2, 0])
def test_x2_is_close_to_the_function_away_from_the_border(method, tolerance, axis):
    """Six input pixels from the border the boundary condition no longer matters; B-spline is
    then within a twentieth of a HU of the function (amplitude 500 HU)."""
    volume = smooth_scan(axis)
    grid = in_plane_grid(Grid.of(volume.image), axis, in_plane=2)
    result = refine_in_plane(volume, grid, axis, method)
    assert Grid.of(result.image) == grid
    assert result.image.GetPixelID() == sitk.sitkFloat32
    error = np.abs(sitk.GetArrayViewFromImage(result.image) - sampled(grid))
    inner = np.moveaxis(error, 2 - axis, 0)[:, 12:-12, 12:-12]
    assert inner.max() < tolerance
    assert error.max() < 30.0  # the border too stays close: no default value, no ringing
    assert result.slice_thickness == 5.0


def test_nearest_repeats_each_pixel_factor_by_factor():
    volume = smooth_scan(direction_name="flipped")
    grid = in_plane_grid(Grid.of(volume.image), 2, in_plane=3)
    result = sitk.GetArrayFromImage(refine_in_plane(volume, grid, 2, "nearest").image)
    expected = np.repeat(np.repeat(volume.array, 3, axis=1), 3, axis=2)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("method", ["linear", "bspline", "lanczos"])
def test_an_odd_factor_keeps_the_input_pixels_where_centres_coincide(method):
    volume = smooth_scan(direction_name="axis-aligned")
    grid = in_plane_grid(Grid.of(volume.image), 2, in_plane=3)
    result = sitk.GetArrayFromImage(refine_in_plane(volume, grid, 2, method).image)
    np.testing.assert_allclose(result[:, 1::3, 1::3], volume.array, atol=1e-2)


@pytest.mark.parametrize("align", ["edges", "centers"])
@pytest.mark.parametrize("direction_name", sorted(DIRECTIONS))
def test_slices_then_pixels_is_one_trilinear_interpolation(align, direction_name):
    """Linear interpolation is separable: refining the slices, then the pixels gives what one
    3D linear resampling onto the final grid gives."""
    volume = smooth_scan(direction_name=direction_name)
    thin = thin_grid(Grid.of(volume.image), spacing=1.0, align=align, in_plane=2)
    result = upsample_volume(volume, "linear", spacing=1.0, align=align, in_plane=2)
    assert Grid.of(result.image) == thin.output
    resampler = sitk.ResampleImageFilter()
    thin.output.apply_to(resampler)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    direct = sitk.GetArrayFromImage(resampler.Execute(volume.image))
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(result.image), direct, atol=1e-2)


def test_a_target_spacing_lands_on_its_grid_and_close_to_the_function():
    volume = smooth_scan()
    grid = in_plane_grid(Grid.of(volume.image), 2, in_plane_spacing=0.3)
    result = refine_in_plane(volume, grid, 2, "bspline")
    assert Grid.of(result.image) == grid
    error = np.abs(sitk.GetArrayViewFromImage(result.image) - sampled(grid))
    assert error[:, 12:-12, 12:-12].max() < 0.05


def test_unknown_method_is_a_usage_error():
    volume = smooth_scan()
    grid = in_plane_grid(Grid.of(volume.image), 2, in_plane=2)
    with pytest.raises(UsageError, match="unknown method 'cubic'"):
        refine_in_plane(volume, grid, 2, "cubic")
    assert "bspline" in METHODS


def test_progress_reaches_one_and_cancel_stops_between_slices():
    volume = smooth_scan()
    grid = in_plane_grid(Grid.of(volume.image), 2, in_plane=2)
    heard: list[float] = []
    refine_in_plane(volume, grid, 2, "linear", progress=heard.append)
    assert heard == pytest.approx([(k + 1) / 6 for k in range(6)])
    polls: list[int] = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(Cancelled):
        refine_in_plane(volume, grid, 2, "linear", cancel=cancel)
    assert len(polls) == 3
