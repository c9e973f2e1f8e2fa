"""thinct's DICOM output checked by independent tools, as a PACS or a pipeline would meet it:
dciodvfy (dicom3tools) validates every file against the CT Image IOD, and dcm2niix must turn
a series into one volume with thinct's own geometry. Both are Debian packages that .ci/run
installs; the tests skip with the reason where they are missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from helpers.cli import assert_ok, assert_one_error, thinct, thinct_in_process, write_dicom
from helpers.dicom_series import build_series
from helpers.paths import EXAMPLES, real_dicom_folder
from helpers.volumes import DIRECTIONS, hu_array, make_image

from thinct.io import read_volume, write_volume
from thinct.io.dicom import with_patient
from thinct.volume import Volume

THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"
THIN = EXAMPLES / "lidc0002_crop_1.25mm.nii.gz"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install dicom3tools dcm2niix)")
    return path


def validation_errors(folder: Path) -> list[str]:
    """dciodvfy's Error lines over every file of a series (warnings are advice, not faults)."""
    dciodvfy = tool("dciodvfy")
    errors = []
    for path in sorted(folder.iterdir()):
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        errors += [f"{path.name}: {line}" for line in report.stderr.splitlines() if "Error" in line]
    return errors


def converted(folder: Path, scratch: Path) -> list[Path]:
    """The NIfTI volumes dcm2niix makes of a series folder."""
    dcm2niix = tool("dcm2niix")
    scratch.mkdir()
    report = subprocess.run(
        [dcm2niix, "-z", "y", "-f", "%s_%z", "-o", str(scratch), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    return sorted(scratch.glob("*.nii.gz"))


def assert_same_volume(image: sitk.Image, reference: sitk.Image) -> None:
    """The same voxels at the same world positions; dcm2niix stores the rows flipped, so both
    are first turned to one orientation (LPS)."""
    image, reference = sitk.DICOMOrient(image, "LPS"), sitk.DICOMOrient(reference, "LPS")
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))


def first_slice(folder: Path) -> pydicom.Dataset:
    return pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)


def test_series_from_a_nifti_is_valid_and_converts_to_one_volume(tmp_path):
    assert_ok(thinct("upsample", THICK, tmp_path / "thin", "--method", "linear", "--quiet"))
    assert_ok(thinct("upsample", THICK, tmp_path / "thin.nii.gz", "--method", "linear", "--quiet"))
    # The headers first: checked even where the tools below are missing.
    files = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "thin").iterdir()]
    for key in ("StudyInstanceUID", "StudyDate", "StudyTime", "PatientID", "SeriesTime"):
        assert len({str(f.get(key)) for f in files}) == 1, key
    header = files[0]
    assert list(header.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert header.RescaleType == "HU"
    assert header.PatientName == "ANONYMOUS^PATIENT"
    assert header.PatientID.startswith("ANON-") and len(header.PatientID) == 17
    assert [float(v) for v in header.WindowCenter] == [40.0, -600.0]
    assert [float(v) for v in header.WindowWidth] == [400.0, 1500.0]
    for keyword in ("Manufacturer", "KVP", "AcquisitionNumber", "PositionReferenceIndicator"):
        assert keyword in header and header[keyword].value in ("", None), keyword
    assert validation_errors(tmp_path / "thin") == []
    volumes = converted(tmp_path / "thin", tmp_path / "dcm2niix")
    assert len(volumes) == 1, volumes
    reference = sitk.ReadImage(str(tmp_path / "thin.nii.gz"))
    assert_same_volume(sitk.ReadImage(str(volumes[0])), reference)


def test_simulated_thick_series_is_valid_and_converts_to_one_volume(tmp_path):
    assert_ok(thinct("simulate", THIN, tmp_path / "thick", "--thickness", "5", "--quiet"))
    assert_ok(thinct("simulate", THIN, tmp_path / "thick.nii.gz", "--thickness", "5", "--quiet"))
    assert validation_errors(tmp_path / "thick") == []
    volumes = converted(tmp_path / "thick", tmp_path / "dcm2niix")
    assert len(volumes) == 1, volumes
    assert_same_volume(
        sitk.ReadImage(str(volumes[0])), sitk.ReadImage(str(tmp_path / "thick.nii.gz"))
    )
    assert float(first_slice(tmp_path / "thick").SliceThickness) == 5.0


def test_each_new_study_gets_its_own_anonymous_patient(tmp_path):
    for name in ("a", "b"):
        write_volume(Volume(make_image(hu_array())), tmp_path / name)
    a, b = first_slice(tmp_path / "a"), first_slice(tmp_path / "b")
    assert a.PatientID != b.PatientID
    assert a.PatientName == b.PatientName == "ANONYMOUS^PATIENT"


def test_reformatted_planes_are_named_so(tmp_path):
    """A sagittal stack is written as sagittal images: not AXIAL, and still valid."""
    direction = np.asarray(DIRECTIONS["axis-aligned"], float).reshape(3, 3)
    image = make_image(hu_array((6, 12, 10)), (2.5, 0.7, 0.8), direction=direction.ravel())
    write_volume(Volume(image), tmp_path / "sagittal")
    assert list(first_slice(tmp_path / "sagittal").ImageType)[2] == "REFORMATTED"
    assert validation_errors(tmp_path / "sagittal") == []


def test_patient_of_a_nifti_source_is_settable(tmp_path):
    result = thinct(
        "upsample",
        THICK,
        tmp_path / "thin",
        "--method",
        "linear",
        "--patient-id",
        "RESEARCH-0042",
        "--patient-name",
        "Müller^Jörg",
        "--quiet",
    )
    assert_ok(result)
    header = first_slice(tmp_path / "thin")
    assert header.PatientID == "RESEARCH-0042"
    assert str(header.PatientName) == "Müller^Jörg"
    assert header.SpecificCharacterSet == "ISO_IR 192"
    assert validation_errors(tmp_path / "thin") == []


def test_a_non_ascii_patient_id_sets_the_character_set(tmp_path):
    volume = with_patient(Volume(make_image(hu_array())), "SÃO-PAULO-7", None)
    write_volume(volume, tmp_path / "thin")
    header = first_slice(tmp_path / "thin")
    assert header.SpecificCharacterSet == "ISO_IR 192"
    assert header.PatientID == "SÃO-PAULO-7"
    assert validation_errors(tmp_path / "thin") == []


@pytest.mark.parametrize(
    ("value", "option"),
    [("A\\B", "--patient-id"), ("x" * 65, "--patient-id"), (" ", "--patient-name")],
)
def test_invalid_patient_values_are_refused(tmp_path, capfd, value, option):
    result = thinct_in_process(capfd, "upsample", THICK, tmp_path / "thin", option, value)
    assert_one_error(result, 2, option, "1 to 64 printable characters")
    assert not (tmp_path / "thin").exists()


def test_patient_options_need_a_dicom_output(tmp_path, capfd):
    target = tmp_path / "thin.nii.gz"
    result = thinct_in_process(capfd, "upsample", THICK, target, "--patient-id", "P1")
    assert_one_error(result, 2, "--patient-id names the patient of a DICOM output")
    assert not target.exists()


def test_a_dicom_source_keeps_its_patient(tmp_path, capfd):
    source = write_dicom(tmp_path / "source")
    result = thinct_in_process(
        capfd, "upsample", source, tmp_path / "thin", "--method", "linear", "--patient-name", "X"
    )
    assert_one_error(result, 2, "stays with its own patient", "--patient-name")
    assert not (tmp_path / "thin").exists()


def test_a_dicom_source_without_patient_or_window_gives_a_valid_series(tmp_path):
    """Type 2 attributes a DICOM source lacks are written empty; a missing window is the
    default one; the per-slice exposure of a tube-current-modulated scan is not copied."""
    source = tmp_path / "source"
    files = build_series(
        source, hu_array((4, 16, 16)), XRayTubeCurrent=310, Exposure=155, ExposureTime=500
    )
    for path in files:
        dataset = pydicom.dcmread(path)
        del dataset.PatientName, dataset.PatientID, dataset.StudyID
        dataset.save_as(path)
    write_volume(read_volume(source), tmp_path / "thin")
    header = first_slice(tmp_path / "thin")
    for keyword in ("PatientName", "PatientID", "StudyID"):
        assert keyword in header and header[keyword].value in ("", None), keyword
    assert [float(v) for v in header.WindowCenter] == [40.0, -600.0]
    for keyword in ("XRayTubeCurrent", "Exposure", "ExposureTime"):
        assert keyword not in header, keyword
    assert validation_errors(tmp_path / "thin") == []


def test_real_dicom_source_carries_its_acquisition(tmp_path):
    source = real_dicom_folder()
    assert_ok(thinct("upsample", source, tmp_path / "thin", "--method", "linear", "--quiet"))
    assert validation_errors(tmp_path / "thin") == []
    original, written = first_slice(source), first_slice(tmp_path / "thin")
    for keyword in (
        "PatientID",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "Manufacturer",
        "ManufacturerModelName",
        "KVP",
        "ConvolutionKernel",
        "WindowCenter",
        "WindowWidth",
        "PatientPosition",
    ):
        assert keyword in original, keyword
        assert written.get(keyword) == original.get(keyword), keyword
    volumes = converted(tmp_path / "thin", tmp_path / "dcm2niix")
    assert len(volumes) == 1, volumes
    assert sitk.ReadImage(str(volumes[0])).GetSize()[2] == len(list((tmp_path / "thin").iterdir()))
