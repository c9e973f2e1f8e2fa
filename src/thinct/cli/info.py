"""`thinct info`: what a scan is (geometry, intensities) and whether it looks thick.

The summary is a plain dict, so that ``--json`` prints the same facts as the text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import SimpleITK as sitk
import typer

from thinct.cli.boundary import error_boundary
from thinct.cli.options import Series
from thinct.errors import UsageError
from thinct.geometry import Grid, slab_extent, slice_axis
from thinct.io import hounsfield_warning, read_volume
from thinct.reporting import Reporter
from thinct.volume import Volume

# Clinical convention: <= 1.5 mm is a thin reconstruction, >= 2.5 mm a thick one.
THIN_LIMIT_MM = 1.5
THICK_LIMIT_MM = 2.5
_PLANES = ("sagittal", "coronal", "axial")  # slice normal along LPS x, y, z
_VERDICTS = {
    "thick": "yes, `thinct upsample` will make 1 mm slices from it",
    "thin": "no, the slices are already thin",
    "borderline": f"borderline (between {THIN_LIMIT_MM:g} and {THICK_LIMIT_MM:g} mm)",
}


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
        verdict = "borderline"
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


def format_summary(summary: dict[str, Any]) -> str:
    """The text `thinct info` prints: `scan_summary` as aligned lines a person can read."""
    hu = summary["hu"]
    size = " x ".join(str(v) for v in summary["size"])
    spacing = " x ".join(f"{v:g}" for v in summary["spacing_mm"])
    direction = summary["direction"]
    rows = [direction[0:3], direction[3:6], direction[6:9]]
    thickness = summary["slice_thickness_mm"]
    lines = [
        f"file:         {summary['path']}",
        f"size:         {size} voxels ({summary['pixel_type']})",
        f"spacing:      {spacing} mm",
        f"origin:       {', '.join(f'{v:g}' for v in summary['origin_mm'])} mm (LPS)",
        "direction:    " + " | ".join(" ".join(f"{v:g}" for v in row) for row in rows),
        f"slices:       {summary['slices']} {summary['slice_plane']} slices "
        f"along {summary['slice_axis']}, {summary['slice_spacing_mm']:g} mm apart"
        + (f", {thickness:g} mm thick" if thickness else "")
        + f", covering {summary['extent_mm']:g} mm",
        f"intensities:  min {hu['min']:g}, 1% {hu['p1']:g}, median {hu['median']:g}, "
        f"99% {hu['p99']:g}, max {hu['max']:g}, mean {hu['mean']:.1f}",
        f"looks thick:  {_VERDICTS[summary['slices_look']]}",
    ]
    if summary["intensity_warning"]:
        lines.append(f"warning:      {summary['intensity_warning']}")
    return "\n".join(lines)


def info(
    path: Annotated[
        str, typer.Argument(metavar="FILE", help="A scan file or DICOM series folder.")
    ],
    series: Series = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show a scan's geometry, HU statistics and whether it looks thick."""
    with Reporter(quiet=True) as reporter, error_boundary(reporter):
        if not Path(path).exists():
            raise UsageError(f"{path}: no such file or folder")
        summary = scan_summary(read_volume(path, series_uid=series))
    typer.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))
