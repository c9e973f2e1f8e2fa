"""DICOM series: thinct's writer checked tag by tag with pydicom, and thinct's reader checked
on series built independently with pydicom (rescaled storage, shuffled files, several series,
irregular stacks, junk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from helpers.dicom_series import build_series
from helpers.errors import assert_clean_error
from helpers.paths import real_dicom_folder
from helpers.volumes import DIRECTIONS, hu_array, make_image, voxels
from pydicom.pixels import apply_modality_lut
from pydicom.uid import CTImageStorage

from thinct.errors import GeometryError, InputError, UsageError
from thinct.geometry import Grid, slice_centres
from thinct.io import read_volume, write_volume
from thinct.io.dicom import is_dicom_folder
from thinct.volume import Volume

SPACING = (0.7, 0.8, 2.5)
ORIGIN = (-30.0, 20.5, -100.25)
# DIRECTIONS all have determinant +1; a mirrored z axis makes the index z axis run against the
# slice normal, so the series comes back in the opposite slice order.
WRITE_DIRECTIONS = {**DIRECTIONS, "mirrored": (1, 0, 0, 0, 1, 0, 0, 0, -1)}


def slices_of(folder: Path) -> list[pydicom.Dataset]:
    """The written slices, read independently with pydicom, in file name order."""
    return [pydicom.dcmread(path) for path in sorted(folder.iterdir())]


def assert_same_in_world(image: sitk.Image, reference: sitk.Image) -> None:
    """Same voxels at the same world positions, whatever the order of the axes and slices:
    every voxel centre of ``reference`` is a voxel centre of ``image``, with the same value."""
    grid, ref = Grid.of(image), Grid.of(reference)
    index = np.indices(ref.size).reshape(3, -1).T
    world = ref.index_to_world(index)
    found = (world - grid.origin) @ np.linalg.inv(grid.matrix * grid.spacing).T
    np.testing.assert_allclose(found, np.rint(found), atol=1e-3)
    found = np.rint(found).astype(int)
    assert image.GetNumberOfPixels() == reference.GetNumberOfPixels()
    assert np.all(found >= 0) and np.all(found < grid.size)
    values = sitk.GetArrayViewFromImage(image)[found[:, 2], found[:, 1], found[:, 0]]
    expected = sitk.GetArrayViewFromImage(reference)[index[:, 2], index[:, 1], index[:, 0]]
    np.testing.assert_array_equal(values, expected)


# --- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", WRITE_DIRECTIONS.values(), ids=WRITE_DIRECTIONS.keys())
def test_round_trip(tmp_path, direction):
    volume = Volume(make_image(hu_array(), SPACING, ORIGIN, direction))
    folder = tmp_path / "series"
    write_volume(volume, folder)
    back = read_volume(folder)
    assert back.image.GetSize() == volume.image.GetSize()
    np.testing.assert_allclose(back.image.GetSpacing(), SPACING, atol=1e-4)
    assert_same_in_world(back.image, volume.image)
    # Slice positions in the files are the geometry's slice centres.
    positions = np.array([s.ImagePositionPatient for s in slices_of(folder)], dtype=float)
    expected = slice_centres(Grid.of(volume.image), 2)
    np.testing.assert_allclose(positions, expected, atol=1e-4)


def test_round_trip_keeps_exact_geometry_when_slices_follow_the_normal(tmp_path):
    volume = Volume(make_image(hu_array(), SPACING, ORIGIN, DIRECTIONS["oblique"]))
    write_volume(volume, tmp_path / "series")
    back = read_volume(tmp_path / "series")
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.image.GetOrigin(), ORIGIN, atol=1e-4)
    np.testing.assert_allclose(back.image.GetDirection(), DIRECTIONS["oblique"], atol=1e-4)


@pytest.mark.parametrize("direction", WRITE_DIRECTIONS.values(), ids=WRITE_DIRECTIONS.keys())
@pytest.mark.parametrize("axis", [0, 1], ids=["sagittal", "coronal"])
def test_slices_along_x_or_y_are_written_as_such(tmp_path, axis, direction):
    """A stack along index x (sagittal) or y (coronal) is written one file per slice across
    that axis, so SliceThickness and SpacingBetweenSlices are its 5 mm and not the 0.7 mm of
    the pixels, and it reads back as the same voxels at the same world positions."""
    spacing = [0.7, 0.7, 0.7]
    spacing[axis] = 5.0
    shape = [20, 24, 16]  # (z, y, x)
    shape[2 - axis] = 6
    volume = Volume(make_image(hu_array(shape, extremes=True), spacing, ORIGIN, direction))
    folder = tmp_path / "series"
    write_volume(volume, folder)
    written = slices_of(folder)
    assert len(written) == 6
    for s in written:
        assert float(s.SliceThickness) == pytest.approx(5.0)
        assert float(s.SpacingBetweenSlices) == pytest.approx(5.0)
        np.testing.assert_allclose([float(v) for v in s.PixelSpacing], [0.7, 0.7])
        orientation = np.array(s.ImageOrientationPatient, dtype=float).reshape(2, 3)
        normal = np.cross(orientation[0], orientation[1])
        slice_direction = np.asarray(direction, dtype=float).reshape(3, 3)[:, axis]
        np.testing.assert_allclose(abs(normal @ slice_direction), 1.0, atol=1e-6)
    positions = np.array([s.ImagePositionPatient for s in written], dtype=float)
    np.testing.assert_allclose(positions, slice_centres(Grid.of(volume.image), axis), atol=1e-4)
    assert_same_in_world(read_volume(folder).image, volume.image)


def test_written_tags(tmp_path):
    source = tmp_path / "source"
    hu = hu_array((6, 24, 20))
    source_files = build_series(source, hu, step=2.5, SliceThickness=3.0)
    volume = read_volume(source)
    assert volume.slice_thickness == pytest.approx(3.0)
    target = tmp_path / "thin"
    write_volume(volume, target)

    original = pydicom.dcmread(source_files[0])
    source_sops = {pydicom.dcmread(p).SOPInstanceUID for p in source_files}
    written = slices_of(target)
    assert len(written) == 6
    series_uids = {s.SeriesInstanceUID for s in written}
    assert len(series_uids) == 1
    assert series_uids != {original.SeriesInstanceUID}
    sops = [s.SOPInstanceUID for s in written]
    assert len(set(sops)) == len(sops)
    assert not set(sops) & source_sops
    for s in written:
        assert s.file_meta.MediaStorageSOPInstanceUID == s.SOPInstanceUID
        assert s.SOPClassUID == CTImageStorage
        assert s.Modality == "CT"
        for keyword in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyInstanceUID",
            "StudyID",
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "StudyDescription",
            "FrameOfReferenceUID",
        ):
            assert s.get(keyword) == original.get(keyword), keyword
        assert float(s.SliceThickness) == pytest.approx(3.0)
        assert float(s.SpacingBetweenSlices) == pytest.approx(2.5)
        np.testing.assert_allclose(
            [float(v) for v in s.ImageOrientationPatient], [1, 0, 0, 0, 1, 0]
        )
        np.testing.assert_allclose([float(v) for v in s.PixelSpacing], [0.8, 0.7])
        assert "SYNTHETIC" in s.DerivationDescription
        assert "thinct" in s.DerivationDescription
        assert list(s.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert s.RescaleType == "HU"
    positions = np.array([s.ImagePositionPatient for s in written], dtype=float)
    np.testing.assert_allclose(positions, slice_centres(Grid.of(volume.image), 2), atol=1e-4)
    assert [int(s.InstanceNumber) for s in written] == list(range(1, 7))
    hu_back = np.stack([apply_modality_lut(s.pixel_array, s) for s in written])
    np.testing.assert_array_equal(hu_back, hu)


def test_spacing_between_slices_and_orientation_for_an_oblique_volume(tmp_path):
    # A DICOM read first: it changes how GDCM writes later series in the same process.
    build_series(tmp_path / "source", hu_array((3, 8, 8)))
    read_volume(tmp_path / "source")
    direction = np.asarray(DIRECTIONS["oblique"]).reshape(3, 3)
    volume = Volume(make_image(hu_array(), (0.6, 0.9, 1.25), ORIGIN, direction.ravel()))
    write_volume(volume, tmp_path / "thin", description="SYNTHETIC thin slices, thinct test")
    for s in slices_of(tmp_path / "thin"):
        assert float(s.SpacingBetweenSlices) == pytest.approx(1.25)
        assert float(s.SliceThickness) == pytest.approx(1.25)
        orientation = np.array(s.ImageOrientationPatient, dtype=float)
        np.testing.assert_allclose(orientation, direction[:, :2].T.ravel(), atol=1e-6)
        assert s.DerivationDescription == "SYNTHETIC thin slices, thinct test"
        assert s.SeriesDescription == "SYNTHETIC thin slices, thinct test"


def test_source_without_dicom_tags_gets_a_new_study(tmp_path):
    write_volume(Volume(make_image(hu_array())), tmp_path / "a")
    write_volume(Volume(make_image(hu_array())), tmp_path / "b")
    a, b = slices_of(tmp_path / "a")[0], slices_of(tmp_path / "b")[0]
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert a.FrameOfReferenceUID != b.FrameOfReferenceUID
    assert len({s.StudyInstanceUID for s in slices_of(tmp_path / "a")}) == 1


def test_float_volume_is_written_as_rounded_hu(tmp_path):
    values = hu_array().astype(np.float32) + np.float32(0.4)
    write_volume(Volume(make_image(values, SPACING, ORIGIN)), tmp_path / "series")
    hu_back = np.stack(
        [apply_modality_lut(s.pixel_array, s) for s in slices_of(tmp_path / "series")]
    )
    np.testing.assert_array_equal(hu_back, np.rint(values))


def test_float32_dicom_output_is_refused(tmp_path):
    with pytest.raises(UsageError, match="int16"):
        write_volume(Volume(make_image(hu_array())), tmp_path / "series", dtype="float32")
    assert not (tmp_path / "series").exists()


def test_overwrite_replaces_the_series(tmp_path):
    folder = tmp_path / "series"
    write_volume(Volume(make_image(hu_array((8, 12, 10)))), folder)
    first_uid = slices_of(folder)[0].SeriesInstanceUID
    replacement = Volume(make_image(hu_array((4, 12, 10), seed=1)))
    with pytest.raises(UsageError, match="overwrite") as error:
        write_volume(replacement, folder)
    assert_clean_error(error, folder)
    assert len(list(folder.iterdir())) == 8

    write_volume(replacement, folder, overwrite=True)
    written = slices_of(folder)
    assert len(written) == 4
    assert written[0].SeriesInstanceUID != first_uid
    np.testing.assert_array_equal(voxels(folder), replacement.array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


# --- reading independent series ---------------------------------------------------------------


@pytest.mark.parametrize("explicit", [False, True], ids=["implicit-vr", "explicit-vr"])
def test_unsigned_storage_with_intercept(tmp_path, explicit):
    hu = hu_array((7, 32, 32))
    build_series(
        tmp_path / "s", hu, slope=1.0, intercept=-1024.0, stored="uint16", explicit=explicit
    )
    volume = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.image.GetSize() == (32, 32, 7)
    np.testing.assert_allclose(volume.image.GetSpacing(), (0.7, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(volume.image.GetOrigin(), (-20.0, 10.0, -50.0), atol=1e-6)
    np.testing.assert_allclose(volume.image.GetDirection(), np.eye(3).ravel(), atol=1e-6)
    assert volume.slice_thickness == pytest.approx(2.5)
    assert volume.dicom_tags["0010|0020"] == "THINCT-0042"
    assert volume.source == tmp_path / "s"


@pytest.mark.parametrize(
    ("slope", "intercept", "stored"),
    [(2.0, -1024.0, "uint16"), (1.0, -3000.0, "uint16"), (0.5, -600.0, "int16")],
)
def test_rescale_slope_and_intercept(tmp_path, slope, intercept, stored):
    hu = hu_array((6, 32, 32), seed=2).astype(np.float64)
    if slope == 2.0:
        hu = np.floor(hu / 2) * 2  # representable with slope 2
    if slope == 0.5:
        hu = np.clip(hu, -1024, 1000) + 0.5  # half-HU steps need slope 0.5
    build_series(tmp_path / "s", hu, slope=slope, intercept=intercept, stored=stored)
    np.testing.assert_allclose(voxels(tmp_path / "s"), hu)


def test_shuffled_files_are_sorted_along_the_normal(tmp_path):
    hu = hu_array((8, 32, 32))
    build_series(tmp_path / "s", hu, order=[5, 0, 7, 2, 1, 6, 4, 3])
    volume = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.image.GetOrigin(), (-20.0, 10.0, -50.0), atol=1e-6)
    np.testing.assert_allclose(volume.image.GetSpacing()[2], 2.5, atol=1e-6)


@pytest.mark.parametrize("name", ["oblique", "flipped"])
def test_orientation_from_image_orientation_patient(tmp_path, name):
    direction = np.asarray(DIRECTIONS[name], float).reshape(3, 3)
    hu = hu_array((6, 32, 32))
    origin = (12.5, -40.0, 200.0)
    build_series(
        tmp_path / "s", hu, row=direction[:, 0], column=direction[:, 1], origin=origin, step=3.0
    )
    volume = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.image.GetDirection(), direction.ravel(), atol=1e-5)
    np.testing.assert_allclose(volume.image.GetOrigin(), origin, atol=1e-4)
    np.testing.assert_allclose(volume.image.GetSpacing(), (0.7, 0.8, 3.0), atol=1e-5)


def two_series(folder: Path, **second_tags) -> None:
    """Two series side by side in ``folder``: 1.2.826.0.1.1 (8 slices of ``hu_array``) and
    1.2.826.0.1.2 (6 slices, seed 3), with ``second_tags`` set on every slice of the second."""
    first = build_series(folder / "a", hu_array((8, 32, 32)), series_uid="1.2.826.0.1.1")
    second = build_series(
        folder / "b", hu_array((6, 32, 32), seed=3), series_uid="1.2.826.0.1.2", **second_tags
    )
    for path in (*first, *second):
        path.rename(folder / f"{path.parent.name}-{path.name}")
    for sub in ("a", "b"):
        (folder / sub).rmdir()


def test_two_series_need_a_choice(tmp_path):
    folder = tmp_path / "study"
    two_series(folder)

    with pytest.raises(UsageError) as error:
        read_volume(folder)
    assert_clean_error(error, folder)
    assert "1.2.826.0.1.1" in str(error.value)
    assert "1.2.826.0.1.2" in str(error.value)

    chosen = read_volume(folder, series_uid="1.2.826.0.1.2")
    assert chosen.image.GetSize() == (32, 32, 6)
    np.testing.assert_array_equal(chosen.array, hu_array((6, 32, 32), seed=3))

    with pytest.raises(UsageError, match="9.9.9") as error:
        read_volume(folder, series_uid="9.9.9")
    assert_clean_error(error, folder)


def test_unreadable_series_is_listed_among_the_others(tmp_path, capfd):
    """GDCM lists a series whose slices it cannot decode (7 bits allocated); the list of
    series still comes out, that one marked unreadable, and the other one can be chosen."""
    folder = tmp_path / "study"
    two_series(folder, BitsAllocated=7)
    with pytest.raises(UsageError, match="series_uid") as error:
        read_volume(folder)
    assert_clean_error(error, folder)
    assert "1.2.826.0.1.1 (8 slices" in str(error.value)
    assert "1.2.826.0.1.2 (unreadable" in str(error.value)
    assert capfd.readouterr().err == ""
    np.testing.assert_array_equal(voxels(folder, "1.2.826.0.1.1"), hu_array((8, 32, 32)))
    with pytest.raises(InputError, match="unreadable DICOM slice") as error:
        read_volume(folder, series_uid="1.2.826.0.1.2")
    assert_clean_error(error, folder)


def test_folder_that_gdcm_cannot_list(tmp_path, capfd):
    """A header GDCM cannot make sense of (SamplesPerPixel 0) stops its listing of the whole
    folder: a one-line error, and the folder still counts as DICOM so that it is reported."""
    folder = tmp_path / "study"
    two_series(folder, SamplesPerPixel=0)
    with pytest.raises(InputError, match="unreadable DICOM file") as error:
        read_volume(folder)
    assert_clean_error(error, folder)
    assert capfd.readouterr().err == ""
    assert is_dicom_folder(folder)


def test_is_dicom_folder(tmp_path):
    files = build_series(tmp_path / "study" / "series", hu_array((3, 8, 8)))
    (tmp_path / "empty").mkdir()
    assert is_dicom_folder(tmp_path / "study" / "series")
    assert not is_dicom_folder(tmp_path / "study")  # the series is one level down
    assert not is_dicom_folder(tmp_path / "empty")
    assert not is_dicom_folder(files[0])
    assert not is_dicom_folder(tmp_path / "missing")


@pytest.mark.parametrize(
    ("offsets", "reason"),
    [
        ([(0, 0, 2.5 * k) for k in (0, 1, 2, 3, 5, 6, 7, 8)], "non-uniform"),
        ([(0, 0, 2.5 * k) for k in (0, 1, 2, 3, 3, 4, 5, 6)], "same position"),
        ([(0, 0.4 * k, 2.5 * k) for k in range(8)], "tilt"),
    ],
    ids=["missing-slice", "duplicated-position", "gantry-tilt"],
)
def test_irregular_stack(tmp_path, offsets, reason):
    positions = np.array([-20.0, 10.0, -50.0]) + np.array(offsets)
    build_series(tmp_path / "s", hu_array((8, 32, 32)), positions=positions)
    with pytest.raises(GeometryError, match=reason) as error:
        read_volume(tmp_path / "s")
    assert_clean_error(error, tmp_path / "s")


def test_single_slice_series(tmp_path):
    build_series(tmp_path / "s", hu_array((1, 32, 32)))
    with pytest.raises(GeometryError, match="single slice"):
        read_volume(tmp_path / "s")


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no DICOM series") as error:
        read_volume(tmp_path)
    assert_clean_error(error, tmp_path)


def test_folder_without_dicom_files(tmp_path, capfd):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "zeros.dcm").write_bytes(bytes(400))
    (tmp_path / "scan.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="no DICOM series") as error:
        read_volume(tmp_path)
    assert_clean_error(error, tmp_path)
    assert capfd.readouterr().err == ""


def test_series_in_a_subfolder_is_pointed_at(tmp_path):
    build_series(tmp_path / "study" / "series-1", hu_array((4, 8, 8)))
    with pytest.raises(InputError, match="series-1") as error:
        read_volume(tmp_path / "study")
    assert_clean_error(error, tmp_path / "study")


def test_reading_does_not_modify_the_series(tmp_path):
    files = build_series(tmp_path / "s", hu_array((6, 16, 16)))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    volume = read_volume(tmp_path / "s")
    write_volume(volume, tmp_path / "out")
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(p.name for p in files)


# --- the real series -------------------------------------------------------------------------


def test_real_dicom_series(tmp_path):
    folder = real_dicom_folder()
    volume = read_volume(folder)
    image = volume.image
    assert image.GetSize() == (512, 512, 64)
    np.testing.assert_allclose(image.GetSpacing(), (0.842, 0.842, 5.0), atol=1e-3)
    values = volume.array
    air = float(np.percentile(values, 1))
    assert -1100 < air < -900
    assert values.max() > 500  # bone
    assert volume.dicom_tags["0010|0020"]  # patient ID carried for DICOM output

    copy = tmp_path / "chest.nii.gz"
    write_volume(volume, copy)
    back = read_volume(copy)
    assert back.image.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.image.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(back.image.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.image.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(back.array, values)


def test_real_dicom_series_written_as_dicom(tmp_path):
    folder = real_dicom_folder()
    volume = read_volume(folder)
    write_volume(volume, tmp_path / "copy")
    back = read_volume(tmp_path / "copy")
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.image.GetOrigin(), volume.image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.image.GetSpacing(), volume.image.GetSpacing(), atol=1e-5)
    original = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    written = pydicom.dcmread(next((tmp_path / "copy").iterdir()), stop_before_pixels=True)
    for keyword in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert written.get(keyword) == original.get(keyword)
    assert written.SeriesInstanceUID != original.SeriesInstanceUID
