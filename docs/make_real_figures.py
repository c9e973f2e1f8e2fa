"""Render the figures of real thick chest scans in docs/images (run by hand).

A real 5 mm scan has no thin reference, so these figures only show what each method makes
of it: per scan, one PNG ``real_NAME.png`` with a coronal and a sagittal row through one
lung and a column each for the thick input stretched onto the 1 mm grid by nearest neighbour
(its true slab thickness), B-spline to 1 mm and each model to 1 mm (with ``--consistency``
also each model's output made consistent with the thick slices, to look for banding), in the
lung window (W1500/L-600), cropped to 160 mm around the centre of the larger lung. Running it
again replaces the PNGs.

python docs/make_real_figures.py NAME=SCAN [NAME=SCAN ...] [--out docs/images]
    [--model [NAME=]SPEC ...] [--consistency boxcar|gaussian]

SCAN is a NIfTI file or a DICOM series folder; NAME defaults to the file or folder name.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

import thinct
from thinct.evaluate import figures
from thinct.resample.consistency import enforce_consistency
from thinct.windows import WINDOWS

ROOT = Path(__file__).resolve().parents[1]
SPACING_MM = 1.0
CROP_MM = 160.0
PANEL_INCHES = 3.0
AIR_HU = -400.0  # lungs and airways are below this, the body's tissues above


def scan_argument(text: str) -> tuple[str, Path]:
    """``NAME=SCAN`` or ``SCAN`` (named after the file, without .nii.gz)."""
    name, separator, path = text.partition("=")
    if not separator:
        path = text
        name = Path(text).name.removesuffix(".gz").removesuffix(".nii")
    return name, Path(path)


def lung_centre(array: np.ndarray) -> tuple[tuple[float, float, float], str]:
    """The (slice, row, column) centre of the larger lung of an LPS-ordered (z, y, x) scan,
    and which lung it is ("right" or "left").

    Lungs are the air inside the body: below `AIR_HU` and not connected to the in-plane edges
    of the volume (the air around the patient), in components of at least a tenth of the
    largest (no bowel gas). The larger of the two sides of their centre is the lung chosen;
    its centroid is the centre, so planes through it pass through the lung, not the spine or
    the heart.
    """
    labels, count = ndimage.label(array < AIR_HU)
    if count == 0:
        raise SystemExit("no air in the scan: is it a chest CT in HU?")
    edges = [labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    sizes[np.unique(np.concatenate([e.ravel() for e in edges]))] = 0
    if sizes.max() == 0:
        raise SystemExit("no lungs found: all the air touches the edges of the scan")
    lungs = np.isin(labels, np.flatnonzero(sizes >= 0.1 * sizes.max()))
    z, y, x = np.nonzero(lungs)
    side, name = x < x.mean(), "right"  # LPS: columns run towards the patient's left
    if np.count_nonzero(side) < side.size / 2:
        side, name = ~side, "left"
    return (float(z[side].mean()), float(y[side].mean()), float(x[side].mean())), name


def crop_box(
    centre: tuple[float, ...], shape: tuple[int, ...], spacing: tuple[float, ...]
) -> figures.Box:
    """`figures.Box` of `CROP_MM` along each axis (or the whole axis) around ``centre``."""
    middle = [min(max(0, round(c)), n - 1) for c, n in zip(centre, shape, strict=True)]
    start, stop = [], []
    for axis, n in enumerate(shape):
        size = min(n, round(CROP_MM / spacing[axis]))
        first = min(max(0, middle[axis] - size // 2), n - size)
        start.append(first)
        stop.append(first + size)
    return figures.Box(tuple(middle), tuple(start), tuple(stop))


def render(name: str, path: Path, out: Path, models: dict[str, object], consistency: str) -> Path:
    """Draw ``out/real_NAME.png`` for the scan at ``path``; print the times of the methods."""
    volume = thinct.read_volume(path)
    # Index order left, posterior, superior: columns run from the patient's right to left
    # (radiological view), rows from front to back, slices from the feet to the head.
    volume = volume.with_image(sitk.DICOMOrient(volume.image, "LPS"), volume.slice_thickness)
    thick_spacing = volume.image.GetSpacing()
    if thinct.slice_axis(thick_spacing) != 2:
        raise SystemExit(f"{path}: not an axial scan (spacing {thick_spacing})")
    thick_mm = thick_spacing[2]
    centre, side = lung_centre(sitk.GetArrayViewFromImage(volume.image))
    physical = volume.image.TransformContinuousIndexToPhysicalPoint(centre[::-1])
    grid = thinct.thin_grid(thinct.Grid.of(volume.image), spacing=SPACING_MM)

    def timed(what: str, make) -> thinct.Volume:
        start = time.perf_counter()
        thin = make()
        print(f"{name}: {what} to {SPACING_MM:g} mm took {time.perf_counter() - start:.1f} s")
        return thin

    columns = [
        (
            f"{thick_mm:g} mm input\n(nearest, true slab thickness)",
            thinct.upsample_volume(volume, method="nearest", spacing=SPACING_MM),
        ),
        (
            f"B-spline\n{SPACING_MM:g} mm",
            timed("bspline", lambda: thinct.upsample_volume(volume, spacing=SPACING_MM)),
        ),
    ]
    for model_name, model in models.items():
        thin = timed(
            model_name, lambda m=model: thinct.upsample_volume(volume, spacing=SPACING_MM, model=m)
        )
        columns.append((f"{model_name}\n{SPACING_MM:g} mm", thin))
        if consistency != "none":
            made = enforce_consistency(thin, volume, grid, profile=consistency)
            columns.append((f"{model_name}\n+ {consistency} consistency", made))
    panels, box, spacing = [], None, None
    for title, thin in columns:
        array = sitk.GetArrayViewFromImage(thin.image)  # (slices, rows, columns)
        if box is None:  # every output is on the same thin grid
            spacing = thin.image.GetSpacing()[::-1]
            index = thin.image.TransformPhysicalPointToContinuousIndex(physical)[::-1]
            box = crop_box(index, array.shape, spacing)
        panels.append(figures.Panel(title, figures.planes(array, box)))
    del columns
    title = (
        f"{name}: real {thick_mm:g} mm scan, no thin reference\n"
        f"lung window W1500/L-600, {CROP_MM:g} mm crops through the {side} lung"
    )
    return figures.save_case_figure(
        out / f"real_{name}.png",
        title,
        panels,
        None,
        spacing,
        window=WINDOWS["lung"].contrast_limits,
        superior_up=True,
        rows=(1, 2),
        panel_inches=PANEL_INCHES,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scans", nargs="+", type=scan_argument, metavar="NAME=SCAN")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument(
        "--model",
        action="append",
        metavar="[NAME=]SPEC",
        help="a model to run, titled NAME; repeat for several (default: the default model)",
    )
    parser.add_argument("--consistency", choices=("none", "boxcar", "gaussian"), default="none")
    args = parser.parse_args()
    from thinct.models import DEFAULT_MODEL, load_model, model_display_name

    models = {}
    for text in args.model or [DEFAULT_MODEL]:
        name, named, spec = text.partition("=")
        spec = spec if named else text
        models[name if named else model_display_name(spec)] = load_model(spec)
    for name, path in args.scans:
        print(f"wrote {render(name, path, args.out, models, args.consistency)}", flush=True)


if __name__ == "__main__":
    main()
