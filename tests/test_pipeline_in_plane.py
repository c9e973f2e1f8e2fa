"""`thinct.upsample_volume` with in-plane refinement: slices by the method or the model, then
the pixels by interpolation (B-spline after a model), the consistency projection still exact,
a factor of 1 for the pixels alone, and outputs too large for the memory refused first.

The shipped default model runs on a small crop of the example (a second on a CPU); no test
depends on what it predicts, only on what is done with it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.volumes import make_image

from thinct import read_volume, upsample_volume
from thinct.errors import ThinctWarning, UsageError
from thinct.geometry import Grid, in_plane_grid, thin_grid
from thinct.models import load_model
from thinct.pipeline import check_output_size, in_plane_method
from thinct.resample.interpolation import refine_in_plane
from thinct.volume import Volume

GIB = 2**30


@pytest.fixture(scope="module")
def crop(example_thick) -> Volume:
    """5 thick slices of 37 x 42 pixels of the example."""
    volume = read_volume(example_thick)
    return volume.with_image(volume.image[0:37, 80:122, 4:9], volume.slice_thickness)


@pytest.fixture(scope="module")
def model():
    return load_model(None)


def array(volume: Volume) -> np.ndarray:
    return sitk.GetArrayFromImage(volume.image)


def test_a_model_makes_the_slices_and_a_b_spline_the_pixels(crop, model):
    thin = thin_grid(Grid.of(crop.image), spacing=1.0, in_plane=2)
    result = upsample_volume(crop, spacing=1.0, model=model, in_plane=2)
    assert Grid.of(result.image) == thin.output
    slices = upsample_volume(crop, spacing=1.0, model=model)
    assert Grid.of(slices.image) == thin.grid
    expected = refine_in_plane(slices, thin.output, thin.axis, "bspline")
    np.testing.assert_array_equal(array(result), array(expected))
    assert in_plane_method("bspline", model) == "bspline"
    assert in_plane_method("lanczos", None) == "lanczos"


@pytest.mark.parametrize("method", ["nearest", "lanczos"])
def test_an_interpolation_refines_the_pixels_with_itself(crop, method):
    thin = thin_grid(Grid.of(crop.image), factor=5, in_plane_spacing=0.4)
    result = upsample_volume(crop, method, factor=5, in_plane_spacing=0.4)
    slices = upsample_volume(crop, method, factor=5)
    expected = refine_in_plane(slices, thin.output, thin.axis, method)
    np.testing.assert_array_equal(array(result), array(expected))


@pytest.mark.parametrize("factor", [1, 5])
def test_the_consistent_slices_average_back_to_the_refined_thick_slices(crop, factor):
    """The projection acts along the slices and the refinement within them, both linear, so
    projecting first and refining after gives thin slices whose slab means are the thick
    slices refined the same way, exactly (boxcar slabs of `factor` thin slices)."""
    crop = crop.with_image(crop.image, slice_thickness=5.0)
    result = array(upsample_volume(crop, "linear", factor=factor, in_plane=2, consistency="boxcar"))
    float_crop = crop.with_image(sitk.Cast(crop.image, sitk.sitkFloat32), 5.0)
    refined_thick = array(
        refine_in_plane(float_crop, in_plane_grid(Grid.of(crop.image), 2, in_plane=2), 2, "linear")
    )
    slab_means = result.reshape(5, factor, *result.shape[1:]).mean(axis=1)
    np.testing.assert_allclose(slab_means, refined_thick, atol=0.05)


def test_a_factor_of_one_refines_the_pixels_of_the_input_slices(crop):
    result = upsample_volume(crop, "bspline", factor=1, in_plane=2)
    grid = Grid.of(result.image)
    assert grid.size == (74, 84, 5)
    assert grid.spacing[2] == crop.image.GetSpacing()[2]
    assert result.slice_thickness == crop.slice_thickness  # the slices are the input's
    float_crop = crop.with_image(sitk.Cast(crop.image, sitk.sitkFloat32), crop.slice_thickness)
    expected = refine_in_plane(float_crop, grid, 2, "bspline")
    np.testing.assert_array_equal(array(result), array(expected))


def test_a_factor_of_one_leaves_a_model_nothing_to_do(crop, model):
    with pytest.raises(UsageError, match="leaves a model nothing to predict"):
        upsample_volume(crop, model=model, factor=1, in_plane=2)


def test_without_in_plane_options_nothing_changes(crop):
    thin = thin_grid(Grid.of(crop.image))
    assert Grid.of(upsample_volume(crop, "linear", in_plane=1).image) == thin.grid


# --- the size of the output -------------------------------------------------------------


def huge() -> Grid:
    """The x4 in-plane output of 300 slices of 5 mm made 1 mm: 2048 x 2048 x 1500 voxels,
    about 70 GiB while it is made and written (three float32 copies)."""
    return Grid((2048, 2048, 1500), (0.17, 0.17, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_an_output_larger_than_the_memory_is_refused():
    with pytest.raises(UsageError) as refused:
        check_output_size(huge(), memory=64 * GIB)
    message = str(refused.value)
    assert message.startswith("the 2048 x 2048 x 1500 output needs about 70.3 GiB of memory")
    assert "more than the 64.0 GiB of this machine" in message
    assert "in_plane" in message and "\n" not in message


def test_an_output_over_half_the_memory_warns():
    with pytest.warns(ThinctWarning, match="over half of the 128.0 GiB of this machine"):
        check_output_size(huge(), memory=128 * GIB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_output_size(huge(), memory=256 * GIB)


def test_the_size_is_checked_before_any_work():
    """4 slices of 2048 x 2048 pixels made 100 times thinner with 8 x 8 pixels each: 16384 x
    16384 x 400 voxels, more than any machine holds, refused before a voxel is made."""
    big = Volume(make_image(np.zeros((4, 2048, 2048), np.int16)))
    heard: list[float] = []
    with pytest.raises(UsageError, match="16384 x 16384 x 400 output needs about 1200.0 GiB"):
        upsample_volume(big, "nearest", factor=100, in_plane=8, progress=heard.append)
    assert heard == []
