"""npe2 writer: an Image layer saved as a CT volume, int16 HU, at the world position napari
shows it (the inverse of the reader's placement)."""

from __future__ import annotations

from typing import Any

from thinct.errors import ThinctError
from thinct.io import write_volume
from thinct.volume import Volume
from thinct_napari.geometry import image_from_layer


def write_image(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write one Image layer to ``path`` (.nii.gz, .nii, .nrrd or .mha) and return the paths
    written, as npe2 expects.

    The file is staged and renamed into place by `thinct.write_volume`, so a failed save never
    leaves a partial file; an existing file is replaced because napari's save dialog has
    already asked. Voxels are rounded and clipped to int16, the usual storage of CT in HU.
    """
    try:
        image = image_from_layer(data, attributes)
    except ThinctError as error:
        raise type(error)(f"cannot write {path}: {error}") from None
    write_volume(Volume(image=image), path, overwrite=True, clip=True)
    return [path]
