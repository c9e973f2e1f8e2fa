"""npe2 sample data: the example scan that ships inside the package, so that File > Open
Sample works from an installed plugin without the source tree."""

from __future__ import annotations

from importlib.resources import as_file, files

from thinct_napari._reader import LayerData, read_layers

EXAMPLE_SCAN = "lidc0002_crop_5mm.nii.gz"


def example_scan() -> list[LayerData]:
    """A 192 x 192 x 16 crop of a real chest CT (LIDC-IDRI-0002) with 5 mm slices."""
    with as_file(files("thinct_napari") / "data" / EXAMPLE_SCAN) as path:
        return read_layers(str(path))
