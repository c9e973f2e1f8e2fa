"""What `thinct info` reports about a scan: geometry, intensities, and whether it looks thick."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from thinct.geometry import Grid, slab_extent, slice_axis
from thinct.io import hounsfield_warning
from thinct.volume import Volume

# Clinical convention: <= 1.5 mm is a thin reconstruction, >= 2.5 mm a thick one.
THIN_LIMIT_MM = 1.5
THICK_LIMIT_MM = 2.5
_PLANES = ("sagittal", "coronal", "axial")  # slice normal along LPS x, y, z


def slice_plane(grid: Grid, axis: int) -> str:
    """Name of the slice plane from the world direction of the slice axis."""
    normal = np.abs(grid.matrix[:, axis])
    plane = _PLANES[int(np.argmax(normal))]
    return plane if normal.max() > 0.99 else f"oblique {plane}"


def scan_summary(volume: Volume) -> dict[str, Any]:
    """A JSON-friendly description of a volume."""
    grid = Grid.of(volume.image)
    axis = slice_axis(grid.spacing)
    spacing = grid.spacing[axis]
    values = sitk.GetArrayViewFromImage(volume.image)  # volume outlives the view here
    percentiles = np.percentile(values[::2, ::2, ::2], [1, 50, 99])
    start, end = slab_extent(grid, axis)
    if spacing >= THICK_LIMIT_MM:
        verdict = "thick"
    elif spacing <= THIN_LIMIT_MM:
        verdict = "thin"
    else:
        verdict = "intermediate"
    return {
        "path": str(volume.source) if volume.source else None,
        "size": list(grid.size),
        "spacing_mm": [round(v, 6) for v in grid.spacing],
        "origin_mm": [round(v, 4) for v in grid.origin],
        "direction": [round(v, 6) for v in grid.direction],
        "pixel_type": volume.image.GetPixelIDTypeAsString(),
        "slice_axis": "xyz"[axis],
        "slice_plane": slice_plane(grid, axis),
        "slice_spacing_mm": round(spacing, 6),
        "slice_thickness_mm": volume.slice_thickness,
        "slices": grid.size[axis],
        "extent_mm": round(float(np.linalg.norm(end - start)), 4),
        "hu": {
            "min": float(values.min()),
            "p1": float(percentiles[0]),
            "median": float(percentiles[1]),
            "p99": float(percentiles[2]),
            "max": float(values.max()),
            "mean": float(values.mean(dtype=np.float64)),
        },
        "slices_look": verdict,
        "intensity_warning": hounsfield_warning(volume.image),
    }
