"""The napari plugin's manifest, reader, writer and sample data, through npe2 and napari's own
reading and saving (no Qt: napari's ViewerModel opens files and samples without a window)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.errors import assert_clean_error
from helpers.paths import EXAMPLES, ROOT
from helpers.volumes import DIRECTIONS, hu_array, make_image
from napari.components import ViewerModel
from napari.layers import Image
from napari.plugins.io import save_layers
from npe2 import PluginManifest

from thinct import ThinctError, Volume, read_volume, write_volume
from thinct.windows import WINDOWS
from thinct_napari._reader import get_reader, read_layers
from thinct_napari._sample_data import EXAMPLE_SCAN
from thinct_napari._writer import write_image
from thinct_napari.geometry import image_from_layer, layer_transform

PACKAGE = ROOT / "src" / "thinct_napari"
pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")


@pytest.fixture
def plugin(npe2pm):
    """napari's plugin manager with only thinct registered, from its installed entry point
    (npe2's test manager: no discovery of whatever else is installed)."""
    npe2pm.register(PluginManifest.from_distribution("thinct"))
    return npe2pm


def test_manifest_is_valid_and_installed():
    """What `npe2 validate thinct --imports` checks: the schema, and every command importable,
    for the manifest napari finds through the package's entry point."""
    manifest = PluginManifest.from_distribution("thinct")
    manifest.validate_imports()
    assert manifest.name == "thinct"
    packaged = PluginManifest.from_file(PACKAGE / "napari.yaml")
    assert manifest.contributions == packaged.contributions


def test_npe2_validate_accepts_the_installed_plugin():
    """napari's own command-line check, as a plugin author (and napari-hub) runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "thinct", "--imports"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "NO_COLOR": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Manifest for 'thinct' valid" in result.stdout


def test_top_level_manifest_is_the_packaged_one():
    assert (ROOT / "napari.yaml").read_bytes() == (PACKAGE / "napari.yaml").read_bytes()


def test_packaged_sample_is_the_example_scan():
    shipped = PACKAGE / "data" / EXAMPLE_SCAN
    assert shipped.read_bytes() == (EXAMPLES / EXAMPLE_SCAN).read_bytes()


def test_sample_opens_at_the_scans_world_position(plugin):
    viewer = ViewerModel()
    viewer.open_sample("thinct", "chest_ct_5mm")
    (layer,) = viewer.layers
    image = sitk.ReadImage(str(EXAMPLES / EXAMPLE_SCAN))
    assert layer.data.shape == (16, 192, 192)
    assert layer.data.dtype == np.int16
    np.testing.assert_array_equal(layer.scale, image.GetSpacing()[::-1])
    np.testing.assert_array_equal(layer.translate, image.GetOrigin()[::-1])
    np.testing.assert_array_equal(layer.affine.affine_matrix, np.eye(4))
    for k in (0, 15):
        expected = image.TransformIndexToPhysicalPoint((0, 0, k))[::-1]
        np.testing.assert_allclose(layer.data_to_world((k, 0, 0)), expected, atol=1e-9)
    assert layer.contrast_limits == list(WINDOWS["lung"].contrast_limits)


def test_reader_answers_only_for_volumes(tmp_path):
    for name in ("notes.txt", "slice.png", "scan.nii.gz", "scan.nrrd", "scan.mha"):
        (tmp_path / name).write_bytes(b"")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "slice.png")) is None
    assert get_reader([str(tmp_path / "scan.nii.gz"), str(tmp_path / "notes.txt")]) is None
    assert get_reader(str(tmp_path)) is None  # a folder without DICOM files
    for name in ("scan.nii.gz", "scan.nrrd", "scan.mha"):
        assert get_reader(str(tmp_path / name)) is read_layers


def test_reader_reads_a_dicom_series_folder(tmp_path):
    image = make_image(hu_array((4, 8, 10)), direction=DIRECTIONS["flipped"])
    write_volume(Volume(image), tmp_path / "series")
    reader = get_reader(str(tmp_path / "series"))
    assert reader is read_layers
    ((data, meta, kind),) = reader(str(tmp_path / "series"))
    assert kind == "image" and meta["name"] == "series"
    read = sitk.GetImageFromArray(data)
    np.testing.assert_allclose(meta["scale"], image.GetSpacing()[::-1], rtol=1e-6)
    layer = Image(data, **{k: meta[k] for k in ("scale", "translate", "affine")})
    for index in ((0, 0, 0), (3, 7, 9)):
        expected = image.TransformIndexToPhysicalPoint(index[::-1])[::-1]
        np.testing.assert_allclose(layer.data_to_world(index), expected, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_read_then_save_keeps_geometry_exactly(plugin, tmp_path, suffix, name):
    """Open a scan in napari and save its layer with the plugin: the same voxels on the same
    grid, whichever format and direction, bit for bit what re-saving the scan without napari
    gives. (ITK's NIfTI writer stores directions as float32, so re-saving an oblique NIfTI
    moves its direction by ~3e-9 with or without napari.)"""
    source = tmp_path / f"scan{suffix}"
    write_volume(Volume(make_image(hu_array(extremes=True), direction=DIRECTIONS[name])), source)
    viewer = ViewerModel()
    (layer,) = viewer.open(str(source), plugin="thinct")
    target = tmp_path / f"saved{suffix}"
    assert save_layers(str(target), [layer], plugin="thinct") == [str(target)]
    write_volume(read_volume(source), tmp_path / f"resaved{suffix}")
    before, after = sitk.ReadImage(str(source)), sitk.ReadImage(str(target))
    resaved = sitk.ReadImage(str(tmp_path / f"resaved{suffix}"))
    assert after.GetPixelID() == sitk.sitkInt16
    assert after.GetSpacing() == resaved.GetSpacing()
    assert after.GetOrigin() == resaved.GetOrigin()
    assert after.GetDirection() == resaved.GetDirection()
    np.testing.assert_allclose(after.GetDirection(), before.GetDirection(), rtol=0, atol=1e-8)
    if not (suffix == ".nii.gz" and name == "oblique"):
        assert (after.GetOrigin(), after.GetDirection()) == (
            before.GetOrigin(),
            before.GetDirection(),
        )
    np.testing.assert_array_equal(sitk.GetArrayFromImage(after), sitk.GetArrayFromImage(before))


def test_writer_stores_float_layers_as_int16_hu(tmp_path):
    image = make_image(np.full((3, 4, 5), -0.6, dtype=np.float32))
    target = tmp_path / "thin.nii.gz"
    write_image(str(target), sitk.GetArrayFromImage(image), layer_transform(image))
    written = sitk.ReadImage(str(target))
    assert written.GetPixelID() == sitk.sitkInt16
    assert np.all(sitk.GetArrayFromImage(written) == -1)


def test_unreadable_file_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    with pytest.raises(ThinctError) as error:
        read_layers(str(broken))
    assert_clean_error(error, broken)


@pytest.mark.parametrize(
    ("data", "transform", "says"),
    [
        (np.zeros((4, 5)), {"scale": (1, 1), "translate": (0, 0)}, "2D layer"),
        (
            np.zeros((3, 4, 5)),
            {"scale": (1, 1, 1), "translate": (0, 0, 0), "shear": [1, 0, 0]},
            "sheared",
        ),
        (np.zeros((3, 4, 5, 3)), {"rgb": True}, "RGB"),
        (np.full((3, 4, 5), np.nan), {"scale": (1, 1, 1), "translate": (0, 0, 0)}, "NaN"),
        (np.zeros((3, 4, 5), complex), {"scale": (1, 1, 1), "translate": (0, 0, 0)}, "complex"),
    ],
)
def test_unwritable_layer_is_a_one_line_error(tmp_path, data, transform, says):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(ThinctError, match=says) as error:
        write_image(str(target), data, transform)
    assert_clean_error(error, target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("dtype", "pixel_type"),
    [(bool, sitk.sitkUInt8), (np.float16, sitk.sitkFloat32), (np.uint16, sitk.sitkUInt16)],
)
def test_masks_and_half_floats_become_types_simpleitk_takes(tmp_path, dtype, pixel_type):
    data = (hu_array((3, 4, 5)) > 0).astype(dtype)
    placement = {"scale": (2.0, 1.0, 1.0), "translate": (5.0, 0.0, 0.0)}
    image = image_from_layer(data, placement)
    assert image.GetPixelID() == pixel_type
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), data.astype(np.float64))
    assert image.GetSpacing() == (1.0, 1.0, 2.0) and image.GetOrigin() == (0.0, 0.0, 5.0)
