"""DICOM series in and out.

Reading goes through GDCM (SimpleITK), which applies each slice's rescale slope and intercept
so voxels come out in HU. Before the voxels are read, every slice's position is checked: a
series with gaps, duplicates or gantry tilt is not a regular grid and is refused rather than
silently resampled wrong.

Writing makes a new series in the same study and frame of reference as the source (so PACS and
viewers file it next to the original and can link the two), with fresh Series and SOP Instance
UIDs, per-slice ImagePositionPatient, slice thickness and spacing, and a derivation description
that says the images are synthetic. The files hold the volume's own slices, whichever index axis
they are stacked along (a sagittal stack becomes sagittal images).
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from thinct.errors import Argument, GeometryError, InputError, OutputError, UsageError
from thinct.geometry import Grid, check_slice_positions, slice_axis
from thinct.io.native import first_reason, native_stderr_captured
from thinct.volume import Volume

# Attributes carried from a DICOM source to its output: the character set, patient, study and
# frame of reference (so the output files beside its source), and what describes the
# acquisition and its display (the derived images come from the same scanner and kernel).
# Not the tube current, exposure and exposure time: under tube-current modulation they vary
# from slice to slice, and the first slice's values would be wrong for the others.
COPIED_TAGS = {
    "0008|0005": "SpecificCharacterSet",
    "0010|0010": "PatientName",
    "0010|0020": "PatientID",
    "0010|0030": "PatientBirthDate",
    "0010|0040": "PatientSex",
    "0010|1010": "PatientAge",
    "0020|000d": "StudyInstanceUID",
    "0020|0010": "StudyID",
    "0008|0020": "StudyDate",
    "0008|0030": "StudyTime",
    "0008|0050": "AccessionNumber",
    "0008|0090": "ReferringPhysicianName",
    "0008|1030": "StudyDescription",
    "0020|0052": "FrameOfReferenceUID",
    "0020|1040": "PositionReferenceIndicator",
    "0018|0015": "BodyPartExamined",
    "0018|5100": "PatientPosition",
    "0020|0060": "Laterality",
    "0008|0070": "Manufacturer",
    "0008|1090": "ManufacturerModelName",
    "0008|0080": "InstitutionName",
    "0018|0010": "ContrastBolusAgent",
    "0018|0060": "KVP",
    "0018|1100": "ReconstructionDiameter",
    "0018|1120": "GantryDetectorTilt",
    "0018|1210": "ConvolutionKernel",
    "0020|0012": "AcquisitionNumber",
    "0028|1050": "WindowCenter",
    "0028|1051": "WindowWidth",
    "0028|1055": "WindowCenterWidthExplanation",
}
STUDY_UID = "0020|000d"
PATIENT_ID = "0010|0020"
PATIENT_NAME = "0010|0010"
# Type 2 attributes of the CT Image IOD that a source without them (NIfTI, NRRD, MetaImage)
# cannot fill: present and empty, as the standard allows for "unknown". The first five a
# non-DICOM source's new study fills (`_new_study`); a DICOM source may lack them.
UNKNOWN_TYPE2 = (
    "0010|0010",  # PatientName
    "0010|0020",  # PatientID
    "0020|0010",  # StudyID
    "0008|0020",  # StudyDate
    "0008|0030",  # StudyTime
    "0010|0030",  # PatientBirthDate
    "0010|0040",  # PatientSex
    "0008|0050",  # AccessionNumber
    "0008|0090",  # ReferringPhysicianName
    "0020|1040",  # PositionReferenceIndicator
    "0018|5100",  # PatientPosition
    "0020|0060",  # Laterality
    "0008|0070",  # Manufacturer
    "0018|0060",  # KVP
    "0020|0012",  # AcquisitionNumber
)
# An output whose source has no window (a non-DICOM source, or a DICOM one without) opens in
# a soft-tissue window, with a lung window second.
WINDOW_CENTER = "0028|1050"
WINDOW_WIDTH = "0028|1051"
DEFAULT_WINDOW = {
    WINDOW_CENTER: "40\\-600",
    WINDOW_WIDTH: "400\\1500",
    "0028|1055": "SOFT TISSUE\\LUNG",
}
ANONYMOUS_NAME = "ANONYMOUS^PATIENT"
SLICE_THICKNESS = "0018|0050"
SERIES_DESCRIPTION = "0008|103e"


def check_patient(patient_id: str | None, patient_name: str | None) -> None:
    """Refuse an ID or name that is not a valid DICOM LO or PN value (at most 64 printable
    characters, no backslash: it separates values)."""
    for argument, value in (("patient_id", patient_id), ("patient_name", patient_name)):
        if value is None:
            continue
        if not value.strip() or len(value) > 64 or "\\" in value or not value.isprintable():
            raise UsageError(
                Argument(argument),
                f" must be 1 to 64 printable characters without a backslash, got {value!r}",
            )


def with_patient(volume: Volume, patient_id: str | None, patient_name: str | None) -> Volume:
    """The volume filed under the given patient in a DICOM output. Only a non-DICOM source
    takes one: a DICOM source's output joins its study, which belongs to its own patient."""
    if patient_id is None and patient_name is None:
        return volume
    check_patient(patient_id, patient_name)
    given = Argument("patient_id") if patient_id is not None else Argument("patient_name")
    if STUDY_UID in volume.dicom_tags:
        raise UsageError(
            f"{volume.source}: a DICOM source's output stays with its own patient; drop ", given
        )
    tags = dict(volume.dicom_tags)
    if patient_id is not None:
        tags[PATIENT_ID] = patient_id
    if patient_name is not None:
        tags[PATIENT_NAME] = patient_name
    if not all(value is None or value.isascii() for value in (patient_id, patient_name)):
        tags["0008|0005"] = "ISO_IR 192"
    return replace(volume, dicom_tags=tags)


def _new_study(study_uid: str, now: datetime.datetime) -> dict[str, str]:
    """What a DICOM output of a non-DICOM source needs to be one study of one patient: a
    single study date and time (else each file gets its own time and converters split the
    series) and an ID. The default patient is anonymous with an ID of the study's
    own, never empty, so that a PACS never files unrelated scans under one patient."""
    return {
        "0008|0020": now.strftime("%Y%m%d"),
        "0008|0030": now.strftime("%H%M%S"),
        "0020|0010": "1",
        PATIENT_ID: "ANON-" + hashlib.sha256(study_uid.encode()).hexdigest()[:12].upper(),
        PATIENT_NAME: ANONYMOUS_NAME,
    }


def _window(tags: dict[str, str]) -> dict[str, str]:
    """The source's window when it has one (centre and width), else `DEFAULT_WINDOW`."""
    if tags.get(WINDOW_CENTER) and tags.get(WINDOW_WIDTH):
        return {}
    return DEFAULT_WINDOW


def _image_type(normal: np.ndarray) -> str:
    """DERIVED\\SECONDARY and the plane: AXIAL when the slices are closer to axial than to
    any other plane, else REFORMATTED (the CT Image IOD defines only AXIAL and LOCALIZER)."""
    plane = "AXIAL" if int(np.argmax(np.abs(normal))) == 2 else "REFORMATTED"
    return f"DERIVED\\SECONDARY\\{plane}"


def new_uid() -> str:
    """A globally unique DICOM UID derived from a random UUID (the ISO '2.25' root)."""
    return f"2.25.{uuid.uuid4().int}"


def list_series(folder: Path) -> list[str]:
    """Series Instance UIDs of the DICOM series directly inside ``folder``.

    GDCM gives up on the whole folder when one file has a header it cannot make sense of
    (SamplesPerPixel 0, say); that is an `InputError` naming the folder, not a traceback.
    """
    with native_stderr_captured():
        try:
            return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
        except RuntimeError as error:
            raise InputError(
                f"{folder}: unreadable DICOM file ({first_reason(str(error))})"
            ) from None


def is_dicom_folder(folder: Path) -> bool:
    """Whether ``folder`` directly holds at least one DICOM series.

    A folder whose DICOM files are too broken to list counts too: reading it then says what is
    wrong, where answering no would quietly skip it.
    """
    if not folder.is_dir():
        return False
    try:
        return bool(list_series(folder))
    except InputError:
        return True


def _slice_header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.LoadPrivateTagsOff()
    reader.ReadImageInformation()
    return reader


def _describe_series(folder: Path, uid: str) -> str:
    """One entry of the list of series a folder holds. A series whose first slice cannot be
    read is listed as unreadable rather than ending the listing: the user may want another."""
    try:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        header = _slice_header(files[0])
    except RuntimeError as error:
        return f"{uid} (unreadable: {first_reason(str(error))})"
    description = (
        header.GetMetaData(SERIES_DESCRIPTION).strip()
        if header.HasMetaDataKey(SERIES_DESCRIPTION)
        else ""
    )
    return f"{uid} ({len(files)} slices{', ' + description if description else ''})"


def _subfolder_hint(folder: Path) -> str:
    """Name the subfolders of ``folder``: GDCM only looks at the files directly inside it, and
    exported studies often keep each series one level down."""
    try:
        subfolders = sorted(item.name for item in folder.iterdir() if item.is_dir())
    except OSError:
        return ""
    if not subfolders:
        return ""
    shown = ", ".join(subfolders[:5]) + (", ..." if len(subfolders) > 5 else "")
    return f" (give the folder that holds the slice files; subfolders here: {shown})"


def read_series(folder: Path, series_uid: str | None = None) -> Volume:
    """Read one DICOM series from a folder as a HU volume, refusing irregular stacks."""
    series = list_series(folder)
    if not series:
        raise InputError(f"{folder}: no DICOM series in this folder{_subfolder_hint(folder)}")
    if series_uid is None:
        if len(series) > 1:
            with native_stderr_captured():
                listing = "; ".join(_describe_series(folder, uid) for uid in series)
            raise UsageError(
                f"{folder} holds {len(series)} DICOM series, choose one with ",
                Argument("series_uid"),
                f": {listing}",
            )
        series_uid = series[0]
    elif series_uid not in series:
        raise UsageError(f"{folder}: no series {series_uid}; it holds {', '.join(series)}")

    with native_stderr_captured():
        try:
            files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))
            headers = [_slice_header(name) for name in files]
        except RuntimeError as error:
            raise InputError(
                f"{folder}: unreadable DICOM slice ({first_reason(str(error))})"
            ) from None
    positions = np.array([h.GetOrigin() for h in headers])
    direction = np.asarray(headers[0].GetDirection()).reshape(3, 3)
    row, column = direction[:, 0], direction[:, 1]
    for name, header in zip(files, headers, strict=True):
        other = np.asarray(header.GetDirection()).reshape(3, 3)
        if not np.allclose(other[:, :2], direction[:, :2], atol=1e-4):
            raise InputError(f"{folder}: slice {Path(name).name} has a different orientation")
        if header.GetSize()[:2] != headers[0].GetSize()[:2]:
            raise InputError(f"{folder}: slice {Path(name).name} has a different image size")
    order = np.argsort(positions @ np.cross(row, column), kind="stable")
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    try:
        check_slice_positions(
            positions[order], row, column, pixel_spacing=min(headers[0].GetSpacing()[:2])
        )
    except GeometryError as error:
        # The geometry check does not know the folder; the user needs to know which series.
        raise GeometryError(f"{folder}: {error}") from None

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    with native_stderr_captured():
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(
                f"{folder}: cannot read the series ({first_reason(str(error))})"
            ) from None
    tags = {
        key: headers[0].GetMetaData(key).strip()
        for key in COPIED_TAGS
        if headers[0].HasMetaDataKey(key)
    }
    thickness = None
    if headers[0].HasMetaDataKey(SLICE_THICKNESS):
        try:
            thickness = float(headers[0].GetMetaData(SLICE_THICKNESS))
        except ValueError:
            thickness = None
    return Volume(image=image, dicom_tags=tags, slice_thickness=thickness, source=folder)


def _decimal_string(value: float) -> str:
    """Format a number as a DICOM decimal string (at most 16 characters)."""
    for digits in range(12, 2, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.2e}"


def _slices_last(image: sitk.Image) -> sitk.Image:
    """The same voxels at the same world positions, with the slice axis as index axis 2.

    A DICOM file is one slice and SliceThickness belongs to the slice axis, so a stack along x
    or y (sagittal, coronal) is written as planes across that axis. The axes are rotated
    cyclically, which keeps the handedness of the direction matrix.
    """
    axis = slice_axis(image.GetSpacing())
    if axis == 2:
        return image
    return sitk.PermuteAxes(image, [(axis + 1) % 3, (axis + 2) % 3, axis])


def write_series(volume: Volume, folder: Path, description: str) -> None:
    """Write an int16 volume as a CT DICOM series into a new folder, one file per slice along
    the volume's slice axis (`thinct.geometry.slice_axis`)."""
    if volume.image.GetPixelID() != sitk.sitkInt16:
        raise UsageError("DICOM output is written as int16 HU")
    image = _slices_last(volume.image)
    grid = Grid.of(image)
    now = datetime.datetime.now()
    direction = grid.matrix
    normal = np.cross(direction[:, 0], direction[:, 1])
    orientation = "\\".join(_decimal_string(v) for v in (*direction[:, 0], *direction[:, 1]))
    thickness = volume.slice_thickness or grid.spacing[2]
    study_uid = volume.dicom_tags.get(STUDY_UID) or new_uid()
    study = {} if STUDY_UID in volume.dicom_tags else _new_study(study_uid, now)
    common = {
        "0008|0060": "CT",
        **dict.fromkeys(UNKNOWN_TYPE2, ""),
        STUDY_UID: study_uid,
        "0020|0052": new_uid(),
        **study,
        **volume.dicom_tags,
        **_window(volume.dicom_tags),
        "0020|000e": new_uid(),
        "0020|0011": "9001",
        "0008|0021": now.strftime("%Y%m%d"),
        "0008|0031": now.strftime("%H%M%S"),
        "0008|0023": now.strftime("%Y%m%d"),
        "0008|0033": now.strftime("%H%M%S"),
        "0008|0008": _image_type(normal),
        "0008|103e": description[:64],
        "0008|2111": description[:1024],
        "0018|0050": _decimal_string(thickness),
        "0018|0088": _decimal_string(grid.spacing[2]),
        "0020|0037": orientation,
        "0028|1052": "0",
        "0028|1053": "1",
        "0028|1054": "HU",
    }
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    with native_stderr_captured():
        for k in range(grid.size[2]):
            # A one-slice 3D image, not a 2D plane: once GDCM has read any DICOM file in this
            # process it writes the image's own z spacing into SpacingBetweenSlices, which is 1
            # for a 2D plane whatever the tag says.
            plane = image[:, :, k : k + 1]
            position = grid.index_to_world([0, 0, k])
            for key, value in common.items():
                plane.SetMetaData(key, value)
            plane.SetMetaData("0008|0018", new_uid())
            plane.SetMetaData("0020|0013", str(k + 1))
            plane.SetMetaData("0020|0032", "\\".join(_decimal_string(v) for v in position))
            plane.SetMetaData("0020|1041", _decimal_string(float(position @ normal)))
            name = f"IM{k + 1:05d}.dcm"
            writer.SetFileName(str(folder / name))
            try:
                writer.Execute(plane)
            except RuntimeError as error:
                raise OutputError(f"DICOM slice {name}: {first_reason(str(error))}") from None
