"""Which file formats thinct reads and writes, told apart by file name."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from thinct.errors import InputError, UsageError


class Format(Enum):
    NIFTI = "NIfTI"
    NRRD = "NRRD"
    META = "MetaImage"
    DICOM = "DICOM series"


_READ_SUFFIXES = {
    ".nii.gz": Format.NIFTI,
    ".nii": Format.NIFTI,
    ".nrrd": Format.NRRD,
    ".nhdr": Format.NRRD,
    ".mha": Format.META,
    ".mhd": Format.META,
}
_WRITE_SUFFIXES = {k: v for k, v in _READ_SUFFIXES.items() if k != ".nhdr"}

READABLE = ", ".join(_READ_SUFFIXES) + " or a DICOM series folder"
WRITABLE = (
    ", ".join(_WRITE_SUFFIXES)
    + " or, for DICOM, a folder name without an extension or with a dot and digits (CT_1.25mm)"
)


def volume_suffix(path: Path | str) -> str | None:
    """The recognised volume extension of a path (".nii.gz", ".mha", ...), or None."""
    name = str(path).lower()
    for suffix in _READ_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def input_format(path: Path) -> Format:
    """Format of an existing input path: a folder is a DICOM series."""
    if path.is_dir():
        return Format.DICOM
    suffix = volume_suffix(path)
    if suffix is None:
        if path.suffix.lower() in {".dcm", ".ima"}:
            raise InputError(f"{path}: give the folder of the DICOM series, not one slice file")
        raise InputError(f"{path}: unsupported file type (thinct reads {READABLE})")
    return _READ_SUFFIXES[suffix]


def output_format(path: Path) -> Format:
    """Format to write: by a known extension, else a DICOM series folder.

    A name is a DICOM folder when it is an existing folder, has no extension, or its last
    dot starts a part that is not all letters (``thin_1.25mm``, ``CT_5.0mm``, ``scan.v2``, a
    UID such as ``1.2.840.113619.2.55``): such a dot belongs to the name, and refusing it would
    fail batches over UID-named series folders. An unknown all-letter extension (``.png``,
    ``.txt``, ``.dcm``) is refused as an unsupported type: it names a file format thinct does
    not write, and writing a folder under that name would only hide the mistake.
    """
    suffix = volume_suffix(path)
    if suffix is not None and suffix in _WRITE_SUFFIXES:
        return _WRITE_SUFFIXES[suffix]
    if suffix is None and (path.is_dir() or _is_folder_name(path.name)):
        return Format.DICOM
    raise UsageError(f"{path}: unsupported output type (thinct writes {WRITABLE})")


def _is_folder_name(name: str) -> bool:
    """No extension, or one that is not all letters (so a version, a number or a UID part)."""
    extension = Path(name).suffix
    return not extension[1:].isalpha()
