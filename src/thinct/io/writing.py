"""Write a volume atomically: it is staged in a hidden folder beside the output and moved into
place only when complete, so a failure never leaves a partial output behind.

Without ``overwrite``, the final move is also the existence check: a name is claimed only if
nothing holds it (a hard link, or a folder made for it), so of two processes writing the same
output at once one writes it and the other is told that it exists, instead of the second
silently replacing the first.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from thinct.errors import (
    Argument,
    InputError,
    OutputError,
    ThinctError,
    ThinctWarning,
    UsageError,
)
from thinct.io import dicom
from thinct.io.formats import Format, output_format
from thinct.io.integrity import check_nifti_complete
from thinct.io.native import first_reason, native_stderr_captured
from thinct.io.staging import Abandoned, make_staging, remove_abandoned
from thinct.volume import Volume

OUTPUT_TYPES: tuple[str, ...] = ("int16", "float32")
_INT16 = np.iinfo(np.int16)
# Voxel types whose every value is an int16 value.
_WITHIN_INT16 = {sitk.sitkInt8, sitk.sitkUInt8, sitk.sitkInt16}
# A write that fails while its file system has less than this free ran out of space: writers
# fill the disk up to their last block before they fail (ITK does not say why it failed).
_FULL_BYTES = 1 << 20
_NO_SPACE = "no space left on device"


def as_output_type(image: sitk.Image, dtype: str) -> sitk.Image:
    """Round and clip to int16 HU, or convert to float32 (``dtype`` checked by `output_request`)."""
    if dtype == "float32":
        return sitk.Cast(image, sitk.sitkFloat32)
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    values = np.rint(np.clip(sitk.GetArrayViewFromImage(image), _INT16.min, _INT16.max))
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


def check_fits_int16(image: sitk.Image, name: Path | str) -> None:
    """Refuse (a `UsageError` naming ``dtype``) an image with any value that int16 cannot hold
    once rounded: an int16 output would clip it. CT in Hounsfield units always fits; an int32
    scan of raw detector values did not, and came out 99.94 % saturated. ``name`` names the
    image in the message."""
    if image.GetPixelID() in _WITHIN_INT16:
        return
    # Plane by plane, so the count needs no full-size temporary array. np.rint rounds halves
    # to even: -32768.5 becomes -32768, 32767.5 becomes 32768.
    outside = sum(
        int(np.count_nonzero((plane < _INT16.min - 0.5) | (plane >= _INT16.max + 0.5)))
        for plane in sitk.GetArrayViewFromImage(image)
    )
    if outside:
        share = 100 * outside / np.prod(image.GetSize(), dtype=np.float64)
        raise UsageError(
            f"{name}: {outside} voxels ({share:.3g} %) lie outside the int16 range "
            f"({_INT16.min} to {_INT16.max}) and would be clipped; write float32 (",
            Argument("dtype", "float32"),
            ")",
        )


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
    clip: bool = False,
) -> None:
    """Write a volume as NIfTI, NRRD, MetaImage or (for a name without extension) DICOM.

    The output is int16 HU unless ``dtype="float32"``; DICOM is always int16. A volume with
    values that int16 cannot hold is refused (`check_fits_int16`) unless ``clip``, which
    clips them (for what an interpolation overshoots past the range of an input that fit).
    ``description`` becomes the DICOM series and derivation description. Missing folders above
    the output are created; nothing is left behind (neither the output nor folders made for
    it) on failure. Staging folders that killed thinct processes left in the output's folder
    are removed first, with a `ThinctWarning` (`thinct.io.staging`).
    """
    path = Path(path)
    fmt = output_request(path, dtype)
    if path.exists() and not overwrite:
        raise _exists(path)
    _check_writable(volume.image, path)
    if dtype == "int16" and not clip:
        check_fits_int16(volume.image, path)
    image = as_output_type(volume.image, dtype)
    parent = path.parent
    created = _first_missing(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _report_abandoned(remove_abandoned(parent), parent)
        staging = make_staging(parent)
    except OSError as error:
        _remove_empty_folders(parent, created)
        reason = _reason(error, parent)
        raise OutputError(f"cannot write {path} (folder {parent}: {reason})") from None
    try:
        staged = staging / path.name
        if fmt is Format.DICOM:
            output = volume.with_image(image, volume.slice_thickness)
            dicom.write_series(output, staged, description)
        else:
            _write_image_file(image, staged, compress=fmt is not Format.NIFTI)
            if fmt is Format.NIFTI:
                _check_written_nifti(staged)
        _move_into_place(staging, staged, parent, overwrite)
    except UsageError as error:  # another process wrote the output meanwhile
        failure: ThinctError | None = error
    except (OutputError, OSError) as error:
        failure = OutputError(f"cannot write {path} ({_reason(error, parent)})")
    else:
        failure = None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if failure is not None:
        _remove_empty_folders(parent, created)
        raise failure


def _exists(path: Path | str) -> UsageError:
    return UsageError(f"{path} exists; use ", Argument("overwrite", True), " to replace it")


def _reason(error: OutputError | OSError, folder: Path) -> str:
    """Why a write failed, in words. A full disk is said as such: ITK and GDCM hide the system's
    reason ("does not support this component type", a NIfTI file left short), so when they
    fail, the free space of the folder's file system is checked while the failed write still
    fills it."""
    if isinstance(error, OSError):
        return _NO_SPACE if error.errno == errno.ENOSPC else error.strerror or str(error)
    try:
        full = shutil.disk_usage(folder).free < _FULL_BYTES
    except OSError:
        full = False
    return _NO_SPACE if full else str(error)


def _report_abandoned(removed: list[Abandoned], folder: Path) -> None:
    """One warning line for the staging folders of killed processes that were removed."""
    if not removed:
        return
    size = sum(item.size for item in removed) / 1e6
    count = f"{len(removed)} staging folders" if len(removed) > 1 else "a staging folder"
    warnings.warn(
        f"removed {count} ({size:.1f} MB) that thinct processes killed before they finished "
        f"had left in {folder}",
        ThinctWarning,
        stacklevel=3,
    )


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


def _move_into_place(staging: Path, staged: Path, parent: Path, overwrite: bool) -> None:
    """Move the staged files into ``parent``, the named output (a MetaImage header) last.

    With ``overwrite``, what they replace is kept in ``staging`` until all are in place, and
    put back if a move fails or is interrupted: a failed overwrite leaves the old output (a
    MetaImage header and its data file, a DICOM folder) as it was. Without it, each name is
    claimed only if it is free (`_claim`), else a `UsageError` says it exists; what was placed
    before is taken back. A missing ``staged`` is a failure, not a success with the old output
    still there.
    """
    items = [item for item in staging.iterdir() if item != staged] + [staged]
    if not overwrite:
        _claim_all(items, parent)
        return
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


def _claim_all(items: list[Path], parent: Path) -> None:
    """Place each staged item under its name in ``parent`` if the name is free; on any
    failure, take back what was placed (a MetaImage data file whose header lost the race).
    The last item is the named output."""
    placed: list[tuple[Path, Path]] = []
    try:
        for item in items:
            target = parent / item.name
            try:
                _claim(item, target)
            except FileExistsError:
                named = parent / items[-1].name
                raise _exists(
                    target if target == named else f"{target}, the data file of {named},"
                ) from None
            placed.append((item, target))
    except BaseException:
        for item, target in reversed(placed):
            os.replace(target, item)
        raise


def _claim(item: Path, target: Path) -> None:
    """Give ``item`` the name ``target`` in one step that fails (FileExistsError) if the name
    is taken.

    A file is hard-linked (a link fails on any existing name), then its staged name removed.
    A folder gets the name by making an empty folder there, which fails if the name is taken,
    and renaming onto it (a rename replaces an empty folder, which is why the name must first
    be claimed). Where the file system has no hard links, a file claims its name the same
    way, with an empty file.
    """
    if item.is_dir():
        target.mkdir()
    else:
        try:
            os.link(item, target)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (FAT, some network shares)
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        else:
            item.unlink()  # so that taking it back (os.replace) moves the name alone
            return
    try:
        os.replace(item, target)
    except BaseException:
        _remove_claim(target)
        raise


def _remove_claim(target: Path) -> None:
    """Free a name claimed by `_claim` whose rename did not happen."""
    if target.is_dir() and not target.is_symlink():
        target.rmdir()
    else:
        target.unlink()


def _link_or_rename(path: Path, kept: Path) -> None:
    """Keep ``path`` at ``kept``: a hard link where the file system has them, else moved."""
    try:
        os.link(path, kept)
    except OSError:
        os.rename(path, kept)
