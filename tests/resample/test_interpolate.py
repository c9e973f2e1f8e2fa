"""Classical interpolation baselines: the same result as a direct `sitk.Resample` onto a thin
grid built by hand, real values in every slice, and exact thick slices where they coincide."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import DIRECTIONS, make_image

import thinct
from thinct.errors import Cancelled, UsageError
from thinct.geometry import Grid, thin_grid
from thinct.resample.interpolation import METHODS, interpolate, resample_labels
from thinct.volume import Volume

ORIGIN = (-30.0, 20.0, -100.0)
SITK_METHODS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "lanczos": sitk.sitkLanczosWindowedSinc,
}
FILL = -12345.0  # a default value no interpolator produces from the test data


def test_methods_are_the_four_baselines():
    assert set(METHODS) == set(SITK_METHODS)
    assert METHODS == thinct.METHODS


def thick_volume(direction, spacing=(0.7, 0.8, 5.0), shape=(6, 7, 9), seed=0) -> Volume:
    """A random (z, y, x) thick volume with values in [0, 1000]."""
    rng = np.random.default_rng(seed)
    array = rng.uniform(0, 1000, size=shape).astype(np.float32)
    return Volume(make_image(array, spacing=spacing, origin=ORIGIN, direction=direction))


def reference_image(size, spacing, origin, direction) -> sitk.Image:
    image = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in direction])
    return image


def direct_resample(volume: Volume, reference: sitk.Image, method: str) -> np.ndarray:
    result = sitk.Resample(
        volume.image, reference, sitk.Transform(), SITK_METHODS[method], FILL, sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(result)


def hand_thin_reference(volume: Volume, thin: float, align: str) -> sitk.Image:
    """The thin grid of an integer-ratio z stack, from the thick geometry by hand."""
    size = list(volume.image.GetSize())
    spacing = list(volume.image.GetSpacing())
    thick = spacing[2]
    ratio = round(thick / thin)
    n = size[2]
    size[2] = n * ratio if align == "edges" else (n - 1) * ratio + 1
    spacing[2] = thin
    shift = -(thick - thin) / 2 if align == "edges" else 0.0
    slice_dir = np.asarray(volume.image.GetDirection()).reshape(3, 3)[:, 2]
    origin = np.asarray(volume.image.GetOrigin()) + shift * slice_dir
    return reference_image(size, spacing, origin, volume.image.GetDirection())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
@pytest.mark.parametrize("align", ["edges", "centers"])
def test_matches_a_direct_resample(method, direction_name, align):
    volume = thick_volume(DIRECTIONS[direction_name])
    thin = thin_grid(Grid.of(volume.image), factor=5, align=align)
    result = interpolate(volume, thin, method)

    reference = hand_thin_reference(volume, 1.0, align)
    expected = direct_resample(volume, reference, method)
    assert result.image.GetSize() == reference.GetSize()
    assert result.image.GetSpacing() == pytest.approx(reference.GetSpacing())
    assert result.image.GetOrigin() == pytest.approx(reference.GetOrigin())
    assert result.image.GetDirection() == pytest.approx(reference.GetDirection())
    assert result.image.GetPixelID() == sitk.sitkFloat32
    assert result.slice_thickness == pytest.approx(1.0)

    # Every voxel is inside the thick image: no slice is default fill.
    assert not np.any(expected == FILL)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.image), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_every_slice_has_real_values(method, direction_name):
    """Values in every slice, including the edge slices beyond the first and last centre."""
    volume = thick_volume(DIRECTIONS[direction_name], seed=1)
    low, high = float(volume.array.min()), float(volume.array.max())
    thin = thin_grid(Grid.of(volume.image), factor=5, align="edges")
    result = sitk.GetArrayFromImage(interpolate(volume, thin, method).image)
    assert result.shape == (30, 7, 9)
    assert np.isfinite(result).all()
    # The default fill is the volume minimum; a filled slice would be constant.
    for k in range(result.shape[0]):
        assert result[k].std() > 10, f"thin slice {k} is constant"
    if method in ("nearest", "linear"):  # no overshoot: stays within the thick range
        assert result.min() >= low - 1e-3
        assert result.max() <= high + 1e-3


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_non_integer_ratio_matches_a_direct_resample(method, direction_name):
    direction = DIRECTIONS[direction_name]
    volume = thick_volume(direction, spacing=(0.7, 0.8, 3.0), shape=(9, 5, 6), seed=2)
    thin = thin_grid(Grid.of(volume.image), spacing=1.25, align="edges")
    result = interpolate(volume, thin, method)
    # 27 mm / 1.25 = 21 slices, centred: first at -1.5 + 0.375 + 0.625 = -0.5 mm.
    slice_dir = np.asarray(direction).reshape(3, 3)[:, 2]
    reference = reference_image(
        (6, 5, 21), (0.7, 0.8, 1.25), np.asarray(ORIGIN) - 0.5 * slice_dir, direction
    )
    expected = direct_resample(volume, reference, method)
    assert not np.any(expected == FILL)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.image), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_slice_axis_along_x(method):
    direction = DIRECTIONS["oblique"]
    volume = thick_volume(direction, spacing=(5.0, 0.7, 0.7), shape=(4, 5, 6), seed=3)
    thin = thin_grid(Grid.of(volume.image), factor=5, align="edges")
    assert thin.axis == 0
    result = interpolate(volume, thin, method)
    x_dir = np.asarray(direction).reshape(3, 3)[:, 0]
    reference = reference_image(
        (30, 5, 4), (1.0, 0.7, 0.7), np.asarray(ORIGIN) - 2.0 * x_dir, direction
    )
    expected = direct_resample(volume, reference, method)
    assert not np.any(expected == FILL)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.image), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["bspline", "linear"])
def test_example_scan_matches_a_direct_resample(example_thick, method):
    volume = thinct.read_volume(example_thick)
    assert volume.image.GetSize() == (192, 192, 16)
    thin = thin_grid(Grid.of(volume.image), spacing=1.25, align="edges")
    result = interpolate(volume, thin, method)
    reference = hand_thin_reference(volume, 1.25, "edges")
    assert reference.GetSize() == (192, 192, 64)
    # The shipped thin crop starts at z = -264.5 mm: the edges grid lands on it.
    assert reference.GetOrigin()[2] == pytest.approx(-264.5)
    expected = direct_resample(volume, reference, method)
    assert not np.any(expected == FILL)
    assert result.image.GetSize() == (192, 192, 64)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.image), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
@pytest.mark.parametrize("align", ["edges", "centers"])
def test_linear_equals_the_thick_slice_where_they_coincide(direction_name, align):
    volume = thick_volume(DIRECTIONS[direction_name], seed=4)
    thick = volume.array
    thin = thin_grid(Grid.of(volume.image), factor=5, align=align)
    result = sitk.GetArrayFromImage(interpolate(volume, thin, "linear").image)
    offset = 2 if align == "edges" else 0
    for i in range(thick.shape[0]):
        j = offset + 5 * i
        assert thin.source_index[j] == pytest.approx(i)
        np.testing.assert_allclose(result[j], thick[i], rtol=0, atol=1e-3)
    # Between two centres, linear is the weighted mean of its neighbours.
    np.testing.assert_allclose(
        result[offset + 1], 0.8 * thick[0] + 0.2 * thick[1], rtol=0, atol=1e-2
    )


@pytest.mark.parametrize("method", ["nearest", "bspline"])
def test_interpolating_methods_also_reproduce_the_thick_slices(method):
    """Nearest and B-spline interpolation (BIS) pass through the samples too."""
    volume = thick_volume(DIRECTIONS["axis-aligned"], seed=5)
    thin = thin_grid(Grid.of(volume.image), factor=5, align="centers")
    result = sitk.GetArrayFromImage(interpolate(volume, thin, method).image)
    np.testing.assert_allclose(result[::5], volume.array, rtol=0, atol=1e-2)


@pytest.mark.parametrize("method", ["cubic", "Linear", "", "bis"])
def test_unknown_method(method):
    volume = thick_volume(DIRECTIONS["axis-aligned"])
    thin = thin_grid(Grid.of(volume.image), factor=5)
    with pytest.raises(UsageError, match="unknown method"):
        interpolate(volume, thin, method)


@pytest.mark.parametrize("method", METHODS)
def test_progress_reaches_one(method):
    volume = thick_volume(DIRECTIONS["oblique"], seed=6)
    thin = thin_grid(Grid.of(volume.image), factor=5)
    values: list[float] = []
    interpolate(volume, thin, method, progress=values.append)
    assert values, "the progress callback was never called"
    assert all(0.0 <= v <= 1.0 + 1e-6 for v in values)
    assert values[-1] == pytest.approx(1.0, abs=1e-3)


def test_input_is_unchanged_and_provenance_kept():
    volume = thick_volume(DIRECTIONS["flipped"], seed=7)
    volume.dicom_tags["0010|0020"] = "PATIENT"
    before = volume.array.copy()
    thin = thin_grid(Grid.of(volume.image), spacing=1.25)
    result = interpolate(volume, thin, "bspline")
    np.testing.assert_array_equal(volume.array, before)
    assert volume.image.GetSize() == (9, 7, 6)
    assert result.dicom_tags == {"0010|0020": "PATIENT"}
    assert result.slice_thickness == pytest.approx(1.25)


def test_a_thin_grid_too_large_for_the_memory_is_a_memory_error():
    """ITK reports a failed allocation as a generic RuntimeError; it must come out as the
    MemoryError it is (which the CLI reports in one line), with the size it asked for."""
    volume = thick_volume(DIRECTIONS["axis-aligned"])
    thin = thin_grid(Grid.of(volume.image), factor=5)
    huge = replace(thin, grid=replace(thin.grid, size=(100_000, 100_000, 100_000)))
    with pytest.raises(MemoryError, match=r"the 100000 x 100000 x 100000 thin volume needs"):
        interpolate(volume, huge, "linear")


@pytest.mark.parametrize("method", METHODS)
def test_cancel_aborts_the_resampling(method):
    """A Cancel button polls through the progress steps; ITK stops and nothing is returned."""
    volume = thick_volume(DIRECTIONS["oblique"], seed=8)
    thin = thin_grid(Grid.of(volume.image), factor=5)
    polls: list[int] = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) >= 2

    with pytest.raises(Cancelled, match="cancelled"):
        interpolate(volume, thin, method, cancel=cancel)
    assert len(polls) == 2, "resampling went on after cancel returned True"


def test_cancel_that_never_fires_changes_nothing():
    volume = thick_volume(DIRECTIONS["flipped"], seed=9)
    thin = thin_grid(Grid.of(volume.image), factor=3)
    plain = interpolate(volume, thin, "bspline")
    polled = interpolate(volume, thin, "bspline", cancel=lambda: False)
    np.testing.assert_array_equal(polled.array, plain.array)


def test_labels_keep_values_and_pixel_type_on_the_thin_grid():
    volume = thick_volume(DIRECTIONS["oblique"], seed=10)
    labels = sitk.Cast(volume.image > 0, sitk.sitkUInt8) * 3
    thin = thin_grid(Grid.of(volume.image), factor=5)
    result = resample_labels(labels, thin.grid)
    assert result.GetPixelID() == sitk.sitkUInt8
    assert Grid.of(result) == thin.grid
    assert set(np.unique(sitk.GetArrayViewFromImage(result))) <= {0, 3}
    nearest = interpolate(Volume(labels), thin, "nearest").array
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), nearest)
