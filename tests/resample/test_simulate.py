"""Thick-slice simulation: exact slab weights, exact thick geometry, and the round trip.

Expected values are direct numpy means of thin slices and world positions computed by hand
from origin + direction @ (spacing * index); they never go through `slab_plan`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.paths import shared_scan
from helpers.volumes import DIRECTIONS, make_image

import thinct
from thinct.errors import GeometryError, UsageError
from thinct.geometry import MAX_RATIO, Grid, slice_axis, slice_centres
from thinct.resample.simulate import check_slab_options, simulate_thick, slab_plan
from thinct.volume import Volume

ORIGIN = (-30.0, 20.0, -100.0)
THIN = (0.7, 0.7, 1.25)


def thin_volume(array, spacing=THIN, direction=DIRECTIONS["axis-aligned"]) -> Volume:
    return Volume(make_image(array, spacing=spacing, origin=ORIGIN, direction=direction))


def random_array(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1024, 3000, size=shape).astype(np.int16)


def column(direction, axis: int) -> np.ndarray:
    return np.asarray(direction, float).reshape(3, 3)[:, axis]


def box_weights(n_thin, thin, thickness, increment, count) -> np.ndarray:
    """Overlap of each slab with each thin voxel box over the thickness, written out longhand."""
    weights = np.zeros((count, n_thin))
    for i in range(count):
        start = -thin / 2 + i * increment  # slab i, in mm from the first thin centre
        end = start + thickness
        for j in range(n_thin):
            lower, upper = j * thin - thin / 2, j * thin + thin / 2
            weights[i, j] = max(0.0, min(end, upper) - max(start, lower)) / thickness
    return weights


# --- boxcar, integer ratio --------------------------------------------------------------


def test_integer_ratio_is_the_mean_of_four_thin_slices_synthetic():
    array = random_array((24, 5, 6))
    thick = simulate_thick(thin_volume(array), 5.0)
    expected = array.astype(np.float64).reshape(6, 4, 5, 6).mean(axis=1)
    result = sitk.GetArrayFromImage(thick.image)
    assert thick.image.GetPixelID() == sitk.sitkFloat32
    assert result.shape == (6, 5, 6)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-3)


def test_integer_ratio_is_the_mean_of_four_thin_slices_on_the_example(example_thin):
    thin = thinct.read_volume(example_thin)
    array = sitk.GetArrayFromImage(thin.image).astype(np.float64)
    assert array.shape == (64, 192, 192)
    thick = simulate_thick(thin, 5.0)
    expected = array.reshape(16, 4, 192, 192).mean(axis=1)
    np.testing.assert_allclose(sitk.GetArrayFromImage(thick.image), expected, rtol=0, atol=1e-3)
    assert thick.image.GetSize() == (192, 192, 16)
    assert thick.image.GetSpacing() == pytest.approx((0.6816409826278687, 0.6816409826278687, 5))
    assert thick.image.GetOrigin() == pytest.approx(
        np.asarray(thin.image.GetOrigin()) + (0, 0, 1.875)
    )


def test_shipped_thick_example_is_the_simulation_of_the_thin_one(example_thin, example_thick):
    simulated = simulate_thick(thinct.read_volume(example_thin), 5.0)
    shipped = thinct.read_volume(example_thick)
    assert simulated.image.GetSize() == shipped.image.GetSize()
    assert simulated.image.GetOrigin() == pytest.approx(shipped.image.GetOrigin())
    assert simulated.image.GetSpacing() == pytest.approx(shipped.image.GetSpacing())
    assert simulated.image.GetDirection() == pytest.approx(shipped.image.GetDirection())
    difference = np.abs(sitk.GetArrayFromImage(simulated.image) - shipped.array)
    assert difference.max() <= 0.5 + 1e-3  # the shipped file is rounded to int16


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_thick_geometry_is_the_slab_centres(direction_name):
    direction = DIRECTIONS[direction_name]
    array = random_array((26, 3, 4))  # 32.5 mm: 6 slabs of 5 mm, 2.5 mm left over
    thin = thin_volume(array, direction=direction)
    thick = simulate_thick(thin, 5.0)
    grid = Grid.of(thick.image)
    assert grid.size == (4, 3, 6)
    assert grid.spacing == pytest.approx((0.7, 0.7, 5.0))
    assert grid.direction == pytest.approx(direction)
    slice_dir = column(direction, 2)
    # Origin shifts by (thickness - thin spacing) / 2 = 1.875 mm along the slice direction.
    np.testing.assert_allclose(grid.origin, np.asarray(ORIGIN) + 1.875 * slice_dir, atol=1e-9)
    # Slab i spans thin slices 4i..4i+3, so its centre is the midpoint of their centres.
    matrix = np.asarray(direction, float).reshape(3, 3)
    for i, centre in enumerate(slice_centres(grid, 2)):
        thin_first = np.asarray(ORIGIN) + matrix @ (np.asarray(THIN) * (0, 0, 4 * i))
        thin_last = np.asarray(ORIGIN) + matrix @ (np.asarray(THIN) * (0, 0, 4 * i + 3))
        np.testing.assert_allclose(centre, (thin_first + thin_last) / 2, atol=1e-9)
    expected = array.astype(np.float64)[:24].reshape(6, 4, 3, 4).mean(axis=1)
    np.testing.assert_allclose(sitk.GetArrayFromImage(thick.image), expected, atol=1e-3)


@pytest.mark.parametrize(
    ("n_thin", "thin", "thickness", "increment", "count"),
    [
        (64, 1.25, 5.0, None, 16),
        (65, 1.25, 5.0, None, 16),  # the leftover slice is not used
        (67, 1.25, 5.0, None, 16),
        (68, 1.25, 5.0, None, 17),
        (4, 1.25, 5.0, None, 1),  # exactly one slab
        (12, 1.25, 3.0, None, 5),  # 15 mm: slabs at 0, 3, 6, 9, 12 mm
        (24, 1.25, 5.0, 2.5, 11),
        (24, 1.25, 5.0, 1.25, 21),
        (30, 1.0, 5.0, 2.0, 13),
        (10, 0.3, 2.1, None, 1),  # 3.0 mm of 0.3 mm slices; float noise in 2.1 / 0.3
        (21, 0.1, 0.7, None, 3),
        (21, 0.3, 2.1, None, 3),  # (6.3 - 2.1) / 2.1 is 1.9999999999999996 in floats
        (6, 0.7, 2.1, None, 2),  # (4.2 - 2.1) / 2.1 is 0.9999999999999996 in floats
    ],
)
def test_number_of_slabs(n_thin, thin, thickness, increment, count):
    plan = slab_plan(n_thin, thin, thickness, increment)
    assert plan.weights.shape == (count, n_thin)
    # The last slab fits inside the scan; one more would not.
    step = thickness if increment is None else increment
    extent = n_thin * thin
    assert (count - 1) * step + thickness <= extent + 1e-9
    assert count * step + thickness > extent + 1e-9


# --- boxcar, non-integer thickness and overlap ------------------------------------------


def test_non_integer_thickness_uses_fractional_overlap_weights():
    plan = slab_plan(12, 1.25, 3.0)
    assert plan.weights.shape == (5, 12)
    np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, atol=1e-12)
    # Slab 0 covers [-0.625, 2.375]: thin 0 and 1 whole, 0.5 mm of thin 2.
    np.testing.assert_allclose(plan.weights[0, :4], [1.25 / 3, 1.25 / 3, 0.5 / 3, 0.0])
    # Slab 1 covers [2.375, 5.375]: 0.75 mm of thin 2, thin 3 whole, 1.0 mm of thin 4.
    np.testing.assert_allclose(plan.weights[1, 1:6], [0, 0.75 / 3, 1.25 / 3, 1.0 / 3, 0])
    np.testing.assert_allclose(plan.weights, box_weights(12, 1.25, 3.0, 3.0, 5), atol=1e-12)
    assert plan.first_centre == pytest.approx(0.875)
    assert plan.increment == 3.0
    assert np.count_nonzero((plan.weights > 0) & (plan.weights < 1.25 / 3 - 1e-9)) > 0


@pytest.mark.parametrize(
    ("n_thin", "thin", "thickness", "increment"),
    [
        (12, 1.25, 3.0, None),
        (40, 1.0, 2.5, None),
        (40, 0.625, 3.0, 2.0),
        (33, 0.8, 5.0, 1.7),
        (20, 1.5, 2.0, 0.5),
    ],
)
def test_boxcar_weights_equal_overlap_over_thickness(n_thin, thin, thickness, increment):
    plan = slab_plan(n_thin, thin, thickness, increment)
    step = thickness if increment is None else increment
    count = plan.weights.shape[0]
    np.testing.assert_allclose(
        plan.weights, box_weights(n_thin, thin, thickness, step, count), atol=1e-12
    )
    np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, atol=1e-12)
    assert plan.first_centre == pytest.approx((thickness - thin) / 2)


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_non_integer_thickness_volume_and_geometry(direction_name):
    direction = DIRECTIONS[direction_name]
    array = random_array((12, 3, 4), seed=1)
    a = array.astype(np.float64)
    thick = simulate_thick(thin_volume(array, direction=direction), 3.0)
    result = sitk.GetArrayFromImage(thick.image)
    assert result.shape == (5, 3, 4)
    np.testing.assert_allclose(result[0], (1.25 * a[0] + 1.25 * a[1] + 0.5 * a[2]) / 3, atol=2e-3)
    np.testing.assert_allclose(result[1], (0.75 * a[2] + 1.25 * a[3] + 1.0 * a[4]) / 3, atol=2e-3)
    grid = Grid.of(thick.image)
    assert grid.spacing == pytest.approx((0.7, 0.7, 3.0))
    np.testing.assert_allclose(
        grid.origin, np.asarray(ORIGIN) + 0.875 * column(direction, 2), atol=1e-9
    )
    assert thick.slice_thickness == 3.0


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
@pytest.mark.parametrize(("increment", "step_slices", "count"), [(2.5, 2, 11), (1.25, 1, 21)])
def test_overlapping_reconstructions(direction_name, increment, step_slices, count):
    direction = DIRECTIONS[direction_name]
    array = random_array((24, 3, 4), seed=2)
    thick = simulate_thick(thin_volume(array, direction=direction), 5.0, increment=increment)
    result = sitk.GetArrayFromImage(thick.image)
    assert result.shape == (count, 3, 4)
    a = array.astype(np.float64)
    for i in range(count):
        window = a[i * step_slices : i * step_slices + 4]
        np.testing.assert_allclose(result[i], window.mean(axis=0), atol=1e-3)
    grid = Grid.of(thick.image)
    assert grid.spacing == pytest.approx((0.7, 0.7, increment))
    slice_dir = column(direction, 2)
    centres = slice_centres(grid, 2)
    for i, centre in enumerate(centres):
        expected = np.asarray(ORIGIN) + (1.875 + increment * i) * slice_dir
        np.testing.assert_allclose(centre, expected, atol=1e-9)
    assert thick.slice_thickness == 5.0  # the nominal thickness, not the increment


# --- gaussian profile -------------------------------------------------------------------


def gaussian_weights(n_thin, thin, fwhm, centres) -> np.ndarray:
    """The Gaussian profile integrated over each thin voxel, renormalised per slab."""
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / (sigma * math.sqrt(2))))

    rows = []
    for c in centres:
        row = [cdf(j * thin + thin / 2 - c) - cdf(j * thin - thin / 2 - c) for j in range(n_thin)]
        rows.append(np.asarray(row) / sum(row))
    return np.asarray(rows)


def test_gaussian_weights_are_symmetric_and_peak_at_the_centre():
    plan = slab_plan(40, 1.0, 5.0, profile="gaussian")
    assert plan.weights.shape == (8, 40)
    assert plan.first_centre == pytest.approx(2.0)
    np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, atol=1e-12)
    row = plan.weights[3]  # centred on thin slice 17, far from both ends
    assert int(np.argmax(row)) == 17
    for d in range(1, 15):
        assert row[17 - d] == pytest.approx(row[17 + d], rel=1e-9, abs=1e-15)
        assert row[17 - d] < row[17 - d + 1]
    # Unlike a boxcar, the profile reaches beyond the slab.
    assert row[17 + 3] > 0


def test_gaussian_fwhm_defaults_to_the_thickness_and_matches_the_definition():
    default = slab_plan(40, 1.0, 5.0, profile="gaussian")
    explicit = slab_plan(40, 1.0, 5.0, profile="gaussian", fwhm=5.0)
    np.testing.assert_allclose(default.weights, explicit.weights, atol=0)
    centres = default.first_centre + 5.0 * np.arange(8)
    np.testing.assert_allclose(
        default.weights, gaussian_weights(40, 1.0, 5.0, centres), rtol=1e-9, atol=1e-15
    )


def test_gaussian_fwhm_is_the_width_at_half_maximum():
    """Sampled finely, the weights trace the profile: half the peak at +-FWHM / 2."""
    thin = 0.01
    plan = slab_plan(1000, thin, 6.0, profile="gaussian", fwhm=4.0)
    row = plan.weights[0]
    positions = thin * np.arange(1000) - plan.first_centre
    above = positions[row >= row.max() / 2]
    assert above.max() - above.min() == pytest.approx(4.0, abs=2 * thin)
    assert (above.max() + above.min()) / 2 == pytest.approx(0.0, abs=thin)


def test_a_given_fwhm_changes_the_weights():
    narrow = slab_plan(40, 1.0, 5.0, profile="gaussian", fwhm=3.0).weights
    default = slab_plan(40, 1.0, 5.0, profile="gaussian").weights
    wide = slab_plan(40, 1.0, 5.0, profile="gaussian", fwhm=8.0).weights
    assert not np.allclose(narrow, default)
    assert not np.allclose(wide, default)
    assert narrow[3, 17] > default[3, 17] > wide[3, 17]


def test_gaussian_renormalises_where_it_leaves_the_scan():
    plan = slab_plan(20, 1.0, 5.0, profile="gaussian", fwhm=8.0)
    np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, atol=1e-12)
    centres = plan.first_centre + 5.0 * np.arange(plan.weights.shape[0])
    np.testing.assert_allclose(plan.weights, gaussian_weights(20, 1.0, 8.0, centres), rtol=1e-9)


def test_gaussian_keeps_a_constant_volume_constant():
    array = np.full((24, 3, 4), 137, dtype=np.int16)
    for fwhm in (None, 3.0, 9.0):
        thick = simulate_thick(thin_volume(array), 5.0, profile="gaussian", fwhm=fwhm)
        np.testing.assert_allclose(sitk.GetArrayFromImage(thick.image), 137.0, atol=1e-3)


def test_gaussian_volume_uses_the_weights():
    array = random_array((24, 3, 4), seed=3)
    thick = simulate_thick(thin_volume(array), 5.0, profile="gaussian", fwhm=6.0)
    centres = (5.0 - 1.25) / 2 + 5.0 * np.arange(6)
    weights = gaussian_weights(24, 1.25, 6.0, centres)
    expected = np.einsum("ij,jyx->iyx", weights, array.astype(np.float64))
    np.testing.assert_allclose(sitk.GetArrayFromImage(thick.image), expected, atol=2e-3)
    assert Grid.of(thick.image).origin == pytest.approx(np.asarray(ORIGIN) + (0, 0, 1.875))


@pytest.mark.parametrize(
    ("profile", "fwhm", "nominal"),
    [("boxcar", None, 5.0), ("gaussian", None, 5.0), ("gaussian", 6.5, 6.5)],
)
def test_slice_thickness_metadata(profile, fwhm, nominal):
    thick = simulate_thick(thin_volume(random_array((8, 2, 2))), 5.0, profile=profile, fwhm=fwhm)
    assert thick.slice_thickness == nominal


def test_provenance_is_kept():
    thin = Volume(
        make_image(random_array((8, 2, 2)), spacing=THIN),
        dicom_tags={"0010|0020": "PATIENT"},
        slice_thickness=1.25,
    )
    thick = simulate_thick(thin, 5.0)
    assert thick.dicom_tags == {"0010|0020": "PATIENT"}
    assert thick.slice_thickness == 5.0
    assert thin.slice_thickness == 1.25  # the input is untouched


# --- axis -------------------------------------------------------------------------------


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_simulation_along_an_in_plane_axis(direction_name):
    direction = DIRECTIONS[direction_name]
    array = random_array((3, 5, 16), seed=4)  # (z, y, x): 16 x-columns of 0.5 mm
    spacing = (0.5, 0.7, 1.25)
    thin = thin_volume(array, spacing=spacing, direction=direction)
    thick = simulate_thick(thin, 2.0, axis=0)
    result = sitk.GetArrayFromImage(thick.image)
    expected = array.astype(np.float64).reshape(3, 5, 4, 4).mean(axis=3)
    assert result.shape == (3, 5, 4)
    np.testing.assert_allclose(result, expected, atol=1e-3)
    grid = Grid.of(thick.image)
    assert grid.spacing == pytest.approx((2.0, 0.7, 1.25))
    np.testing.assert_allclose(
        grid.origin, np.asarray(ORIGIN) + 0.75 * column(direction, 0), atol=1e-9
    )


def test_simulation_along_y():
    array = random_array((3, 9, 5), seed=5)
    thick = simulate_thick(thin_volume(array, spacing=(0.7, 0.5, 1.25)), 1.5, axis=1)
    expected = array.astype(np.float64).reshape(3, 3, 3, 5).mean(axis=2)
    np.testing.assert_allclose(sitk.GetArrayFromImage(thick.image), expected, atol=1e-3)
    assert thick.image.GetSpacing() == pytest.approx((0.7, 1.5, 1.25))


@pytest.mark.parametrize(
    ("spacing", "axis"),
    [
        ((0.7, 0.7, 1.25), 2),
        ((0.7, 0.7, 0.625), 2),  # slices closer than the pixels: still z
        ((0.8, 0.8, 0.8), 2),
        ((1.25, 0.7, 0.7), 0),
        ((0.6, 1.0, 0.6), 1),
        ((0.6, 0.7, 0.8), 2),  # no square pixel plane: the largest spacing
    ],
)
def test_default_axis_of_a_thin_scan(spacing, axis):
    assert slice_axis(spacing) == axis


def test_thin_slices_closer_than_the_pixels_are_averaged_along_z():
    """0.625 mm slices of 0.7 mm pixels: the slab runs along z, not along an in-plane axis."""
    array = random_array((16, 4, 4), seed=6)
    thick = simulate_thick(thin_volume(array, spacing=(0.7, 0.7, 0.625)), 2.5)
    assert thick.image.GetSize() == (4, 4, 4)
    assert thick.image.GetSpacing() == pytest.approx((0.7, 0.7, 2.5))
    expected = array.astype(np.float64).reshape(4, 4, 4, 4).mean(axis=1)
    np.testing.assert_allclose(sitk.GetArrayFromImage(thick.image), expected, atol=1e-3)


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("thickness", [1.25, 1.0, 1.25 * (1 + 1e-9)])
def test_thickness_not_thicker_than_the_thin_spacing(thickness):
    with pytest.raises(GeometryError, match="not thicker"):
        simulate_thick(thin_volume(random_array((8, 2, 2))), thickness)


def test_thickness_larger_than_the_scan():
    volume = thin_volume(random_array((8, 2, 2)))  # 10 mm
    with pytest.raises(GeometryError, match="covers 10 mm"):
        simulate_thick(volume, 10.5)
    one = simulate_thick(volume, 10.0)  # exactly the scan: one slab, the mean of all
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(one.image)[0], volume.array.astype(float).mean(axis=0), atol=1e-3
    )


@pytest.mark.parametrize("increment", [0.0, -2.5, math.nan, math.inf])
def test_bad_increment(increment):
    with pytest.raises(UsageError, match="increment"):
        simulate_thick(thin_volume(random_array((8, 2, 2))), 5.0, increment=increment)


@pytest.mark.parametrize("thickness", [0.0, -5.0, math.nan])
def test_bad_thickness(thickness):
    with pytest.raises(UsageError, match="thickness"):
        simulate_thick(thin_volume(random_array((8, 2, 2))), thickness)


@pytest.mark.parametrize("profile", ["triangle", "Gaussian", ""])
def test_unknown_profile(profile):
    with pytest.raises(UsageError, match="profile"):
        simulate_thick(thin_volume(random_array((8, 2, 2))), 5.0, profile=profile)


@pytest.mark.parametrize("fwhm", [0.0, -1.0, math.nan])
def test_bad_fwhm(fwhm):
    with pytest.raises(UsageError, match="fwhm must be a positive number"):
        simulate_thick(thin_volume(random_array((8, 2, 2))), 5.0, profile="gaussian", fwhm=fwhm)


def test_fwhm_of_a_boxcar_is_refused_rather_than_ignored():
    with pytest.raises(UsageError, match="fwhm only applies to profile='gaussian'"):
        simulate_thick(thin_volume(random_array((8, 2, 2))), 5.0, fwhm=3.0)


@pytest.mark.parametrize(
    ("thickness", "increment", "profile", "fwhm", "says"),
    [
        (0.0, None, "boxcar", None, "thickness"),
        (5.0, math.inf, "boxcar", None, "increment"),
        (5.0, None, "gaussian", -1.0, "fwhm must be"),
        (5.0, None, "boxcar", 5.0, "fwhm only applies"),
        (5.0, None, "triangle", None, "profile must be one of boxcar, gaussian"),
    ],
)
def test_slab_options_are_checked_without_a_scan(thickness, increment, profile, fwhm, says):
    with pytest.raises(UsageError, match=says):
        check_slab_options(thickness, increment, profile, fwhm)


def test_good_slab_options_pass():
    check_slab_options(5.0, 2.5, "gaussian", 4.0)
    check_slab_options(5.0, None, "boxcar", None)


def test_an_increment_over_the_ratio_limit_is_a_usage_error():
    """Far more thick slices than thin ones: refused before the weights fill the memory."""
    with pytest.raises(UsageError, match=r"per 1\.25 mm thin slice; the most is 100"):
        slab_plan(8, 1.25, 5.0, increment=0.0001)
    with pytest.raises(UsageError, match="the most is 100"):
        slab_plan(8, 1.25, 5.0, increment=1.25 / 100.5)


def test_an_increment_at_the_ratio_limit_is_fine():
    plan = slab_plan(8, 1.25, 5.0, increment=1.25 / MAX_RATIO)
    assert plan.weights.shape == (401, 8)  # (10 - 5) mm / 0.0125 mm + 1


@pytest.mark.parametrize("axis", [3, -1])
def test_bad_axis(axis):
    with pytest.raises(UsageError, match="axis"):
        simulate_thick(thin_volume(random_array((8, 2, 2))), 5.0, axis=axis)


# --- round trip -------------------------------------------------------------------------


def test_simulate_then_upsample_edges_lands_on_the_thin_grid(example_thin):
    thin = thinct.read_volume(example_thin)
    thick = simulate_thick(thin, 5.0)
    back = thinct.upsample_volume(thick, method="linear", spacing=1.25)
    thin_grid, back_grid = Grid.of(thin.image), Grid.of(back.image)
    assert back_grid.size == thin_grid.size == (192, 192, 64)
    assert back_grid.spacing == pytest.approx(thin_grid.spacing)
    assert back_grid.direction == pytest.approx(thin_grid.direction)
    np.testing.assert_allclose(back_grid.origin, thin_grid.origin, atol=1e-6)
    np.testing.assert_allclose(
        slice_centres(back_grid, 2), slice_centres(thin_grid, 2), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_round_trip_geometry_on_any_direction(direction_name):
    direction = DIRECTIONS[direction_name]
    thin = thin_volume(random_array((20, 3, 4)), direction=direction)
    back = thinct.upsample_volume(simulate_thick(thin, 5.0), method="nearest", spacing=1.25)
    np.testing.assert_allclose(
        slice_centres(Grid.of(back.image), 2), slice_centres(Grid.of(thin.image), 2), atol=1e-9
    )


def test_round_trip_leaves_out_the_thin_slices_beyond_the_last_full_slab():
    """docs/geometry.md: 66 slices of 1.25 mm give 16 slabs of 5 mm, and back 64 of the 66
    thin positions, the first 64."""
    thin = thin_volume(random_array((66, 2, 2)))
    thick = simulate_thick(thin, 5.0)
    back = thinct.upsample_volume(thick, method="nearest", spacing=1.25)
    assert thick.image.GetSize()[2] == 16
    np.testing.assert_allclose(
        slice_centres(Grid.of(back.image), 2), slice_centres(Grid.of(thin.image), 2)[:64], atol=1e-9
    )


# --- full scan --------------------------------------------------------------------------


@pytest.mark.slow
def test_full_scan_simulate_and_upsample():
    path = shared_scan("lidc0002_c2c_1.25mm.nii.gz")
    thin = thinct.read_volume(path)
    thin_grid = Grid.of(thin.image)
    assert thin_grid.spacing[2] == pytest.approx(1.25)
    n_thin = thin_grid.size[2]
    n_thick = n_thin // 4

    thick = simulate_thick(thin, 5.0)
    grid = Grid.of(thick.image)
    assert grid.size == (*thin_grid.size[:2], n_thick)
    assert grid.spacing == pytest.approx((*thin_grid.spacing[:2], 5.0))
    np.testing.assert_allclose(
        grid.origin,
        np.asarray(thin_grid.origin) + 1.875 * column(thin_grid.direction, 2),
        atol=1e-6,
    )
    array = thin.array
    result = thick.array
    for i in (0, 1, n_thick // 2, n_thick - 1):
        expected = array[4 * i : 4 * i + 4].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(result[i], expected, atol=1e-3)

    back = thinct.upsample_volume(thick, method="bspline", spacing=1.25)
    back_grid = Grid.of(back.image)
    assert back_grid.size == (*thin_grid.size[:2], 4 * n_thick)
    assert back_grid.spacing == pytest.approx(thin_grid.spacing)
    assert back_grid.direction == pytest.approx(thin_grid.direction)
    np.testing.assert_allclose(
        slice_centres(back_grid, 2), slice_centres(thin_grid, 2)[: 4 * n_thick], atol=1e-6
    )
    assert back.image.GetPixelID() == sitk.sitkFloat32
    assert back.slice_thickness == pytest.approx(1.25)
    assert np.isfinite(back.array).all()
    # A smooth interpolation stays within the range of the thick scan, up to ringing.
    assert back.array.min() >= result.min() - 500
    assert back.array.max() <= result.max() + 500
