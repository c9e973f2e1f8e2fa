"""The "Thin slices" panel in a real napari window: opened from the plugin's manifest, run on
the shipped sample in a background thread, and checked where its layers land in the world."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.napari_window import needs_window
from helpers.paths import EXAMPLES
from npe2 import PluginManifest

from thinct import read_volume, upsample_volume
from thinct.models import load_model
from thinct.resample.interpolation import resample_labels
from thinct.windows import WINDOWS
from thinct_napari._sample_data import EXAMPLE_SCAN
from thinct_napari.geometry import data_to_world, layer_attributes, layer_transform

pytestmark = needs_window
RUN_TIMEOUT_MS = 180_000  # the shipped model on the 16-slice sample: seconds, on 2 busy cores


@pytest.fixture
def viewer(make_napari_viewer, npe2pm):
    """A napari window with thinct's sample open (plugin registered from its entry point)."""
    npe2pm.register(PluginManifest.from_distribution("thinct"))
    viewer = make_napari_viewer()
    viewer.open_sample("thinct", "chest_ct_5mm")
    return viewer


@pytest.fixture
def widget(viewer):
    """The panel as napari docks it from the manifest's widget contribution."""
    _dock, panel = viewer.window.add_plugin_dock_widget("thinct", "Thin slices")
    return panel


def run_and_wait(panel, qtbot) -> None:
    panel.controls.run_button.native.click()
    qtbot.waitUntil(lambda: not panel.controls.running, timeout=RUN_TIMEOUT_MS)


def hidden(field) -> bool:
    """Hidden by the panel (``visible`` is False for every field while the window is not
    shown, as in these tests)."""
    return field.native.isHidden()


def world_of_slice(layer, index: float) -> np.ndarray:
    """World (z, y, x) of voxel (index, 0, 0) of a layer."""
    return (data_to_world(layer_attributes(layer)) @ [index, 0, 0, 1])[:3]


def thick_image() -> sitk.Image:
    return sitk.ReadImage(str(EXAMPLES / EXAMPLE_SCAN))


def test_shipped_model_adds_a_thin_layer_that_overlays_the_input(viewer, widget, qtbot):
    (source,) = viewer.layers
    assert widget.image.value is source
    assert widget.settings.engine.value == "thickgrid"  # the default model, on top
    run_and_wait(widget, qtbot)

    assert widget.controls.status.value.startswith("added ")
    thin = viewer.layers[-1]
    thick = thick_image()
    assert thin.data.shape == (16 * 5, 192, 192)  # edges: the whole extent of 16 slabs of 5 mm
    np.testing.assert_allclose(thin.scale, [1.0, *thick.GetSpacing()[1::-1]])
    # First and last thin slices sit 2 mm inside the outer slab edges; thick slice k's centre
    # is thin slice 2 + 5 k, at the very same world position.
    first_centre = np.array(thick.GetOrigin()[::-1])
    last_centre = np.array(thick.TransformIndexToPhysicalPoint([0, 0, 15])[::-1])
    np.testing.assert_allclose(world_of_slice(thin, 0), first_centre - [2.0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(world_of_slice(thin, 79), last_centre + [2.0, 0, 0], atol=1e-9)
    for k in range(16):
        np.testing.assert_allclose(
            world_of_slice(thin, 2 + 5 * k), world_of_slice(source, k), atol=1e-9
        )
    # The voxels are the engine's, exactly as thinct.upsample_volume (and the CLI) make them.
    expected = upsample_volume(read_volume(EXAMPLES / EXAMPLE_SCAN), model=load_model(None))
    np.testing.assert_array_equal(thin.data, expected.array)
    assert thin.metadata["thinct"]["made_by"] == "thickgrid"
    assert thin.contrast_limits == list(WINDOWS["lung"].contrast_limits)


def test_centers_and_a_factor_put_the_ends_on_the_thick_centres(viewer, widget, qtbot):
    source = viewer.layers[0]
    widget.settings.choose("method:linear")
    widget.settings.target.value = "factor"
    widget.settings.factor.value = 4
    widget.settings.align.value = "centers"
    # The engine's options mean nothing to an interpolation; they are hidden.
    assert hidden(widget.settings.tile) and not hidden(widget.settings.factor)
    run_and_wait(widget, qtbot)

    thin = viewer.layers[-1]
    assert thin.data.shape == (15 * 4 + 1, 192, 192)
    assert thin.scale[0] == pytest.approx(1.25)
    np.testing.assert_allclose(world_of_slice(thin, 0), world_of_slice(source, 0), atol=1e-9)
    np.testing.assert_allclose(world_of_slice(thin, 60), world_of_slice(source, 15), atol=1e-9)
    # Linear interpolation reproduces each thick slice where a thin slice coincides with it.
    np.testing.assert_allclose(thin.data[::4], source.data, atol=1e-3)


def test_cancel_stops_the_run_and_adds_nothing(viewer, widget, qtbot):
    widget.settings.device.value = "cpu"  # a GPU could finish before Cancel is pressed
    widget.settings.tile.value = 32  # many small forward passes: time to press Cancel
    widget.controls.run_button.native.click()
    qtbot.waitUntil(lambda: widget.controls.progress.value > 0, timeout=RUN_TIMEOUT_MS)
    assert widget.controls.cancel_button.enabled
    widget.controls.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.controls.running, timeout=RUN_TIMEOUT_MS)

    assert len(viewer.layers) == 1
    assert widget.controls.status.value.startswith("cancelled")
    assert widget.controls.progress.value < widget.controls.progress.max
    assert widget.controls.run_button.enabled and not widget.controls.cancel_button.enabled


def test_labels_on_the_grid_are_carried_by_nearest_neighbour(viewer, widget, qtbot):
    source = viewer.layers[0]
    lungs = (np.asarray(source.data) < -400).astype(np.uint8) * 2
    placement = layer_transform(thick_image())
    labels = viewer.add_labels(lungs, name="lungs", **placement)
    viewer.add_labels(lungs[:8], name="half", **placement)  # another shape
    moved = dict(placement, translate=np.add(placement["translate"], [0, 0, 0.01]))
    viewer.add_labels(lungs, name="moved", **moved)  # same shape, 10 micrometres aside
    widget.image.value = source
    assert widget.carry.choices == (labels,)  # only labels on the image's own grid
    widget.carry.value = [labels]
    widget.settings.choose("method:bspline")
    run_and_wait(widget, qtbot)

    thin, thin_labels = viewer.layers[-2], viewer.layers[-1]
    assert thin_labels.name.startswith("lungs thin 1 mm")
    assert thin_labels.data.dtype == np.uint8
    assert thin_labels.data.shape == thin.data.shape
    np.testing.assert_array_equal(thin_labels.scale, thin.scale)
    np.testing.assert_array_equal(thin_labels.translate, thin.translate)
    label_image = sitk.GetImageFromArray(lungs)
    label_image.CopyInformation(thick_image())
    expected = resample_labels(label_image, _grid_of(thin))
    np.testing.assert_array_equal(thin_labels.data, sitk.GetArrayFromImage(expected))
    assert set(np.unique(thin_labels.data)) == {0, 2}


def _grid_of(layer):
    from thinct.geometry import Grid
    from thinct_napari.geometry import image_geometry

    spacing, origin, direction = image_geometry(layer_attributes(layer))
    return Grid(tuple(layer.data.shape[::-1]), spacing, origin, direction)


def test_window_presets_apply_to_the_input_and_its_result(viewer, widget, qtbot):
    source = viewer.layers[0]
    widget.settings.choose("method:linear")
    run_and_wait(widget, qtbot)
    thin = viewer.layers[-1]
    for name, window in WINDOWS.items():
        widget.window.value = name
        assert source.contrast_limits == pytest.approx(window.contrast_limits)
        assert thin.contrast_limits == pytest.approx(window.contrast_limits)


def test_side_by_side_shows_each_image_with_its_labels(viewer, widget, qtbot):
    source = viewer.layers[0]
    bone = (np.asarray(source.data) > 200).astype(np.uint8)
    labels = viewer.add_labels(bone, name="bone", **layer_transform(thick_image()))
    other = viewer.add_points([[0, 0, 0]], name="marks")
    widget.image.value = source
    widget.carry.value = [labels]
    widget.settings.choose("method:linear")
    run_and_wait(widget, qtbot)
    thin, thin_labels = viewer.layers[-2], viewer.layers[-1]

    widget.compare.value = True
    grid = viewer.canvas.grid
    assert grid.enabled and grid.stride == 2 and grid.shape == (1, 2)
    assert list(viewer.layers)[:4] == [source, labels, thin, thin_labels]
    assert not other.visible
    layers = list(viewer.layers)
    assert grid.position(0, layers) == grid.position(1, layers) == (0, 0)
    assert grid.position(2, layers) == grid.position(3, layers) == (0, 1)

    widget.compare.value = False
    assert not grid.enabled
    assert other.visible


def test_compare_before_a_run_is_refused(viewer, widget):
    widget.compare.value = True
    assert not widget.compare.value and not viewer.canvas.grid.enabled
    assert widget.controls.status.value.startswith("error: run on this image first")


def test_compare_after_a_carried_label_layer_was_removed_is_refused(viewer, widget, qtbot):
    source = viewer.layers[0]
    mask = (np.asarray(source.data) > 200).astype(np.uint8)
    labels = viewer.add_labels(mask, name="bone", **layer_transform(thick_image()))
    widget.image.value = source
    widget.carry.value = [labels]
    widget.settings.choose("method:nearest")
    run_and_wait(widget, qtbot)
    viewer.layers.remove(labels)
    widget.compare.value = True
    assert not widget.compare.value and not viewer.canvas.grid.enabled
    assert widget.controls.status.value.startswith("error: run on this image first")


def test_layers_of_other_types_are_converted_or_refused_in_one_line(viewer, widget, qtbot):
    source = viewer.layers[0]
    half = viewer.add_image(
        np.asarray(source.data, dtype=np.float16),
        name="half floats",
        **layer_transform(thick_image()),
    )
    widget.image.value = half
    widget.settings.choose("method:linear")
    run_and_wait(widget, qtbot)
    assert viewer.layers[-1].data.shape == (80, 192, 192)

    flat = viewer.add_image(np.zeros((192, 192), np.int16), name="flat")
    widget.image.value = flat
    widget.controls.run_button.native.click()
    assert not widget.controls.running
    assert widget.controls.status.value == "error: a 2D layer; thinct works on 3D volumes"


def test_a_hub_model_that_is_not_there_is_a_one_line_error(
    viewer, widget, qtbot, monkeypatch, tmp_path
):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    widget.settings.choose("hf://nobody/nothing")
    assert not hidden(widget.settings.hub) and hidden(widget.settings.folder)
    run_and_wait(widget, qtbot)
    status = widget.controls.status.value
    assert status.startswith("error: hf://nobody/nothing") and "\n" not in status
    assert len(viewer.layers) == 1


def test_no_image_and_an_empty_folder_are_refused_before_running(make_napari_viewer, npe2pm):
    npe2pm.register(PluginManifest.from_distribution("thinct"))
    viewer = make_napari_viewer()
    _dock, panel = viewer.window.add_plugin_dock_widget("thinct", "Thin slices")
    panel.controls.run_button.native.click()
    assert panel.controls.status.value.startswith("error: open a CT volume first")
    assert not panel.controls.running
    viewer.open_sample("thinct", "chest_ct_5mm")
    assert panel.image.value is viewer.layers[0]  # picked up when it opens
    panel.settings.engine.value = "folder"
    panel.controls.run_button.native.click()
    assert panel.controls.status.value.startswith("error: choose a model folder")
    assert len(viewer.layers) == 1
