"""Write a volume atomically: it is staged in a hidden folder beside the output and moved into
place only when complete, so a failure never leaves a partial output behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from thinct.errors import Argument, InputError, OutputError, UsageError
from thinct.io import dicom
from thinct.io.formats import Format, output_format
from thinct.io.integrity import check_nifti_complete
from thinct.io.native import first_reason, native_stderr_captured
from thinct.volume import Volume

OUTPUT_TYPES: tuple[str, ...] = ("int16", "float32")
# The hidden staging folder beside an output is named ".NAME.<random>" + STAGING_SUFFIX, so that
# whatever walks output folders (batch discovery) can recognise and skip one left by a crash.
STAGING_SUFFIX = ".thinct-tmp"


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
        choices = ", ".join(OUTPUT_TYPES)
        raise UsageError(
            "output type (", Argument("dtype"), f") must be one of {choices}, got {dtype!r}"
        )
    if fmt is Format.DICOM and dtype != "int16":
        raise UsageError(
            f"{path}: DICOM output is int16 HU; drop ",
            Argument("dtype"),
            " or write another format",
        )
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
        raise UsageError(f"{path} exists; use ", Argument("overwrite", True), " to replace it")
    _check_writable(volume.image, path)
    image = as_output_type(volume.image, dtype)
    parent = path.parent
    created = _first_missing(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=STAGING_SUFFIX, dir=parent))
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


@dataclass
class _Swap:
    """One staged item replacing ``target``, undoable while the staging folder exists: the old
    target is kept at ``kept`` (a path inside the staging folder)."""

    item: Path
    target: Path
    kept: Path
    placed: bool = False

    def run(self) -> None:
        if self.target.is_file() and not self.target.is_symlink() and self.item.is_file():
            # A hard link keeps the old file while os.replace swaps in the new one atomically,
            # so readers never find the output missing.
            _link_or_rename(self.target, self.kept)
        elif self.target.exists() or self.target.is_symlink():
            os.rename(self.target, self.kept)
        os.replace(self.item, self.target)
        self.placed = True

    def undo(self) -> None:
        if self.placed:
            os.replace(self.target, self.item)
        if self.kept.exists() or self.kept.is_symlink():
            os.replace(self.kept, self.target)


def _move_into_place(staging: Path, staged: Path, parent: Path) -> None:
    """Move the staged files into ``parent``, the named output (a MetaImage header) last.

    What they replace is kept in ``staging`` until all are in place, and put back if a move
    fails or is interrupted: a failed overwrite leaves the old output (a MetaImage header and
    its data file, a DICOM folder) as it was. A missing ``staged`` is such a failure, not a
    success with the old output still there.
    """
    items = [item for item in staging.iterdir() if item != staged] + [staged]
    kept = Path(tempfile.mkdtemp(prefix=".replaced-", dir=staging))
    swaps: list[_Swap] = []
    try:
        for item in items:
            swaps.append(_Swap(item, parent / item.name, kept / item.name))
            swaps[-1].run()
    except BaseException:
        for swap in reversed(swaps):
            swap.undo()
        raise


def _link_or_rename(path: Path, kept: Path) -> None:
    """Keep ``path`` at ``kept``: a hard link where the file system has them, else moved."""
    try:
        os.link(path, kept)
    except OSError:
        os.rename(path, kept)
