"""The napari layer placement of a scan (thinct_napari.geometry): napari's own layer transforms
put every voxel at the scan's physical point, and a layer goes back to the exact geometry.
No Qt: napari layers and their transforms work without a viewer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import DIRECTIONS, hu_array, make_image
from napari.layers import Image

from thinct import Volume, upsample_volume
from thinct.errors import GeometryError
from thinct_napari.geometry import data_to_world, image_from_layer, image_geometry, layer_transform

# napari warns that it shows a 2D slice of an oblique layer without its out-of-plane rotation:
# a display limit, not a placement error (data_to_world is exact, as these tests check).
pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")

SPACING = (0.7, 0.8, 5.0)
ORIGIN = (-30.5, 20.25, -100.125)


def scan(direction, shape=(6, 10, 12), spacing=SPACING) -> sitk.Image:
    return make_image(hu_array(shape), spacing=spacing, origin=ORIGIN, direction=direction)


def physical_zyx(image: sitk.Image, data_index) -> np.ndarray:
    """ITK's physical point of a (z, y, x) data index, listed as (z, y, x)."""
    index = [float(v) for v in reversed(data_index)]
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(index))[::-1]


def corners(shape) -> list[tuple[int, ...]]:
    return list(itertools.product(*[(0, n - 1) for n in shape]))


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_napari_puts_every_voxel_at_its_physical_point(name):
    image = scan(DIRECTIONS[name])
    array = sitk.GetArrayFromImage(image)
    layer = Image(array, **layer_transform(image))
    for index in [*corners(array.shape), (2.5, 4.25, 7.0)]:
        np.testing.assert_allclose(
            layer.data_to_world(index), physical_zyx(image, index), rtol=0, atol=1e-9
        )


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_layer_back_to_the_exact_geometry(name):
    image = scan(DIRECTIONS[name])
    array = sitk.GetArrayFromImage(image)
    layer = Image(array, **layer_transform(image))
    state = layer._get_state()  # what napari hands a writer plugin
    for transform in (layer_transform(image), state):
        spacing, origin, direction = image_geometry(transform)
        assert spacing == image.GetSpacing()
        assert origin == image.GetOrigin()
        assert direction == image.GetDirection()
    back = image_from_layer(layer.data, state)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)


def test_axis_aligned_scan_needs_no_affine():
    """Most CT is axis-aligned: scale and translate alone place it, as other plugins expect."""
    transform = layer_transform(scan(DIRECTIONS["axis-aligned"]))
    assert transform["scale"] == SPACING[::-1]
    assert transform["translate"] == ORIGIN[::-1]
    np.testing.assert_array_equal(transform["affine"], np.eye(4))


def test_flipped_and_oblique_scans_keep_positive_scales():
    for name in ("flipped", "oblique"):
        transform = layer_transform(scan(DIRECTIONS[name]))
        assert transform["scale"] == SPACING[::-1]
        assert transform["translate"] == ORIGIN[::-1]


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_moved_or_rotated_layer_is_written_where_napari_shows_it(name):
    image = scan(DIRECTIONS[name])
    layer = Image(sitk.GetArrayFromImage(image), **layer_transform(image))
    layer.translate = np.asarray(layer.translate) + (3.0, -2.0, 1.5)
    layer.rotate = [[1, 0, 0], [0, 0.6, -0.8], [0, 0.8, 0.6]]
    written = image_from_layer(layer.data, layer._get_state())
    for index in corners(layer.data.shape):
        np.testing.assert_allclose(
            physical_zyx(written, index), layer.data_to_world(index), rtol=0, atol=1e-9
        )


def test_data_to_world_matches_napari():
    image = scan(DIRECTIONS["oblique"])
    layer = Image(sitk.GetArrayFromImage(image), **layer_transform(image))
    np.testing.assert_allclose(
        data_to_world(layer._get_state()), layer._data_to_world.affine_matrix, atol=1e-12
    )


@pytest.mark.parametrize("name", list(DIRECTIONS))
@pytest.mark.parametrize("align", ["edges", "centers"])
def test_thin_layer_overlays_its_thick_layer(name, align):
    """A thin volume from `upsample_volume` lands with its thick-slice centres on the thick
    layer's: the same world points, the same voxel values there (linear interpolation passes
    through the thick samples), and, with ``edges``, the same world extent of the slabs."""
    thick_image = scan(DIRECTIONS[name], shape=(5, 8, 9))
    thin_volume = upsample_volume(Volume(thick_image), method="linear", factor=4, align=align)
    thick = Image(sitk.GetArrayFromImage(thick_image), **layer_transform(thick_image))
    thin = Image(thin_volume.array, **layer_transform(thin_volume.image))
    first = 1.5 if align == "edges" else 0.0  # thin index of the first thick centre
    for k in range(thick.data.shape[0]):
        for j, i in ((0, 0), (7, 8), (3, 5)):
            world = thick.data_to_world((k, j, i))
            np.testing.assert_allclose(
                thin.world_to_data(world), (first + 4 * k, j, i), rtol=0, atol=1e-9
            )
            if align == "centers":
                assert thin.data[4 * k, j, i] == pytest.approx(thick.data[k, j, i], abs=1e-3)
    if align == "edges":
        np.testing.assert_allclose(outer_edges(thin), outer_edges(thick), rtol=0, atol=1e-9)


def outer_edges(layer: Image) -> np.ndarray:
    """World points of the outer faces of the first and last slice (at in-plane voxel 0)."""
    last = layer.data.shape[0] - 1
    return np.array([layer.data_to_world((-0.5, 0, 0)), layer.data_to_world((last + 0.5, 0, 0))])


def test_sheared_layer_is_refused_in_one_line():
    layer = Image(np.zeros((3, 4, 5)), shear=[0.5, 0, 0])
    with pytest.raises(GeometryError) as error:
        image_from_layer(layer.data, layer._get_state())
    assert "sheared" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5)])
def test_only_3d_layers_become_volumes(shape):
    layer = Image(np.zeros(shape))
    with pytest.raises(GeometryError, match=f"a {len(shape)}D layer"):
        image_from_layer(layer.data, layer._get_state())
