"""The panels' "in-plane factor" in a real napari window: the thin layer's pixels are refined
over the input's field of view, carried labels follow, a factor of 1 refines the pixels alone,
and the batch panel writes what ``thinct upsample --in-plane`` writes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.cli import assert_ok, thinct
from helpers.napari_window import needs_window
from helpers.paths import EXAMPLES
from npe2 import PluginManifest

from thinct_napari._sample_data import EXAMPLE_SCAN
from thinct_napari.geometry import data_to_world, layer_attributes

pytestmark = needs_window
RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def viewer(make_napari_viewer, npe2pm):
    npe2pm.register(PluginManifest.from_distribution("thinct"))
    viewer = make_napari_viewer()
    viewer.open_sample("thinct", "chest_ct_5mm")
    return viewer


def panel(viewer, name: str):
    _dock, widget = viewer.window.add_plugin_dock_widget("thinct", name)
    return widget


def run_and_wait(widget, qtbot) -> None:
    widget.controls.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.controls.running, timeout=RUN_TIMEOUT_MS)


def outer_corner(layer, slice_index: float, last: bool) -> np.ndarray:
    """World (z, y, x) of the outer corner of the first (or last) pixel of a slice."""
    rows, columns = layer.data.shape[1:]
    index = [slice_index, rows - 0.5, columns - 0.5] if last else [slice_index, -0.5, -0.5]
    return (data_to_world(layer_attributes(layer)) @ [*index, 1])[:3]


def test_the_refined_layer_covers_the_input_and_carries_its_labels(viewer, qtbot):
    widget = panel(viewer, "Thin slices")
    source = viewer.layers[0]
    lungs = (np.asarray(source.data) < -400).astype(np.uint8)
    labels = viewer.add_labels(lungs, name="lungs", scale=source.scale, translate=source.translate)
    widget.image.value = source
    widget.carry.value = [labels]
    widget.settings.choose("method:linear")
    widget.settings.target.value = "factor"
    widget.settings.factor.value = 5
    widget.settings.in_plane.value = 2
    run_and_wait(widget, qtbot)

    thin, thin_labels = viewer.layers[-2], viewer.layers[-1]
    assert thin.data.shape == thin_labels.data.shape == (80, 384, 384)
    np.testing.assert_allclose(thin.scale[1:], np.divide(source.scale[1:], 2))
    assert "x5 x2 in-plane" in thin.name
    assert thin.metadata["thinct"]["in_plane"] == 2
    assert widget.controls.status.value.endswith("80 slices, 1 mm, 384 x 384 pixels")
    # Thick slice k's centre is thin slice 2 + 5 k: there the outer pixel corners coincide.
    for k in (0, 15):
        for last in (False, True):
            np.testing.assert_allclose(
                outer_corner(thin, 2 + 5 * k, last), outer_corner(source, k, last), atol=1e-9
            )
    # Nearest neighbour: each thick pixel's label fills its 2 x 2 refined pixels.
    np.testing.assert_array_equal(thin_labels.data[2, ::2, ::2], lungs[0])
    np.testing.assert_array_equal(thin_labels.data[2, 1::2, 1::2], lungs[0])


def test_a_factor_of_one_refines_the_pixels_alone_and_not_with_a_model(viewer, qtbot):
    widget = panel(viewer, "Thin slices")
    widget.settings.target.value = "factor"
    widget.settings.factor.value = 1
    widget.settings.in_plane.value = 2
    run_and_wait(widget, qtbot)  # the default model: nothing for it to predict
    assert widget.controls.status.value.startswith("error: a factor of 1 keeps the slices")
    widget.settings.in_plane.value = 1
    run_and_wait(widget, qtbot)
    assert "1 (the slices kept) needs in_plane" in widget.controls.status.value
    assert len(viewer.layers) == 1
    widget.settings.choose("method:bspline")
    widget.settings.in_plane.value = 3
    run_and_wait(widget, qtbot)
    assert viewer.layers[-1].data.shape == (16, 576, 576)


def test_batch_writes_what_the_cli_writes(viewer, tmp_path, qtbot):
    folder = tmp_path / "thick"
    folder.mkdir()
    shutil.copy(EXAMPLES / EXAMPLE_SCAN, folder / "a.nii.gz")
    widget = panel(viewer, "Batch thin slices")
    widget.input_folder.value = folder
    widget.output_folder.value = tmp_path / "thin"
    widget.settings.choose("method:linear")
    widget.settings.in_plane.value = 2
    run_and_wait(widget, qtbot)
    assert widget.controls.status.value.startswith("1 done"), widget.controls.status.value

    args = ["--method", "linear", "--in-plane", "2", "--quiet"]
    assert_ok(thinct("upsample", folder / "a.nii.gz", "cli.nii.gz", *args, cwd=tmp_path))
    by_panel = sitk.ReadImage(str(tmp_path / "thin" / "a.nii.gz"))
    by_cli = sitk.ReadImage(str(tmp_path / "cli.nii.gz"))
    assert by_panel.GetSize() == by_cli.GetSize() == (384, 384, 80)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(by_panel), sitk.GetArrayFromImage(by_cli))
