"""Geometry-exact CT input and output (NIfTI, NRRD, MetaImage, DICOM series) via SimpleITK."""

from thinct.io.formats import Format, input_format, output_format, volume_suffix
from thinct.io.reading import check_volume, hounsfield_warning, read_volume
from thinct.io.staging import STAGING_SUFFIX
from thinct.io.writing import OUTPUT_TYPES, output_request, write_volume

__all__ = [
    "OUTPUT_TYPES",
    "STAGING_SUFFIX",
    "Format",
    "check_volume",
    "hounsfield_warning",
    "input_format",
    "output_format",
    "output_request",
    "read_volume",
    "volume_suffix",
    "write_volume",
]
