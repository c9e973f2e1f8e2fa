"""Catch truncated NIfTI files, and NIfTI files with NaN or infinite voxels, before SimpleITK
reads them.

ITK's NIfTI reader fills the voxels missing from a truncated .nii or .nii.gz with zeros and
reports no error, which would silently turn a broken download into a scan with a black slab.
Reading the stream to its end (which also checks the gzip CRC) and comparing its length with
what the header promises catches that. The same reader also replaces NaN and infinite floats
with 0 (water, in HU) without a word, so the float voxels are checked on that same pass.

Whether a file is gzip-compressed is told by its first bytes, not its name: ITK reads an
uncompressed NIfTI named .nii.gz (zlib passes such a stream through), but not a compressed one
named .nii, which is refused here with a message that says so.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thinct.errors import InputError

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
# NIfTI datatype codes of the real floating-point types that numpy can check.
_FLOAT_DATATYPES = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class _Layout:
    """Where a single-file NIfTI keeps its voxels, and how many bytes it must hold."""

    offset: int
    expected: int
    float_dtype: np.dtype | None


def _layout(header: bytes, path: Path) -> _Layout:
    """Data offset, complete length and float voxel type of a NIfTI-1/2 file."""
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
        if size == 348 and len(header) >= 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype = struct.unpack(endian + "h", header[70:72])[0]
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if size == 540 and len(header) >= 540:
            datatype = struct.unpack(endian + "h", header[12:14])[0]
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
    offset = max(offset, size)
    code = _FLOAT_DATATYPES.get(datatype)
    float_dtype = np.dtype(endian + code) if code else None
    return _Layout(offset=offset, expected=offset + voxels * bitpix // 8, float_dtype=float_dtype)


class _FiniteCheck:
    """Counts NaN and infinite voxels in the data bytes of a float NIfTI as they stream by."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        self.position = 0  # stream offset of the next block
        self.pending = b""  # the start of a voxel split across two blocks
        self.count = 0

    def feed(self, block: bytes) -> None:
        start, self.position = self.position, self.position + len(block)
        dtype = self.layout.float_dtype
        if dtype is None:
            return
        low = max(self.layout.offset - start, 0)
        high = min(self.layout.expected - start, len(block))
        if low >= high:
            return
        data = self.pending + block[low:high]
        usable = len(data) - len(data) % dtype.itemsize
        self.pending = data[usable:]
        values = np.frombuffer(data[:usable], dtype=dtype)
        self.count += int(values.size - np.count_nonzero(np.isfinite(values)))


def _is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    with open(path, "rb") as stream:
        return stream.read(2) == _GZIP_MAGIC


def check_nifti_complete(path: Path) -> None:
    """Raise `InputError` unless the NIfTI file holds all the data its header announces and,
    for float voxels, unless every voxel is finite."""
    try:
        compressed = _is_gzip(path)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if compressed and not path.name.lower().endswith(".gz"):
        raise InputError(f"{path}: gzip-compressed data; ITK reads it only when named .nii.gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
            layout = _layout(header, path)
            finite = _FiniteCheck(layout)
            finite.feed(header)
            while chunk := stream.read(_CHUNK):
                finite.feed(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error, struct.error) as error:
        kind = "truncated or corrupt" if compressed else "corrupt"
        raise InputError(f"{path}: {kind} file ({error})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if finite.position < layout.expected:
        raise InputError(
            f"{path}: truncated file ({finite.position} of {layout.expected} bytes; "
            "the end of the volume is missing)"
        )
    if finite.count:
        raise InputError(f"{path}: {finite.count} voxels are NaN or infinite")
