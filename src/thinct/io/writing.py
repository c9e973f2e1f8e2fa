"""Write a volume atomically: it is staged in a hidden folder beside the output and moved into
place only when complete, so a failure never leaves a partial output behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from thinct.errors import OutputError, UsageError
from thinct.io import dicom
from thinct.io.formats import Format, output_format
from thinct.io.native import first_reason, native_stderr_captured
from thinct.volume import Volume

OutputType = Literal["int16", "float32"]
OUTPUT_TYPES: tuple[str, ...] = ("int16", "float32")


def as_output_type(image: sitk.Image, dtype: str) -> sitk.Image:
    """Round and clip to int16 HU, or convert to float32."""
    if dtype not in OUTPUT_TYPES:
        raise UsageError(f"output type must be one of {', '.join(OUTPUT_TYPES)}, got {dtype!r}")
    if dtype == "float32":
        return sitk.Cast(image, sitk.sitkFloat32)
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    info = np.iinfo(np.int16)
    values = sitk.GetArrayViewFromImage(image)
    converted = sitk.GetImageFromArray(np.rint(np.clip(values, info.min, info.max)).astype(np.int16))
    converted.CopyInformation(image)
    return converted


def write_volume(
    volume: Volume,
    path: Path | str,
    *,
    overwrite: bool = False,
    dtype: str = "int16",
    description: str = "thinct",
) -> None:
    """Write a volume as NIfTI, NRRD, MetaImage or (for a name without extension) DICOM.

    The output is int16 HU unless ``dtype="float32"``; DICOM is always int16. ``description``
    becomes the DICOM series and derivation description.
    """
    path = Path(path)
    fmt = output_format(path)
    if fmt is Format.DICOM and dtype != "int16":
        raise UsageError("DICOM output is int16 HU; drop --dtype or write another format")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; use --overwrite to replace it")
    image = as_output_type(volume.image, dtype)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".thinct-tmp", dir=parent))
    except OSError as error:
        raise OutputError(f"cannot write to folder {parent} ({error.strerror or error})") from None
    try:
        staged = staging / path.name
        if fmt is Format.DICOM:
            dicom.write_series(volume.with_image(image, volume.slice_thickness), staged, description)
        else:
            _write_image_file(image, staged, compress=fmt is not Format.NIFTI)
        _move_into_place(staging, staged, parent)
    except OSError as error:
        raise OutputError(f"cannot write {path} ({error.strerror or error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_image_file(image: sitk.Image, path: Path, compress: bool) -> None:
    with native_stderr_captured() as native:
        try:
            sitk.WriteImage(image, str(path), useCompression=compress)
            return
        except RuntimeError as error:
            reason = first_reason(str(error))
    raise OutputError(f"cannot write {path.name} ({first_reason(native.text) or reason})")


def _move_into_place(staging: Path, staged: Path, parent: Path) -> None:
    """Move staged files into ``parent``; the named output (a MetaImage header) goes last."""
    items = sorted(staging.iterdir(), key=lambda item: item == staged)
    for index, item in enumerate(items):
        target = parent / item.name
        if item.is_dir() or target.is_dir():
            if target.exists() or target.is_symlink():
                os.rename(target, staging / f".replaced-{index}")
            os.rename(item, target)
        else:
            os.replace(item, target)
