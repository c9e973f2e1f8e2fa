"""Catch truncated NIfTI files before SimpleITK reads them.

ITK's NIfTI reader fills the voxels missing from a truncated .nii or .nii.gz with zeros and
reports no error, which would silently turn a broken download into a scan with a black slab.
Reading the stream to its end (which also checks the gzip CRC) and comparing its length with
what the header promises catches that.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from thinct.errors import InputError

_CHUNK = 1 << 20


def _expected_length(header: bytes, path: Path) -> int:
    """Bytes a complete single-file NIfTI-1/2 holds: data offset plus voxel data."""
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
        if size == 348 and len(header) >= 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if size == 540 and len(header) >= 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        raise InputError(f"{path}: not a NIfTI file (no valid NIfTI header)")
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1 : ndim + 1]) or bitpix <= 0:
        raise InputError(f"{path}: corrupt NIfTI header (dimensions {dims[: ndim + 1]})")
    voxels = 1
    for d in dims[1 : ndim + 1]:
        voxels *= d
    return max(offset, size) + voxels * bitpix // 8


def check_nifti_complete(path: Path) -> None:
    """Raise `InputError` unless the NIfTI file holds all the data its header announces."""
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
            expected = _expected_length(header, path)
            length = len(header)
            while chunk := stream.read(_CHUNK):
                length += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error, struct.error) as error:
        kind = "truncated or corrupt" if compressed else "corrupt"
        raise InputError(f"{path}: {kind} file ({error})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if length < expected:
        raise InputError(
            f"{path}: truncated file ({length} of {expected} bytes; the end of the volume is missing)"
        )
