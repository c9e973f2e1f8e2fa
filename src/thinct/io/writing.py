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

from thinct.errors import InputError, OutputError, UsageError
from thinct.io import dicom
from thinct.io.formats import Format, output_format
from thinct.io.integrity import check_nifti_complete
from thinct.io.native import first_reason, native_stderr_captured
from thinct.volume import Volume

OutputType = Literal["int16", "float32"]
OUTPUT_TYPES: tuple[str, ...] = ("int16", "float32")


def as_output_type(image: sitk.Image, dtype: str) -> sitk.Image:
    """Round and clip to int16 HU, or convert to float32 (``dtype`` checked by `output_request`)."""
    if dtype == "float32":
        return sitk.Cast(image, sitk.sitkFloat32)
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    info = np.iinfo(np.int16)
    values = np.rint(np.clip(sitk.GetArrayViewFromImage(image), info.min, info.max))
    converted = sitk.GetImageFromArray(values.astype(np.int16))
    converted.CopyInformation(image)
    return converted


def _check_writable(image: sitk.Image, path: Path) -> None:
    """Refuse to write what no reader of thinct's outputs could use: anything but one finite
    intensity per voxel of a 3D grid. NaN would otherwise become an arbitrary int16 value
    (or a float NIfTI that ITK reads back as 0) without any error."""
    if image.GetDimension() != 3:
        raise OutputError(f"cannot write {path}: a {image.GetDimension()}D image is not a volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise OutputError(
            f"cannot write {path}: {image.GetNumberOfComponentsPerPixel()} values per voxel; "
            "a CT volume has one intensity per voxel"
        )
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        # Slice by slice, so the check needs no full-size temporary array.
        slices = sitk.GetArrayViewFromImage(image)
        bad = sum(int(s.size - np.count_nonzero(np.isfinite(s))) for s in slices)
        if bad:
            raise OutputError(f"cannot write {path}: {bad} voxels are NaN or infinite")


def output_request(path: Path, dtype: str) -> Format:
    """The format to write ``path`` in, refusing a name or type thinct cannot write (so callers
    can check an output before spending time on the input)."""
    fmt = output_format(path)
    if dtype not in OUTPUT_TYPES:
        raise UsageError(f"output type must be one of {', '.join(OUTPUT_TYPES)}, got {dtype!r}")
    if fmt is Format.DICOM and dtype != "int16":
        raise UsageError(f"{path}: DICOM output is int16 HU; drop --dtype or write another format")
    return fmt


def write_volume(
    volume: Volume,
    path: Path | str,
    *,
    overwrite: bool = False,
    dtype: str = "int16",
    description: str = "SYNTHETIC images written by thinct",
) -> None:
    """Write a volume as NIfTI, NRRD, MetaImage or (for a name without extension) DICOM.

    The output is int16 HU unless ``dtype="float32"``; DICOM is always int16. ``description``
    becomes the DICOM series and derivation description. Missing folders above the output are
    created; nothing is left behind (neither the output nor folders made for it) on failure.
    """
    path = Path(path)
    fmt = output_request(path, dtype)
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; use --overwrite to replace it")
    _check_writable(volume.image, path)
    image = as_output_type(volume.image, dtype)
    parent = path.parent
    created = _first_missing(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".thinct-tmp", dir=parent))
    except OSError as error:
        _remove_empty_folders(parent, created)
        raise OutputError(
            f"cannot write {path} (folder {parent}: {error.strerror or error})"
        ) from None
    try:
        staged = staging / path.name
        if fmt is Format.DICOM:
            output = volume.with_image(image, volume.slice_thickness)
            dicom.write_series(output, staged, description)
        else:
            _write_image_file(image, staged, compress=fmt is not Format.NIFTI)
            if fmt is Format.NIFTI:
                _check_written_nifti(staged)
        _move_into_place(staging, staged, parent)
    except OutputError as error:
        failure = f"cannot write {path} ({error})"
    except OSError as error:
        failure = f"cannot write {path} ({error.strerror or error})"
    else:
        failure = None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if failure is not None:
        _remove_empty_folders(parent, created)
        raise OutputError(failure)


def _first_missing(folder: Path) -> Path | None:
    """The topmost ancestor of ``folder`` (or itself) that does not exist yet, if any."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_empty_folders(folder: Path, top: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``top`` (the folders write_volume created),
    as long as they are empty."""
    if top is None:
        return
    for candidate in (folder, *folder.parents):
        try:
            candidate.rmdir()
        except OSError:
            return
        if candidate == top:
            return


def _write_image_file(image: sitk.Image, path: Path, compress: bool) -> None:
    """Write one image file; ITK's explanation (often only on its C++ stderr) becomes the
    `OutputError` message."""
    with native_stderr_captured() as native:
        try:
            sitk.WriteImage(image, str(path), useCompression=compress)
            return
        except RuntimeError as error:
            reason = first_reason(str(error))
    raise OutputError(first_reason(native.text) if native.text.strip() else reason)


def _check_written_nifti(path: Path) -> None:
    """ITK's NIfTI writer ignores failed writes (a full disk, a file size limit) and leaves a
    short file without an error, so the staged file is read back and checked before it is
    moved into place."""
    try:
        check_nifti_complete(path)
    except InputError as error:
        raise OutputError(
            f"the written file is incomplete: {str(error).split(': ', 1)[-1]}"
        ) from None


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
