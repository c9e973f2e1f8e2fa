"""npe2 reader: CT volumes (NIfTI, NRRD, MetaImage, DICOM series folders) as Image layers at
their physical position (see `thinct_napari.geometry` for the convention)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from thinct.batch.jobs import is_scan
from thinct.io import read_volume, volume_suffix
from thinct.volume import Volume
from thinct.windows import WINDOWS
from thinct_napari.geometry import layer_transform

LayerData = tuple[Any, dict[str, Any], str]
PathOrPaths = str | list[str]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """`read_layers` when every path is a volume file or DICOM series folder thinct reads,
    else None, so that napari offers the path to its other readers instead."""
    paths = _as_list(path)
    if paths and all(is_scan(Path(p)) for p in paths):
        return read_layers
    return None


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """One Image layer per path. A file thinct cannot read raises the `thinct.ThinctError`
    that `thinct upsample` would report, which napari shows as a one-line notification."""
    return [volume_layer(read_volume(p), _layer_name(Path(p))) for p in _as_list(path)]


def volume_layer(volume: Volume, name: str) -> LayerData:
    """Layer data for a volume: its voxels (z, y, x) placed at the scan's physical coordinates,
    grey in the lung window."""
    meta = {
        "name": name,
        **layer_transform(volume.image),
        "colormap": "gray",
        "contrast_limits": WINDOWS["lung"].contrast_limits,
    }
    return (volume.array, meta, "image")


def _layer_name(path: Path) -> str:
    suffix = volume_suffix(path)
    return path.name[: -len(suffix)] if suffix and not path.is_dir() else path.name


def _as_list(path: PathOrPaths) -> list[str]:
    return [path] if isinstance(path, str | Path) else [str(p) for p in path]
