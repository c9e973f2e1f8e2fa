"""In-plane refinement of the output grid (`thinct.geometry.in_plane_grid`, `refined_grid` and
`thin_grid`'s ``in_plane`` / ``in_plane_spacing``): the refined pixels tile the input's field
of view, whatever the direction, and the options are refused in one line when they cannot work.

Expected outer edges are computed by hand from origin + direction @ (spacing * index), never
through `Grid.index_to_world`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.volumes import DIRECTIONS, make_image

from thinct.errors import GeometryError, UsageError
from thinct.geometry import (
    MAX_IN_PLANE,
    Grid,
    check_target_options,
    in_plane_grid,
    refined_grid,
    slice_axis,
    thin_grid,
)

ORIGIN = (-30.0, 20.0, -100.0)


def scan_grid(axis: int = 2, direction=DIRECTIONS["oblique"], pixels=(0.7, 0.7)) -> Grid:
    """A 5 mm scan of 6 slices along index axis ``axis`` with 12 x 10 pixels of ``pixels`` mm."""
    plane = [i for i in range(3) if i != axis]
    size, spacing = [0, 0, 0], [0.0, 0.0, 0.0]
    size[axis], spacing[axis] = 6, 5.0
    for i, n, s in zip(plane, (12, 10), pixels, strict=True):
        size[i], spacing[i] = n, s
    array = np.zeros(size[::-1], dtype=np.int16)
    return Grid.of(make_image(array, spacing=spacing, origin=ORIGIN, direction=direction))


def corner_edges(grid: Grid) -> list[np.ndarray]:
    """World positions of the 8 outer corners of the grid's voxels (index -0.5 or n - 0.5)."""
    matrix = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    corners = []
    for high in np.ndindex(2, 2, 2):
        index = np.array([n - 0.5 if h else -0.5 for n, h in zip(grid.size, high, strict=True)])
        corners.append(np.asarray(grid.origin) + matrix @ (np.asarray(grid.spacing) * index))
    return corners


def in_plane_edges(grid: Grid, axis: int) -> list[np.ndarray]:
    """Outer corners of the first slice's pixels: index -0.5 / n - 0.5 in-plane, 0 along
    ``axis``."""
    matrix = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    plane = [i for i in range(3) if i != axis]
    corners = []
    for high in np.ndindex(2, 2):
        index = np.zeros(3)
        for i, h in zip(plane, high, strict=True):
            index[i] = grid.size[i] - 0.5 if h else -0.5
        corners.append(np.asarray(grid.origin) + matrix @ (np.asarray(grid.spacing) * index))
    return corners


@pytest.mark.parametrize("direction_name", sorted(DIRECTIONS))
@pytest.mark.parametrize("axis", [2, 0, 1])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_a_factor_tiles_the_field_of_view_exactly(direction_name, axis, factor):
    grid = scan_grid(axis, DIRECTIONS[direction_name])
    refined = in_plane_grid(grid, axis, in_plane=factor)
    plane = [i for i in range(3) if i != axis]
    for i in plane:
        assert refined.size[i] == grid.size[i] * factor
        assert refined.spacing[i] == pytest.approx(grid.spacing[i] / factor, rel=1e-12)
    assert refined.size[axis] == grid.size[axis]
    assert refined.spacing[axis] == grid.spacing[axis]
    assert refined.direction == grid.direction
    for new, old in zip(corner_edges(refined), corner_edges(grid), strict=True):
        np.testing.assert_allclose(new, old, atol=1e-9)
    # The first pixel centre moves by (old - new) / 2 towards the outer edge on both axes.
    matrix = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    shift = sum(-(grid.spacing[i] - refined.spacing[i]) / 2 * matrix[:, i] for i in plane)
    np.testing.assert_allclose(refined.origin, np.asarray(grid.origin) + shift, atol=1e-9)
    assert slice_axis(refined.spacing) == axis


def test_a_spacing_that_does_not_divide_the_field_of_view_is_centred_in_it():
    """12 pixels of 0.7 mm are 8.4 mm: 0.5 mm pixels fit 16 times (8.0 mm), 0.4 mm left over,
    0.2 mm at each side; 10 pixels (7 mm) take 14 exactly."""
    grid = scan_grid(direction=DIRECTIONS["axis-aligned"])
    refined = in_plane_grid(grid, 2, in_plane_spacing=0.5)
    assert refined.size == (16, 14, 6)
    assert refined.spacing == (0.5, 0.5, 5.0)
    first_edge = np.asarray(refined.origin) - [0.25, 0.25, 0]
    np.testing.assert_allclose(first_edge, np.asarray(ORIGIN) - [0.35, 0.35, 0] + [0.2, 0, 0])
    last_edge = np.asarray(refined.origin) + [16 * 0.5 - 0.25, 14 * 0.5 - 0.25, 0]
    old_last = np.asarray(ORIGIN) + [12 * 0.7 - 0.35, 10 * 0.7 - 0.35, 0]
    np.testing.assert_allclose(last_edge, old_last - [0.2, 0, 0], atol=1e-9)


def test_the_pixels_own_spacing_and_a_factor_of_one_keep_the_grid():
    grid = scan_grid()
    assert in_plane_grid(grid, 2) == grid
    assert in_plane_grid(grid, 2, in_plane=1) == grid
    assert in_plane_grid(grid, 2, in_plane_spacing=0.7 * (1 + 1e-9)) == grid


def test_non_square_pixels_refine_each_axis_by_the_factor_or_to_the_spacing():
    grid = scan_grid(pixels=(0.7, 0.8))
    by_factor = in_plane_grid(grid, 2, in_plane=2)
    assert by_factor.spacing == pytest.approx((0.35, 0.4, 5.0))
    to_spacing = in_plane_grid(grid, 2, in_plane_spacing=0.7)  # x stays, y is refined
    assert to_spacing.spacing == (0.7, 0.7, 5.0)
    assert to_spacing.size == (12, 11, 6)  # floor(8 mm / 0.7 mm)


def test_refined_grid_keeps_axes_whose_spacing_is_unchanged():
    grid = scan_grid()
    assert refined_grid(grid, grid.spacing) == grid


@pytest.mark.parametrize("align", ["edges", "centers"])
@pytest.mark.parametrize("direction_name", sorted(DIRECTIONS))
def test_thin_grid_refines_the_output_and_keeps_the_thin_slices(align, direction_name):
    """The paper's 3D task in small: 5 mm to 1 mm slices and x2 pixels at once."""
    grid = scan_grid(direction=DIRECTIONS[direction_name])
    plain = thin_grid(grid, spacing=1.0, align=align)
    both = thin_grid(grid, spacing=1.0, align=align, in_plane=2)
    assert both.grid == plain.grid  # what every method predicts
    assert both.source_index == plain.source_index
    assert plain.refined is None and plain.output == plain.grid
    assert both.output == both.refined == in_plane_grid(plain.grid, 2, in_plane=2)
    assert both.output.size == (24, 20, plain.grid.size[2])
    assert not both.keeps_slices


@pytest.mark.parametrize("align", ["edges", "centers"])
@pytest.mark.parametrize("target", [{"factor": 1}, {"spacing": 5.0}, {"spacing": 5.0 * (1 + 1e-9)}])
def test_a_factor_of_one_keeps_the_slices_beside_an_in_plane_refinement(align, target):
    grid = scan_grid()
    thin = thin_grid(grid, align=align, in_plane=2, **target)
    assert thin.grid == grid
    assert thin.keeps_slices
    assert thin.source_index == tuple(float(k) for k in range(6))
    assert thin.output == in_plane_grid(grid, 2, in_plane=2)
    assert not thin_grid(grid, factor=2, in_plane=2).keeps_slices


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"in_plane": 2, "in_plane_spacing": 0.35}, "give either in_plane or in_plane_spacing"),
        ({"in_plane": 0}, "in_plane must be a whole number from 1 to 8, got 0"),
        ({"in_plane": 9}, "in_plane must be a whole number from 1 to 8, got 9"),
        ({"in_plane": 1.5}, "in_plane must be a whole number"),
        ({"in_plane_spacing": 0.0}, "in_plane_spacing must be a positive number of mm"),
        ({"in_plane_spacing": math.nan}, "in_plane_spacing must be a positive number of mm"),
        ({"factor": 1}, "factor must be a whole number from 2 to 100, got 1; 1 (the slices kept)"),
        ({"factor": 1, "in_plane": 1}, "factor must be a whole number from 2"),
        ({"factor": 0, "in_plane": 2}, "factor must be a whole number from 1 to 100, got 0"),
    ],
)
def test_impossible_options_are_usage_errors_without_a_scan(options, says):
    arguments = {"spacing": None, "factor": None, **options}
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        check_target_options(**arguments)
    with pytest.raises(UsageError):
        thin_grid(scan_grid(), **arguments)


def test_the_largest_factor_is_the_in_plane_limit():
    assert MAX_IN_PLANE == 8
    assert in_plane_grid(scan_grid(), 2, in_plane=MAX_IN_PLANE).size == (96, 80, 6)


def test_a_spacing_over_the_in_plane_limit_is_a_usage_error():
    with pytest.raises(UsageError, match=r"the most is 8 \(in_plane_spacing='0.0875' or more\)"):
        in_plane_grid(scan_grid(), 2, in_plane_spacing=0.08)
    assert in_plane_grid(scan_grid(), 2, in_plane_spacing=0.0875).size == (96, 80, 6)


@pytest.mark.parametrize("spacing", [0.8, 5.0])
def test_a_spacing_coarser_than_the_pixels_is_a_geometry_error(spacing):
    with pytest.raises(GeometryError, match="pixels are already 0.7 mm"):
        in_plane_grid(scan_grid(), 2, in_plane_spacing=spacing)
    with pytest.raises(GeometryError, match="pixels are already 0.7 mm"):
        in_plane_grid(scan_grid(pixels=(0.7, 0.8)), 2, in_plane_spacing=0.75)


def test_keeping_both_the_slices_and_the_pixels_is_refused():
    with pytest.raises(GeometryError, match="not thinner, and the pixels are already that fine"):
        thin_grid(scan_grid(), factor=1, in_plane_spacing=0.7)
    with pytest.raises(GeometryError, match="not thinner$"):
        thin_grid(scan_grid(), spacing=5.0)


def test_slices_thicker_than_the_scan_stay_refused_with_a_refinement():
    with pytest.raises(GeometryError, match="a target of 6 mm is not thinner$"):
        thin_grid(scan_grid(), spacing=6.0, in_plane=2)
