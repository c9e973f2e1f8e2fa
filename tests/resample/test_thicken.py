"""`thinct.resample.thicken`: images on a thin grid back onto their thick grid, with exact slab
weights, majority labels, and refusals for images that were not made from the scan."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import DIRECTIONS, make_image

from thinct.errors import GeometryError
from thinct.geometry import Grid, thin_grid
from thinct.resample.thicken import thicken


def _thick(direction_name: str = "oblique") -> sitk.Image:
    array = np.zeros((6, 10, 12), dtype=np.float32)
    return make_image(array, spacing=(0.8, 0.8, 5.0), direction=DIRECTIONS[direction_name])


def _on_grid(grid: Grid, values_along_slices: np.ndarray) -> sitk.Image:
    """An image of ``grid`` whose value depends on the slice index only."""
    array = np.broadcast_to(
        values_along_slices[:, None, None], (grid.size[2], grid.size[1], grid.size[0])
    )
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    grid.apply_to_image(image)
    return image


@pytest.mark.parametrize("spacing", [1.0, 0.5])
@pytest.mark.parametrize("align", ["edges", "centers"])
def test_a_ramp_comes_back_as_its_slab_means(spacing, align):
    """Along the slice axis a linear ramp sampled symmetrically about each slab centre
    averages, over any fully covered slab, to its value there."""
    thick = Grid.of(_thick())
    thin = thin_grid(thick, spacing=spacing, align=align)
    ramp = 10.0 * np.asarray(thin.source_index)  # 10 per thick slice, 0 at the first centre
    result = thicken(_on_grid(thin.grid, ramp.astype(np.float32)), thick)
    assert Grid.of(result) == thick
    means = sitk.GetArrayViewFromImage(result)[:, 0, 0]
    inner = slice(1, -1)  # the outer slabs are only partly covered by some grids
    assert np.allclose(means[inner], 10.0 * np.arange(6)[inner], atol=1e-4)


def test_thin_slices_across_a_slab_edge_count_by_overlap():
    """2 mm slices of 5 mm slabs: each thin slice is a box, weighted by the length inside the
    slab. Slab 1 spans 2.5-7.5 mm from the first centre and holds 1 mm of the slice centred at
    2.5 mm and all of those at 4.5 and 6.5 mm: (1 x 5 + 2 x 9 + 2 x 13) / 5 = 9.8."""
    thick = Grid.of(_thick())
    thin = thin_grid(thick, spacing=2.0, align="edges")
    ramp = 10.0 * np.asarray(thin.source_index)
    result = thicken(_on_grid(thin.grid, ramp.astype(np.float32)), thick)
    assert np.allclose(sitk.GetArrayViewFromImage(result)[1:3, 0, 0], [9.8, 20.2], atol=1e-4)


def test_labels_take_the_majority_of_each_slab():
    thick = Grid.of(_thick("flipped"))
    thin = thin_grid(thick, factor=5)
    labels = np.array([0, 0, 0, 2, 2] + [1] * 5 + [3, 3, 1, 1, 1] + [0] * 15, dtype=np.uint8)
    result = thicken(_on_grid(thin.grid, labels), thick, labels=True)
    assert result.GetPixelID() == sitk.sitkUInt8
    assert sitk.GetArrayViewFromImage(result)[:, 0, 0].tolist() == [0, 1, 1, 0, 0, 0]


def test_a_tie_goes_to_the_smaller_label():
    thick = Grid.of(_thick("flipped"))
    thin = thin_grid(thick, factor=2)
    labels = np.array([4, 1] * 6, dtype=np.int16)
    result = thicken(_on_grid(thin.grid, labels), thick, labels=True)
    assert set(sitk.GetArrayViewFromImage(result).ravel()) == {1}


def test_images_not_made_from_the_scan_are_refused():
    thick_image = _thick("flipped")
    thick = Grid.of(thick_image)
    thin = thin_grid(thick, factor=5).grid
    shifted = Grid(
        thin.size, thin.spacing, (thin.origin[0] + 1.0, *thin.origin[1:]), thin.direction
    )
    with pytest.raises(GeometryError, match="shifted in-plane"):
        thicken(_on_grid(shifted, np.zeros(30, np.float32)), thick)
    other = Grid((5, *thin.size[1:]), thin.spacing, thin.origin, thin.direction)
    with pytest.raises(GeometryError, match="in-plane grid"):
        thicken(_on_grid(other, np.zeros(30, np.float32)), thick)
    short = Grid((*thin.size[:2], 10), thin.spacing, thin.origin, thin.direction)
    with pytest.raises(GeometryError, match="thick slice 2 is not covered"):
        thicken(_on_grid(short, np.zeros(10, np.float32)), thick)
    vector = sitk.Compose([thick_image, thick_image])
    with pytest.raises(GeometryError, match="single-channel"):
        thicken(vector, thick)


# --- pixels refined in-plane ------------------------------------------------------------


def _blocks(thin: Grid, thick: Grid, values: np.ndarray) -> sitk.Image:
    """An image on ``thin`` holding, in each voxel, ``values`` (z, y, x) of the thick voxel
    whose box holds its centre."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in thin.size], indexing="ij"), axis=-1)
    world = thin.index_to_world(index)
    matrix = thick.matrix
    local = ((world - np.asarray(thick.origin)) @ matrix) / np.asarray(thick.spacing)
    k = np.clip(np.rint(local).astype(int), 0, np.asarray(thick.size) - 1)
    image = sitk.GetImageFromArray(np.transpose(values[k[..., 2], k[..., 1], k[..., 0]], (2, 1, 0)))
    thin.apply_to_image(image)
    return image


@pytest.mark.parametrize("refine", [{"in_plane": 2}, {"in_plane": 3}])
@pytest.mark.parametrize("direction_name", sorted(DIRECTIONS))
def test_refined_pixels_come_back_as_their_thick_voxels(refine, direction_name):
    """Thin voxels that copy their thick voxel (slices and pixels refined by whole factors)
    average and vote back to exactly the thick voxels."""
    thick = Grid.of(_thick(direction_name))
    thin = thin_grid(thick, factor=5, **refine).output
    values = np.random.default_rng(0).normal(0, 100, thick.size[::-1]).astype(np.float32)
    back = thicken(_blocks(thin, thick, values), thick)
    assert Grid.of(back) == thick
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(back), values, atol=1e-3)
    labels = np.random.default_rng(1).integers(0, 4, thick.size[::-1]).astype(np.uint8)
    voted = thicken(_blocks(thin, thick, labels), thick, labels=True)
    assert voted.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(voted), labels)


def test_a_spacing_that_does_not_divide_the_field_of_view_counts_by_overlap():
    """0.8 mm pixels to 0.5 mm: 10 pixels (8 mm) take 16, 12 (9.6 mm) take 19 centred. A
    ramp across x, sampled at the thin pixel centres, comes back within a twentieth of a pixel
    of the thick pixel centres (thin pixels that straddle two thick ones count by overlap), and
    a constant exactly."""
    thick = Grid.of(_thick("axis-aligned"))
    thin = thin_grid(thick, factor=5, in_plane_spacing=0.5).output
    assert thin.size[:2] == (19, 16)
    x = (np.asarray(thin.origin[0]) + 0.5 * np.arange(19) - thick.origin[0]) / 0.8
    ramp = np.broadcast_to(x.astype(np.float32), (thin.size[2], 16, 19))
    image = sitk.GetImageFromArray(np.ascontiguousarray(ramp))
    thin.apply_to_image(image)
    back = sitk.GetArrayFromImage(thicken(image, thick))
    assert np.abs(back[:, :, 1:-1] - np.arange(12)[1:-1]).max() < 0.05  # outer: partly covered
    constant = sitk.GetImageFromArray(np.full(ramp.shape, 40.0, np.float32))
    thin.apply_to_image(constant)
    np.testing.assert_allclose(sitk.GetArrayFromImage(thicken(constant, thick)), 40.0)


def test_refined_pixels_shifted_against_the_scan_are_refused():
    thick = Grid.of(_thick("oblique"))
    thin = thin_grid(thick, factor=5, in_plane=2).output
    moved = thick.matrix[:, 0] * 0.2  # less than a pixel, along x
    shifted = Grid(thin.size, thin.spacing, tuple(np.asarray(thin.origin) + moved), thin.direction)
    with pytest.raises(GeometryError, match="shifted in-plane"):
        thicken(_on_grid(shifted, np.zeros(30, np.float32)), thick)
    wider = Grid((thin.size[0] + 1, *thin.size[1:]), thin.spacing, thin.origin, thin.direction)
    with pytest.raises(GeometryError, match="in-plane grid"):
        thicken(_on_grid(wider, np.zeros(30, np.float32)), thick)
