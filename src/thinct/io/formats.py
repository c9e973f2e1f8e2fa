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
WRITABLE = ", ".join(_WRITE_SUFFIXES) + " or a folder name without extension for DICOM"


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
    """Format to write: by extension, and a DICOM series for a name without one."""
    suffix = volume_suffix(path)
    if suffix is not None and suffix in _WRITE_SUFFIXES:
        return _WRITE_SUFFIXES[suffix]
    if suffix is None and (path.is_dir() or not Path(path.name).suffix):
        return Format.DICOM
    raise UsageError(f"{path}: unsupported output type (thinct writes {WRITABLE})")
