"""Read a CT volume from any supported format and refuse what thinct cannot process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from thinct.errors import Argument, InputError, UsageError
from thinct.io import dicom
from thinct.io.formats import Format, input_format
from thinct.io.integrity import check_nifti_complete
from thinct.io.native import first_reason, native_stderr_captured
from thinct.volume import Volume

_FLOAT_TYPES = {sitk.sitkFloat32, sitk.sitkFloat64}


def read_volume(path: Path | str, series_uid: str | None = None) -> Volume:
    """Read a 3D CT volume (NIfTI, NRRD, MetaImage or a DICOM series folder).

    Geometry and HU values are kept as stored (DICOM rescale applied). Anything that is not a
    complete, finite, single-channel 3D volume with more than one slice raises `InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    fmt = input_format(path)
    if fmt is Format.DICOM:
        volume = dicom.read_series(path, series_uid)
    else:
        if series_uid is not None:
            raise UsageError(
                f"{path}: ", Argument("series_uid"), " only applies to DICOM series folders"
            )
        if fmt is Format.NIFTI:
            check_nifti_complete(path)
        volume = Volume(image=_read_image_file(path), source=path)
    check_volume(volume.image, path)
    return volume


def _read_image_file(path: Path) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with native_stderr_captured() as native:
        try:
            reader.ReadImageInformation()
            # Complex voxels report two components; say what they are, not "multi-channel".
            if "complex" in sitk.GetPixelIDValueAsString(reader.GetPixelID()):
                raise InputError(f"{path}: complex-valued voxels; thinct needs real intensities")
            _check_layout(reader.GetDimension(), reader.GetNumberOfComponents(), path)
            return reader.Execute()
        except RuntimeError as error:
            reason = first_reason(str(error))
    detail = first_reason(native.text) if native.text.strip() else reason
    if "Unable to determine ImageIO reader" in reason:
        detail = "not a readable image of this type"
    raise InputError(f"{path}: cannot read ({detail})")


def _check_layout(dimension: int, components: int, path: Path) -> None:
    if dimension != 3:
        raise InputError(f"{path}: a {dimension}D image; thinct needs a single 3D volume")
    if components != 1:
        raise InputError(
            f"{path}: {components} values per voxel (colour or multi-channel); "
            "thinct needs one intensity per voxel"
        )


def check_volume(image: sitk.Image, path: Path | str) -> None:
    """Refuse volumes thinct cannot process: wrong dimension, channels, one slice, NaN/inf.

    ``path`` names the volume in messages (a file, or a napari layer).
    """
    _check_layout(image.GetDimension(), image.GetNumberOfComponentsPerPixel(), path)
    if min(image.GetSize()) < 2:
        raise InputError(
            f"{path}: a single-slice volume (size {image.GetSize()}); nothing to upsample"
        )
    if "complex" in image.GetPixelIDTypeAsString():
        raise InputError(f"{path}: complex-valued voxels; thinct needs real intensities")
    if image.GetPixelID() in _FLOAT_TYPES:
        bad = int(np.count_nonzero(~np.isfinite(sitk.GetArrayViewFromImage(image))))
        if bad:
            raise InputError(f"{path}: {bad} voxels are NaN or infinite")


def hounsfield_warning(image: sitk.Image) -> str | None:
    """A warning when intensities do not look like CT in Hounsfield units, else None.

    Any CT field of view contains air or lung near -1000 HU; a volume whose lowest values stay
    above -200 is most likely raw detector values, a 0-255 export or another modality.
    """
    sample = sitk.GetArrayViewFromImage(image)[::2, ::4, ::4]
    low, high = float(np.percentile(sample, 0.5)), float(sample.max())
    if low > -200:
        return (
            f"intensities range from {low:g} to {high:g}, which does not look like CT in "
            "Hounsfield units (air is near -1000 HU); the result may be meaningless"
        )
    return None
