"""Reading and writing volume files: exact round trips through every format, and every kind
of bad input or failed write ending in a one-line `ThinctError` with nothing left behind."""

from __future__ import annotations

import contextlib
import gzip
import os
import resource
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.errors import assert_clean_error
from helpers.volumes import DIRECTIONS, hu_array, make_image, voxels

from thinct.errors import InputError, OutputError, UsageError
from thinct.io import STAGING_SUFFIX, hounsfield_warning, output_format, read_volume, write_volume
from thinct.io.formats import Format
from thinct.io.writing import _move_into_place
from thinct.volume import Volume

FILE_FORMATS = [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"]
SPACING = (0.7, 0.8, 2.5)
ORIGIN = (-30.0, 20.5, -100.25)


def ct_volume(direction=DIRECTIONS["axis-aligned"], shape=(6, 20, 24), seed=0) -> Volume:
    return Volume(make_image(hu_array(shape, seed, extremes=True), SPACING, ORIGIN, direction))


def assert_same_geometry(image: sitk.Image, reference: sitk.Image, atol: float = 1e-4) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=atol)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=atol)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=atol)


def listing(folder: Path) -> list[str]:
    """Everything under ``folder``, hidden entries included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def contents(folder: Path) -> dict[str, bytes]:
    """The bytes of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make every write past ``limit`` bytes of one file fail (EFBIG), as a full disk would.

    SIGXFSZ is ignored meanwhile, so the write fails with an error instead of killing pytest.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize("suffix", FILE_FORMATS)
def test_round_trip_keeps_hu_and_geometry(tmp_path, suffix, direction):
    volume = ct_volume(direction)
    path = tmp_path / f"scan{suffix}"
    write_volume(volume, path)
    back = read_volume(path)
    assert back.image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(back.array, volume.array)
    assert_same_geometry(back.image, volume.image)
    assert back.source == path


@pytest.mark.parametrize("suffix", FILE_FORMATS)
def test_float32_output_keeps_fractions(tmp_path, suffix):
    values = hu_array(extremes=True).astype(np.float32) + np.float32(0.375)
    volume = Volume(make_image(values, SPACING, ORIGIN, DIRECTIONS["oblique"]))
    path = tmp_path / f"scan{suffix}"
    write_volume(volume, path, dtype="float32")
    back = read_volume(path)
    assert back.image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(back.array, values)
    assert_same_geometry(back.image, volume.image)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_int16_output_rounds_and_clips_when_asked(tmp_path, suffix):
    values = np.zeros((3, 4, 5))
    values[0, 0, :] = [1.4, 1.6, -2.6, 40000.0, -40000.0]
    values[1] = -1000.25
    volume = Volume(make_image(values.astype(np.float64), SPACING, ORIGIN))
    path = tmp_path / f"scan{suffix}"
    write_volume(volume, path, clip=True)  # int16 is the default
    back = read_volume(path)
    assert back.image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(back.array[0, 0], [1, 2, -3, 32767, -32768])
    assert np.all(back.array[1] == -1000)
    assert np.all(back.array[2] == 0)


def test_unknown_output_type_is_refused(tmp_path):
    path = tmp_path / "scan.nii.gz"
    with pytest.raises(UsageError, match="int16, float32"):
        write_volume(ct_volume(), path, dtype="uint8")
    assert not path.exists()


def test_nhdr_input_is_read(tmp_path):
    volume = ct_volume(DIRECTIONS["flipped"])
    path = tmp_path / "scan.nhdr"
    sitk.WriteImage(volume.image, str(path))
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    assert_same_geometry(back.image, volume.image)


def test_example_scan_round_trip(tmp_path, example_thin):
    volume = read_volume(example_thin)
    assert volume.image.GetSize() == (192, 192, 64)
    np.testing.assert_allclose(volume.image.GetSpacing()[2], 1.25, atol=1e-4)
    path = tmp_path / "thin.mha"
    write_volume(volume, path)
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    assert_same_geometry(back.image, volume.image)


def test_output_folder_is_created(tmp_path):
    path = tmp_path / "new" / "deeper" / "scan.nii.gz"
    write_volume(ct_volume(), path)
    np.testing.assert_array_equal(voxels(path), ct_volume().array)
    assert listing(tmp_path / "new") == ["deeper", "deeper/scan.nii.gz"]


def test_existing_output_needs_overwrite(tmp_path):
    path = tmp_path / "scan.nii.gz"
    write_volume(ct_volume(), path)
    before = path.read_bytes()
    replacement = Volume(make_image(np.full((4, 6, 8), 123, np.int16)))
    with pytest.raises(UsageError, match="overwrite") as error:
        write_volume(replacement, path)
    assert_clean_error(error, path)
    assert path.read_bytes() == before

    write_volume(replacement, path, overwrite=True)
    back = read_volume(path)
    assert back.image.GetSize() == (8, 6, 4)
    assert np.all(back.array == 123)
    assert listing(tmp_path) == ["scan.nii.gz"]


def test_overwriting_metaimage_replaces_header_and_data(tmp_path):
    path = tmp_path / "scan.mhd"
    write_volume(ct_volume(), path)
    replacement = Volume(make_image(np.full((4, 6, 8), -7, np.int16)))
    write_volume(replacement, path, overwrite=True)
    assert np.all(voxels(path) == -7)
    assert not [name for name in listing(tmp_path) if name.startswith(".")]


def test_input_is_never_modified(tmp_path, example_thick):
    source = tmp_path / "thick.nii.gz"
    source.write_bytes(example_thick.read_bytes())
    os.utime(source, ns=(1_000_000_000, 1_000_000_000))
    before = source.read_bytes()
    volume = read_volume(source)
    write_volume(volume, tmp_path / "copy.nii.gz")
    write_volume(volume, tmp_path / "copy.mha")
    with pytest.raises(UsageError):
        write_volume(volume, source)
    assert source.read_bytes() == before
    assert source.stat().st_mtime_ns == 1_000_000_000


@pytest.mark.parametrize("name", ["thin_1.25mm", "CT_5.0mm", "1.2.840.113619.2.55", "scan.v2"])
def test_dotted_name_with_digits_is_a_dicom_folder(tmp_path, name):
    """A dot followed by digits is part of a folder name (a spacing, a version, a UID), not an
    unknown file type."""
    path = tmp_path / name
    assert output_format(path) is Format.DICOM
    write_volume(ct_volume(), path)
    assert path.is_dir()
    np.testing.assert_array_equal(voxels(path), ct_volume().array)


# --- bad input -------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.nii.gz"
    with pytest.raises(InputError, match="no such file") as error:
        read_volume(path)
    assert_clean_error(error, path)


@pytest.mark.parametrize("name", ["scan.png", "scan.dcm", "scan"])
def test_unsupported_input_type(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not an image")
    with pytest.raises(InputError) as error:
        read_volume(path)
    assert_clean_error(error, path)


@pytest.mark.parametrize(
    "name", ["scan.png", "scan.dcm", "scan.nhdr", "scan.tif", "notes.txt", "scan.gzz"]
)
def test_unsupported_output_type(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(UsageError, match="unsupported output type") as error:
        write_volume(ct_volume(), path)
    assert_clean_error(error, path)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti(tmp_path, example_thick, suffix):
    data = example_thick.read_bytes()
    if suffix == ".nii":
        data = gzip.decompress(data)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as error:
        read_volume(path)
    assert_clean_error(error, path)


def test_uncompressed_nifti_named_nii_gz_is_read(tmp_path, example_thick):
    """ITK reads it (zlib passes an uncompressed stream through), so thinct must not call it
    corrupt; gzip is told by the first bytes, not by the name."""
    path = tmp_path / "plain.nii.gz"
    path.write_bytes(gzip.decompress(example_thick.read_bytes()))
    np.testing.assert_array_equal(voxels(path), voxels(example_thick))


def test_truncated_uncompressed_nifti_named_nii_gz(tmp_path, example_thick):
    data = gzip.decompress(example_thick.read_bytes())
    path = tmp_path / "plain.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated file") as error:
        read_volume(path)
    assert_clean_error(error, path)


def test_compressed_nifti_named_nii(tmp_path, example_thick):
    """ITK cannot read it; the message says why instead of calling it an unreadable image."""
    path = tmp_path / "packed.nii"
    path.write_bytes(example_thick.read_bytes())
    with pytest.raises(InputError, match="gzip-compressed") as error:
        read_volume(path)
    assert_clean_error(error, path)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_truncated_compressed_files(tmp_path, suffix, capfd):
    whole = tmp_path / f"whole{suffix}"
    write_volume(ct_volume(), whole)
    data = whole.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read") as error:
        read_volume(path)
    assert_clean_error(error, path)
    captured = capfd.readouterr()
    assert captured.err == ""  # ITK's C++ diagnostics stay out of the terminal
    assert captured.out == ""


def test_truncated_mhd_data_file(tmp_path, capfd):
    path = tmp_path / "scan.mhd"
    write_volume(ct_volume(), path)
    (data_file,) = [p for p in tmp_path.iterdir() if p.suffix != ".mhd"]
    data_file.write_bytes(data_file.read_bytes()[:100])
    with pytest.raises(InputError) as error:
        read_volume(path)
    assert_clean_error(error, path)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_text_file_with_image_name(tmp_path, suffix, capfd):
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are not voxels\n" * 40)
    with pytest.raises(InputError) as error:
        read_volume(path)
    assert_clean_error(error, path)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (sitk.Image(16, 16, sitk.sitkInt16), "2D"),
        (sitk.Image([8, 8, 4, 3], sitk.sitkInt16), "4D"),
        (sitk.Image([8, 8, 4], sitk.sitkVectorUInt8, 3), "3 values per voxel"),
    ],
    ids=["2D", "4D", "multichannel"],
)
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_not_one_3d_intensity_volume(tmp_path, suffix, image, reason):
    path = tmp_path / f"image{suffix}"
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match=reason) as error:
        read_volume(path)
    assert_clean_error(error, path)


def test_complex_image(tmp_path):
    path = tmp_path / "complex.nii.gz"
    sitk.WriteImage(sitk.Image([8, 8, 4], sitk.sitkComplexFloat32), str(path))
    with pytest.raises(InputError, match="complex") as error:
        read_volume(path)
    assert_clean_error(error, path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_single_slice_volume(tmp_path, suffix):
    path = tmp_path / f"one{suffix}"
    sitk.WriteImage(make_image(np.zeros((1, 16, 16), np.int16)), str(path))
    with pytest.raises(InputError, match="single-slice") as error:
        read_volume(path)
    assert_clean_error(error, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_non_finite_voxels(tmp_path, suffix, bad):
    values = hu_array().astype(np.float32)
    values[3, 5, 7] = bad
    path = tmp_path / f"broken{suffix}"
    sitk.WriteImage(make_image(values), str(path))
    with pytest.raises(InputError, match="1 voxels are NaN or infinite") as error:
        read_volume(path)
    assert_clean_error(error, path)


def test_non_finite_voxel_at_the_end_of_a_large_float64_nifti(tmp_path):
    # Larger than the 1 MiB read chunks and float64, so the check must follow the whole stream.
    values = np.zeros((40, 64, 64), np.float64)
    values[-1, -1, -1] = np.nan
    path = tmp_path / "large.nii"
    sitk.WriteImage(make_image(values), str(path))
    with pytest.raises(InputError, match="NaN"):
        read_volume(path)


def test_finite_float_nifti_is_read(tmp_path):
    values = hu_array().astype(np.float32) / 3
    path = tmp_path / "fine.nii"
    sitk.WriteImage(make_image(values), str(path))
    np.testing.assert_array_equal(voxels(path), values)


def test_series_uid_only_for_dicom(tmp_path):
    path = tmp_path / "scan.nii.gz"
    write_volume(ct_volume(), path)
    with pytest.raises(UsageError, match="DICOM") as error:
        read_volume(path, series_uid="1.2.3")
    assert_clean_error(error, path)


# --- bad output ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scan.nii.gz", "dicom"])
def test_output_below_a_regular_file(tmp_path, name):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    for path in (blocker / name, blocker / "sub" / name):
        with pytest.raises(OutputError) as error:
            write_volume(ct_volume(), path)
        assert_clean_error(error, path)
    assert listing(tmp_path) == ["blocker"]


def test_output_in_unwritable_location():
    path = Path("/proc/thinct-test/scan.nii.gz")
    with pytest.raises(OutputError) as error:
        write_volume(ct_volume(), path)
    assert_clean_error(error, path)


@pytest.mark.parametrize(
    "name", ["scan.nii", "scan.nii.gz", "scan.nrrd", "scan.mha", "scan.mhd", "dicom"]
)
def test_failed_write_leaves_nothing(tmp_path, name):
    """A write that fails part way (here: a file size limit, as on a full disk) leaves neither
    a partial output nor the hidden staging folder, nor the folders made for the output."""
    path = tmp_path / "made" / "for" / name
    volume = ct_volume(shape=(6, 64, 64))
    with file_size_limit(4096), pytest.raises(OutputError) as error:
        write_volume(volume, path)
    assert_clean_error(error, path)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.mhd", "dicom"])
def test_failed_overwrite_keeps_the_old_output(tmp_path, name):
    path = tmp_path / name
    old = ct_volume(shape=(3, 8, 8))
    write_volume(old, path)
    before = listing(tmp_path)
    with file_size_limit(4096), pytest.raises(OutputError):
        write_volume(ct_volume(shape=(6, 64, 64)), path, overwrite=True)
    assert listing(tmp_path) == before
    np.testing.assert_array_equal(voxels(path), old.array)


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.mhd", "dicom"])
def test_failed_move_into_place_puts_the_old_output_back(tmp_path, name):
    """The named output missing from the staging folder when its turn comes makes its move
    fail for real (no such file). What was moved in before it (the new MetaImage data file)
    and what was moved aside for it (the old file or DICOM folder) must go back."""
    parent = tmp_path / "out"
    write_volume(ct_volume(shape=(3, 8, 8)), parent / name)
    before = contents(parent)
    write_volume(ct_volume(shape=(4, 8, 8), seed=1), tmp_path / "new" / name)
    staging = parent / f".{name}.test{STAGING_SUFFIX}"
    staging.mkdir()
    for item in (tmp_path / "new").iterdir():
        if item.name != name:
            item.rename(staging / item.name)  # staged like write_volume does, minus the output
    with pytest.raises(FileNotFoundError):
        _move_into_place(staging, staging / name, parent, overwrite=True)
    shutil.rmtree(staging)
    assert contents(parent) == before


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.mha", "dicom"])
def test_non_finite_volume_is_not_written(tmp_path, name):
    values = hu_array().astype(np.float32)
    values[1, 2, 3] = np.nan
    path = tmp_path / name
    with pytest.raises(OutputError, match="NaN") as error:
        write_volume(Volume(make_image(values)), path)
    assert_clean_error(error, path)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "image",
    [sitk.Image(8, 8, sitk.sitkInt16), sitk.Image([8, 8, 4], sitk.sitkVectorInt16, 2)],
    ids=["2D", "vector"],
)
@pytest.mark.parametrize("name", ["scan.nii.gz", "dicom"])
def test_non_volume_is_not_written(tmp_path, name, image):
    path = tmp_path / name
    with pytest.raises(OutputError) as error:
        write_volume(Volume(image), path)
    assert_clean_error(error, path)
    assert listing(tmp_path) == []


# --- intensities -----------------------------------------------------------------------------


def test_hounsfield_warning_for_8bit_image():
    values = np.random.default_rng(1).integers(0, 256, (8, 32, 32)).astype(np.uint8)
    message = hounsfield_warning(make_image(values))
    assert message is not None
    assert "Hounsfield" in message


def test_no_hounsfield_warning_for_ct(example_thin):
    assert hounsfield_warning(read_volume(example_thin).image) is None
