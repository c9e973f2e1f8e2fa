"""The slice axis, the thin grid of both alignments, and the regular-stack check.

Expected world positions are computed by hand from origin + direction @ (spacing * index),
never through the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.volumes import DIRECTIONS, make_image, rotation

from thinct.errors import GeometryError, UsageError
from thinct.geometry import (
    MAX_RATIO,
    Grid,
    check_slice_positions,
    check_target_options,
    slab_extent,
    slice_axis,
    slice_centres,
    target_spacing,
    thin_grid,
)

ORIGIN = (-30.0, 20.0, -100.0)


def world(origin, direction, spacing, index) -> np.ndarray:
    """origin + D @ (spacing * index), written out independently of `Grid.index_to_world`."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    return np.asarray(origin, float) + matrix @ (np.asarray(spacing, float) * np.asarray(index))


def thick_grid(n: int, thickness: float = 5.0, axis: int = 2, direction=DIRECTIONS["oblique"]):
    """A small thick scan with ``n`` slices of ``thickness`` mm along index axis ``axis``."""
    size = [4, 3, 2]
    spacing = [0.7, 0.8, 0.7]
    size[axis] = n
    spacing[axis] = thickness
    array = np.zeros(size[::-1], dtype=np.int16)
    return Grid.of(make_image(array, spacing=spacing, origin=ORIGIN, direction=direction))


def unit(axis: int) -> np.ndarray:
    index = np.zeros(3)
    index[axis] = 1.0
    return index


# --- slice axis -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spacing", "axis"),
    [
        ((0.7, 0.7, 5.0), 2),
        ((5.0, 0.7, 0.7), 0),
        ((0.7, 5.0, 0.7), 1),
        ((1.0, 1.0, 1.0), 2),  # isotropic: the last axis
        ((0.7, 0.7, 0.625), 2),  # slices closer than the square pixels: still z
        ((5.0, 5.0, 1.0), 2),  # two equal spacings: the odd one out is the slice axis
        ((5.0, 1.0, 5.0), 1),
        ((5.0, 5.0 * (1 + 1e-9), 1.0), 2),  # float noise does not break the equal pair
        ((2.5, 0.7, 2.5 * (1 - 1e-9)), 1),
        ((0.6, 0.7, 0.8), 2),  # no equal pair: the largest spacing
        ((0.8, 0.7, 0.6), 0),
        ((0.7, 0.7, 0.7001), 2),
        ((0.7001, 0.7, 0.7), 0),
    ],
)
def test_slice_axis_is_the_odd_spacing_out_else_the_largest(spacing, axis):
    assert slice_axis(spacing) == axis
    assert slice_axis(list(spacing)) == axis


# --- thin grid: integer ratio -----------------------------------------------------------


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
@pytest.mark.parametrize("request_kind", ["factor", "spacing"])
def test_edges_covers_the_whole_slab_extent(direction_name, request_kind):
    direction = DIRECTIONS[direction_name]
    n = 7
    grid = thick_grid(n, direction=direction)
    kwargs = {"factor": 5} if request_kind == "factor" else {"spacing": 1.0}
    thin = thin_grid(grid, align="edges", **kwargs)

    assert thin.axis == 2
    assert thin.align == "edges"
    assert thin.grid.size == (4, 3, n * 5)
    assert thin.grid.spacing == pytest.approx((0.7, 0.8, 1.0))
    assert thin.spacing == pytest.approx(1.0)
    assert thin.grid.direction == pytest.approx(direction)

    slice_dir = np.asarray(direction, float).reshape(3, 3)[:, 2]
    first_thick = world(ORIGIN, direction, grid.spacing, (0, 0, 0))
    last_thick = world(ORIGIN, direction, grid.spacing, (0, 0, n - 1))
    np.testing.assert_allclose(first_thick, ORIGIN)
    np.testing.assert_allclose(last_thick, np.asarray(ORIGIN) + 5.0 * (n - 1) * slice_dir)

    g = thin.grid
    first_thin = world(g.origin, g.direction, g.spacing, (0, 0, 0))
    last_thin = world(g.origin, g.direction, g.spacing, (0, 0, g.size[2] - 1))
    np.testing.assert_allclose(first_thin, first_thick - 2.0 * slice_dir, atol=1e-9)
    np.testing.assert_allclose(last_thin, last_thick + 2.0 * slice_dir, atol=1e-9)

    # Outer edges: half a slice beyond the first and last centres, for both grids.
    thick_lo = world(ORIGIN, direction, grid.spacing, (0, 0, -0.5))
    thick_hi = world(ORIGIN, direction, grid.spacing, (0, 0, n - 0.5))
    thin_lo = world(g.origin, g.direction, g.spacing, (0, 0, -0.5))
    thin_hi = world(g.origin, g.direction, g.spacing, (0, 0, g.size[2] - 0.5))
    np.testing.assert_allclose(thin_lo, thick_lo, atol=1e-9)
    np.testing.assert_allclose(thin_hi, thick_hi, atol=1e-9)
    np.testing.assert_allclose(thick_lo, np.asarray(ORIGIN) - 2.5 * slice_dir, atol=1e-9)

    # The library's own helpers agree with the hand computation.
    lo, hi = slab_extent(g, 2)
    np.testing.assert_allclose(lo, thick_lo, atol=1e-9)
    np.testing.assert_allclose(hi, thick_hi, atol=1e-9)
    lo, hi = slab_extent(grid, 2)
    np.testing.assert_allclose(lo, thick_lo, atol=1e-9)
    np.testing.assert_allclose(hi, thick_hi, atol=1e-9)
    centres = slice_centres(g, 2)
    assert centres.shape == (n * 5, 3)
    np.testing.assert_allclose(centres[0], first_thin, atol=1e-9)
    np.testing.assert_allclose(centres[-1], last_thin, atol=1e-9)
    np.testing.assert_allclose(np.diff(centres, axis=0), np.tile(slice_dir, (n * 5 - 1, 1)))


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
@pytest.mark.parametrize("request_kind", ["factor", "spacing"])
def test_centers_runs_from_first_to_last_thick_centre(direction_name, request_kind):
    direction = DIRECTIONS[direction_name]
    n = 7
    grid = thick_grid(n, direction=direction)
    kwargs = {"factor": 5} if request_kind == "factor" else {"spacing": 1.0}
    thin = thin_grid(grid, align="centers", **kwargs)

    assert thin.align == "centers"
    assert thin.grid.size == (4, 3, (n - 1) * 5 + 1)
    assert thin.spacing == pytest.approx(1.0)
    g = thin.grid
    first_thick = world(ORIGIN, direction, grid.spacing, (0, 0, 0))
    last_thick = world(ORIGIN, direction, grid.spacing, (0, 0, n - 1))
    first_thin = world(g.origin, g.direction, g.spacing, (0, 0, 0))
    last_thin = world(g.origin, g.direction, g.spacing, (0, 0, g.size[2] - 1))
    np.testing.assert_allclose(first_thin, first_thick, atol=1e-9)
    np.testing.assert_allclose(last_thin, last_thick, atol=1e-9)
    np.testing.assert_allclose(g.origin, ORIGIN, atol=1e-12)
    # Every fifth thin slice sits on a thick centre.
    for i in range(n):
        np.testing.assert_allclose(
            world(g.origin, g.direction, g.spacing, (0, 0, 5 * i)),
            world(ORIGIN, direction, grid.spacing, (0, 0, i)),
            atol=1e-9,
        )


def test_documented_example_of_docs_geometry():
    """16 slices of 5 mm, first centre at z = -262.625 (docs/geometry.md)."""
    image = make_image(
        np.zeros((16, 2, 2), np.int16), spacing=(0.68, 0.68, 5.0), origin=(8.5, -72.0, -262.625)
    )
    edges = thin_grid(Grid.of(image), spacing=1.0, align="edges")
    z = slice_centres(edges.grid, 2)[:, 2]
    assert len(z) == 80
    assert z[0] == pytest.approx(-264.625)
    assert z[-1] == pytest.approx(-185.625)
    lo, hi = slab_extent(edges.grid, 2)
    assert (lo[2], hi[2]) == pytest.approx((-265.125, -185.125))
    centers = thin_grid(Grid.of(image), spacing=1.0, align="centers")
    z = slice_centres(centers.grid, 2)[:, 2]
    assert len(z) == 76
    assert (z[0], z[-1]) == pytest.approx((-262.625, -187.625))


@pytest.mark.parametrize("align", ["edges", "centers"])
@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
@pytest.mark.parametrize(
    ("axis", "spacing"),
    [(0, (5.0, 0.7, 0.7)), (1, (0.7, 5.0, 0.7))],
)
def test_in_plane_slice_axis(axis, spacing, direction_name, align):
    """A stack whose slices run along x or y: the thin grid moves along that column of D."""
    direction = DIRECTIONS[direction_name]
    n = 6
    size = [3, 4, 5]
    size[axis] = n
    image = make_image(
        np.zeros(size[::-1], np.int16), spacing=spacing, origin=ORIGIN, direction=direction
    )
    grid = Grid.of(image)
    thin = thin_grid(grid, factor=5, align=align)
    assert thin.axis == axis
    expected_size = list(size)
    expected_size[axis] = n * 5 if align == "edges" else (n - 1) * 5 + 1
    assert thin.grid.size == tuple(expected_size)
    expected_spacing = list(spacing)
    expected_spacing[axis] = 1.0
    assert thin.grid.spacing == pytest.approx(tuple(expected_spacing))

    column = np.asarray(direction, float).reshape(3, 3)[:, axis]
    shift = -2.0 if align == "edges" else 0.0
    np.testing.assert_allclose(thin.grid.origin, np.asarray(ORIGIN) + shift * column, atol=1e-9)
    g = thin.grid
    last_thin = world(g.origin, g.direction, g.spacing, unit(axis) * (g.size[axis] - 1))
    last_thick = world(ORIGIN, direction, spacing, unit(axis) * (n - 1))
    np.testing.assert_allclose(last_thin, last_thick - shift * column, atol=1e-9)
    if align == "edges":
        np.testing.assert_allclose(slab_extent(g, axis)[0], slab_extent(grid, axis)[0], atol=1e-9)
        np.testing.assert_allclose(slab_extent(g, axis)[1], slab_extent(grid, axis)[1], atol=1e-9)


# --- thin grid: non-integer ratio -------------------------------------------------------


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_non_integer_ratio_edges_centres_the_largest_whole_number_of_slices(direction_name):
    direction = DIRECTIONS[direction_name]
    n = 9  # 27 mm of 3 mm slabs; 27 / 1.25 = 21.6
    grid = thick_grid(n, thickness=3.0, direction=direction)
    thin = thin_grid(grid, spacing=1.25, align="edges")
    g = thin.grid
    assert g.size[2] == 21 == math.floor(n * 3.0 / 1.25)
    # Leftover 27 - 21 * 1.25 = 0.75 mm, split equally: 0.375 mm at each end.
    slice_dir = np.asarray(direction, float).reshape(3, 3)[:, 2]
    thick_lo = world(ORIGIN, direction, grid.spacing, (0, 0, -0.5))
    thick_hi = world(ORIGIN, direction, grid.spacing, (0, 0, n - 0.5))
    thin_lo = world(g.origin, g.direction, g.spacing, (0, 0, -0.5))
    thin_hi = world(g.origin, g.direction, g.spacing, (0, 0, g.size[2] - 0.5))
    np.testing.assert_allclose(thin_lo, thick_lo + 0.375 * slice_dir, atol=1e-9)
    np.testing.assert_allclose(thin_hi, thick_hi - 0.375 * slice_dir, atol=1e-9)
    # First thin centre: -1.5 + 0.375 + 0.625 = -0.5 mm from the first thick centre.
    np.testing.assert_allclose(g.origin, np.asarray(ORIGIN) - 0.5 * slice_dir, atol=1e-9)
    last = world(g.origin, g.direction, g.spacing, (0, 0, 20))
    np.testing.assert_allclose(last, np.asarray(ORIGIN) + 24.5 * slice_dir, atol=1e-9)
    np.testing.assert_allclose(thin.source_index, (-0.5 + 1.25 * np.arange(21)) / 3.0)


@pytest.mark.parametrize("direction_name", list(DIRECTIONS))
def test_non_integer_ratio_centers_starts_at_the_first_thick_centre(direction_name):
    direction = DIRECTIONS[direction_name]
    n = 9  # 24 mm between the first and last centre; 24 / 1.25 = 19.2
    grid = thick_grid(n, thickness=3.0, direction=direction)
    thin = thin_grid(grid, spacing=1.25, align="centers")
    g = thin.grid
    assert g.size[2] == 20
    slice_dir = np.asarray(direction, float).reshape(3, 3)[:, 2]
    np.testing.assert_allclose(g.origin, ORIGIN, atol=1e-12)
    last = world(g.origin, g.direction, g.spacing, (0, 0, 19))
    np.testing.assert_allclose(last, np.asarray(ORIGIN) + 23.75 * slice_dir, atol=1e-9)
    assert thin.source_index[-1] <= n - 1
    np.testing.assert_allclose(thin.source_index, 1.25 * np.arange(20) / 3.0)


@pytest.mark.parametrize(
    ("n", "thick", "thin", "edges", "centers"),
    [
        (10, 3.0, 1.25, 24, 22),  # 30 / 1.25 = 24 exactly; 27 / 1.25 = 21.6
        (3, 0.7, 0.3, 7, 5),  # 3 * 0.7 / 0.3 is 6.999999999999999 in floats
        (2, 0.7, 0.1, 14, 8),  # 2 * 0.7 / 0.1 is 13.999999999999998 in floats
        (2, 5.0, 2.5, 4, 3),
    ],
)
def test_slice_counts_absorb_float_noise(n, thick, thin, edges, centers):
    image = make_image(np.zeros((n, 2, 2), np.int16), spacing=(0.05, 0.05, thick))
    assert thin_grid(Grid.of(image), spacing=thin, align="edges").grid.size[2] == edges
    assert thin_grid(Grid.of(image), spacing=thin, align="centers").grid.size[2] == centers


# --- source index -----------------------------------------------------------------------


def test_source_index_integer_ratio():
    grid = thick_grid(4)
    edges = thin_grid(grid, factor=5, align="edges")
    np.testing.assert_allclose(edges.source_index, (np.arange(20) - 2) / 5.0, atol=1e-12)
    assert edges.source_index[0] == pytest.approx(-0.4)
    assert edges.source_index[-1] == pytest.approx(3.4)
    # Thin slices 2, 7, 12, 17 sit exactly on the thick centres.
    assert [edges.source_index[j] for j in (2, 7, 12, 17)] == pytest.approx([0, 1, 2, 3])
    centers = thin_grid(grid, factor=5, align="centers")
    np.testing.assert_allclose(centers.source_index, np.arange(16) / 5.0, atol=1e-12)
    assert len(centers.source_index) == centers.grid.size[2]


def test_source_index_matches_world_positions_on_oblique_grids():
    """source_index is the thin slice centre expressed as a continuous thick index."""
    direction = rotation(10, 25, -40)
    grid = thick_grid(5, thickness=3.0, direction=direction)
    for align in ("edges", "centers"):
        thin = thin_grid(grid, spacing=1.25, align=align)
        g = thin.grid
        for j, s in enumerate(thin.source_index):
            np.testing.assert_allclose(
                world(g.origin, g.direction, g.spacing, (0, 0, j)),
                world(ORIGIN, direction, grid.spacing, (0, 0, s)),
                atol=1e-9,
            )


def test_factor_two_is_the_smallest_factor():
    thin = thin_grid(thick_grid(3), factor=2)
    assert thin.grid.size[2] == 6
    assert thin.spacing == pytest.approx(2.5)


def test_default_target_is_one_millimetre():
    assert target_spacing(5.0, None, None) == 1.0
    thin = thin_grid(thick_grid(3))
    assert thin.spacing == 1.0
    assert thin.align == "edges"
    assert thin.grid.size[2] == 15


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [5.0, 6.0, 5.0 * (1 - 1e-8)])
def test_target_not_thinner_is_a_geometry_error(spacing):
    with pytest.raises(GeometryError, match="not thinner"):
        thin_grid(thick_grid(3), spacing=spacing)


def test_single_slice_is_a_geometry_error():
    with pytest.raises(GeometryError, match="single slice"):
        thin_grid(thick_grid(1), factor=2)


def test_factor_and_spacing_together_is_a_usage_error():
    with pytest.raises(UsageError, match="not both"):
        thin_grid(thick_grid(3), spacing=1.0, factor=5)


@pytest.mark.parametrize("factor", [1, 0, -3, 2.5, 101, 100000])
def test_bad_factor_is_a_usage_error(factor):
    with pytest.raises(UsageError, match="factor must be a whole number from 2 to 100"):
        thin_grid(thick_grid(3), factor=factor)


def test_the_largest_factor_is_the_ratio_limit():
    thin = thin_grid(thick_grid(3), factor=MAX_RATIO)
    assert MAX_RATIO == 100
    assert thin.grid.size[2] == 3 * MAX_RATIO


@pytest.mark.parametrize("spacing", [0.0001, 5.0 / 100.5])
def test_a_target_over_the_ratio_limit_is_a_usage_error(spacing):
    """Not a geometry problem but an option no scan can use, refused before any voxel of the
    (huge) thin grid is allocated."""
    with pytest.raises(UsageError, match=r"thin slices of each 5 mm slice; the most is 100"):
        thin_grid(thick_grid(3), spacing=spacing)


def test_a_target_at_the_ratio_limit_is_fine():
    thin = thin_grid(thick_grid(3), spacing=5.0 / MAX_RATIO, align="centers")
    assert thin.grid.size[2] == 2 * MAX_RATIO + 1


@pytest.mark.parametrize(
    ("spacing", "factor", "says"),
    [
        (1.0, 5, "give either spacing or factor, not both"),
        (None, 1, "factor must be"),
        (None, 101, "factor must be"),
        (0.0, None, "spacing must be a positive number of mm"),
        (math.nan, None, "spacing must be a positive number of mm"),
    ],
)
def test_target_options_are_checked_without_a_scan(spacing, factor, says):
    with pytest.raises(UsageError, match=says):
        check_target_options(spacing, factor)


@pytest.mark.parametrize(("spacing", "factor"), [(None, None), (0.5, None), (None, 2), (None, 100)])
def test_good_target_options_pass(spacing, factor):
    check_target_options(spacing, factor)


@pytest.mark.parametrize("spacing", [0.0, -1.0, math.nan, math.inf])
def test_bad_spacing_is_a_usage_error(spacing):
    with pytest.raises(UsageError, match="positive"):
        thin_grid(thick_grid(3), spacing=spacing)


@pytest.mark.parametrize("align", ["edge", "middle", "", "EDGES"])
def test_unknown_alignment_is_a_usage_error(align):
    with pytest.raises(UsageError, match="alignment"):
        thin_grid(thick_grid(3), factor=5, align=align)


# --- regular slice stacks ---------------------------------------------------------------

AXIAL_ROW = np.array([1.0, 0.0, 0.0])
AXIAL_COLUMN = np.array([0.0, 1.0, 0.0])


def axial_positions(z) -> np.ndarray:
    return np.array([[-150.0, -170.0, float(v)] for v in z])


def test_uniform_stack_returns_the_spacing():
    positions = axial_positions(-300.0 + 1.25 * np.arange(20))
    spacing = check_slice_positions(positions, AXIAL_ROW, AXIAL_COLUMN, 0.7)
    assert spacing == pytest.approx(1.25)


def test_descending_stack_is_fine():
    positions = axial_positions(-300.0 - 2.5 * np.arange(20))
    assert check_slice_positions(positions, AXIAL_ROW, AXIAL_COLUMN, 0.7) == pytest.approx(2.5)


def test_oblique_uniform_stack_returns_the_spacing():
    matrix = np.asarray(DIRECTIONS["oblique"]).reshape(3, 3)
    row, column, normal = matrix[:, 0], matrix[:, 1], matrix[:, 2]
    positions = np.asarray(ORIGIN) + 3.0 * np.arange(12)[:, None] * normal
    assert check_slice_positions(positions, row, column, 0.7) == pytest.approx(3.0)


def test_jitter_within_one_percent_is_accepted():
    z = 1.25 * np.arange(10)
    z[5] += 0.005
    assert check_slice_positions(axial_positions(z), AXIAL_ROW, AXIAL_COLUMN, 0.7) == (
        pytest.approx(1.25)
    )


def test_gap_is_refused():
    z = np.delete(1.25 * np.arange(20), 7)  # slice 7 missing
    with pytest.raises(GeometryError) as info:
        check_slice_positions(axial_positions(z), AXIAL_ROW, AXIAL_COLUMN, 0.7)
    message = str(info.value)
    assert "non-uniform slice spacing" in message
    assert "1.25 to 2.5 mm" in message
    assert "after slice 6" in message
    assert "missing slices" in message


def test_uneven_step_is_refused():
    z = np.concatenate([1.25 * np.arange(8), 8.75 + 1.5 + 1.25 * np.arange(8)])
    with pytest.raises(GeometryError, match=r"non-uniform.*1\.25 to 1\.5 mm.*after slice 7"):
        check_slice_positions(axial_positions(z), AXIAL_ROW, AXIAL_COLUMN, 0.7)


def test_message_names_the_first_irregular_step_not_the_worst():
    steps = [1.25] * 4 + [1.5] + [1.25] * 4 + [3.75] + [1.25] * 4
    z = np.concatenate([[0.0], np.cumsum(steps)])
    with pytest.raises(GeometryError, match="first irregular step after slice 4"):
        check_slice_positions(axial_positions(z), AXIAL_ROW, AXIAL_COLUMN, 0.7)


def test_duplicate_position_is_refused():
    z = 1.25 * np.arange(10)
    z = np.insert(z, 4, z[4])  # slices 4 and 5 at the same position
    with pytest.raises(GeometryError) as info:
        check_slice_positions(axial_positions(z), AXIAL_ROW, AXIAL_COLUMN, 0.7)
    message = str(info.value)
    assert "slices 4 and 5 sit at the same position" in message
    assert "single reconstruction" in message


def test_gantry_tilt_is_refused():
    tilt = math.radians(15.0)
    k = np.arange(20)
    positions = np.stack(
        [np.full(20, -150.0), -170.0 + 2.5 * math.tan(tilt) * k, 2.5 * k], axis=1
    )  # slices 2.5 mm apart along z, sliding along y
    with pytest.raises(GeometryError, match=r"gantry tilt of 15\.0 degrees.*reformat"):
        check_slice_positions(positions, AXIAL_ROW, AXIAL_COLUMN, 0.7)


def test_in_plane_drift_under_half_a_pixel_is_not_tilt():
    k = np.arange(20)
    positions = np.stack([np.full(20, 0.0), 0.3 * k / 19, 2.5 * k], axis=1)
    assert check_slice_positions(positions, AXIAL_ROW, AXIAL_COLUMN, 0.7) == pytest.approx(2.5)


def test_single_position_is_refused():
    with pytest.raises(GeometryError, match="single slice"):
        check_slice_positions(axial_positions([0.0]), AXIAL_ROW, AXIAL_COLUMN, 0.7)
