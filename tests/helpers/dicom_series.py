"""CT series written with pydicom alone, as a scanner would export them (independent of
thinct's own DICOM writer), for the DICOM reader's and the DICOM node's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid


def build_series(
    folder: Path,
    hu: np.ndarray,
    *,
    pixel_spacing=(0.7, 0.8),
    step: float = 2.5,
    origin=(-20.0, 10.0, -50.0),
    row=(1.0, 0.0, 0.0),
    column=(0.0, 1.0, 0.0),
    positions=None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    stored: str = "uint16",
    order=None,
    explicit: bool = False,
    series_uid: str | None = None,
    study_uid: str | None = None,
    **tags,
) -> list[Path]:
    """Write a CT series with pydicom alone: slice k of ``hu`` (z, y, x) at ``positions[k]``
    (default: ``origin`` + k * step along row x column), stored as ``(hu - intercept) / slope``.

    ``order`` is the order the files are numbered in (to shuffle them); ``pixel_spacing`` is
    (x, y) and ``tags`` are extra attributes set on every slice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    hu = np.asarray(hu)
    row, column = np.asarray(row, float), np.asarray(column, float)
    normal = np.cross(row, column)
    if positions is None:
        positions = [np.asarray(origin, float) + k * step * normal for k in range(len(hu))]
    stored_values = np.rint((hu - intercept) / slope)
    info = np.iinfo(stored)
    assert stored_values.min() >= info.min and stored_values.max() <= info.max
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    files = []
    for number, k in enumerate(order if order is not None else range(len(hu))):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if explicit else ImplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "THINCT-0042"
        ds.PatientBirthDate = "19600101"
        ds.PatientSex = "F"
        ds.StudyInstanceUID = study_uid
        ds.StudyID = "77"
        ds.StudyDate = "20200131"
        ds.StudyTime = "101500"
        ds.AccessionNumber = "ACC123"
        ds.StudyDescription = "CHEST"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in positions[k]]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *column)]
        ds.PixelSpacing = [pixel_spacing[1], pixel_spacing[0]]  # row spacing (y) first
        ds.SliceThickness = step
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if np.dtype(stored).kind == "i" else 0
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.PixelData = stored_values[k].astype(f"<{np.dtype(stored).str[1:]}").tobytes()
        path = folder / f"file{number:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def thick_series(folder: Path, slices: int = 6, seed: int = 0, **tags: object) -> list[Path]:
    """A small scanner-like 5 mm CT series: 40 x 48 pixels, smooth HU along z."""
    z, y, x = np.mgrid[0:slices, 0:40, 0:48]
    hu = (
        -600
        + 400 * np.sin(z / 2.0 + x / 9.0)
        + 5 * np.random.default_rng(seed).normal(size=z.shape)
    )
    tags.setdefault("SeriesDescription", "CHEST 5mm")
    return build_series(folder, hu.astype(np.int16), step=5.0, **tags)
