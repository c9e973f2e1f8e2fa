"""Figures of an evaluation case: the same place in the thick input, every method's output and
the reference, side by side, in three planes, at true physical proportions.

One PNG per case. Rows: the slice plane (axial for an axial scan), the structure operator's
map of that plane (`thinct.structure`: vessels and nodules, as in the figures of
topology-preserving super-resolution), and the two planes across the slices (coronal and
sagittal), where slice interpolation shows. Columns: the thick input stretched onto the thin
grid by nearest neighbour (so it is shown at its true thickness), each method, the
reference, and the absolute error of one method. The crops are centred where the
thick input differs most from the reference in the display window (smoothed over about a
centimetre): where thin slices have the most to add.

matplotlib is imported inside the functions, and only its object-oriented API (no pyplot), so
it never touches a display or the process-wide backend; SciPy too, so that planning an
evaluation loads neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thinct.io.atomic import replacing
from thinct.windows import WINDOWS

ERROR_RANGE_HU = 200.0  # |error| colour scale: 0 to this many HU
# Structure maps are drawn from 0 to this (an ideal tube's centre answers about 1).
STRUCTURE_RANGE = 1.0
CROP_MM = 80.0
# A figure's centre counts as inside the lungs where this much of its surroundings is lung.
_LUNG_FRACTION = 0.8
_PANEL_INCHES = 2.1
_DPI = 150


@dataclass(frozen=True)
class Box:
    """A crop of a (slices, rows, columns) volume and the point its three planes go through."""

    centre: tuple[int, int, int]
    start: tuple[int, int, int]
    stop: tuple[int, int, int]


@dataclass(frozen=True)
class Planes:
    """The three planes of a crop: (rows, columns), (slices, columns), (slices, rows)."""

    slice_plane: np.ndarray
    across_rows: np.ndarray
    across_columns: np.ndarray

    def as_list(self) -> list[np.ndarray]:
        return [self.slice_plane, self.across_rows, self.across_columns]


def _windowed(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    return (np.clip(np.asarray(array, dtype=np.float32), low, high) - low) / (high - low)


def choose_box(
    thick_on_grid: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    window: tuple[float, float] = WINDOWS["lung"].contrast_limits,
    exclude: int = 5,
    crop_mm: float = CROP_MM,
    prefer_lung: bool = True,
) -> Box:
    """The crop for a case's figure: ``crop_mm`` along each axis (or the whole axis when it
    is shorter), centred where the thick input, smoothed over about 8 mm, differs most from
    the reference in the ``window``; away from the ``exclude`` slices at the ends.

    With ``prefer_lung``, the centre is looked for inside the lungs first (where most of the
    surroundings, smoothed the same way, is lung parenchyma of -980 to -500 HU): there the
    largest differences are vessels and nodules, not the diaphragm or the chest wall moving
    through the slabs. A scan without such a place falls back to the whole volume.

    ``spacing`` is (slices, rows, columns) in mm. The search runs on a grid of about 2 mm, so
    it takes a moment even for a whole scan.
    """
    from scipy.ndimage import gaussian_filter  # here: the CLI reads WINDOWS without SciPy

    shape = reference.shape
    steps = [max(1, round(2.0 / s)) for s in spacing]
    coarse = tuple(slice(None, None, step) for step in steps)
    sigma = [8.0 / (s * step) for s, step in zip(spacing, steps, strict=True)]
    coarse_reference = reference[coarse]
    error = np.abs(_windowed(thick_on_grid[coarse], window) - _windowed(coarse_reference, window))
    error = gaussian_filter(error, sigma)
    half = [min(crop_mm / 2 / s, n / 2) for s, n in zip(spacing, shape, strict=True)]
    low = [int(np.ceil(h)) for h in half]
    low[0] = max(low[0], exclude)
    high = [n - 1 - lo for n, lo in zip(shape, low, strict=True)]
    allowed = np.zeros(error.shape, dtype=bool)
    ranges = []
    for axis, step in enumerate(steps):
        lo, hi = low[axis], high[axis]
        if lo > hi:  # the crop covers the whole axis: any plane but the end slices
            lo, hi = (exclude, shape[0] - 1 - exclude) if axis == 0 else (0, shape[axis] - 1)
            if lo > hi:
                lo, hi = 0, shape[axis] - 1
        ranges.append((int(np.ceil(lo / step)), hi // step + 1))
    allowed[tuple(slice(a, b) for a, b in ranges)] = True
    if prefer_lung:
        parenchyma = ((coarse_reference > -980) & (coarse_reference < -500)).astype(np.float32)
        inside = allowed & (gaussian_filter(parenchyma, sigma) > _LUNG_FRACTION)
        if np.any(inside) and np.max(error[inside]) > 0:
            allowed = inside
    if np.any(allowed) and np.max(error[allowed]) > 0:
        scored = np.where(allowed, error, -1.0)
        coarse_centre = np.unravel_index(int(np.argmax(scored)), error.shape)
        centre = [int(c) * step for c, step in zip(coarse_centre, steps, strict=True)]
    else:
        centre = [n // 2 for n in shape]
    start, stop = [], []
    for axis, n in enumerate(shape):
        size = min(n, max(1, round(crop_mm / spacing[axis])))
        first = min(max(0, centre[axis] - size // 2), n - size)
        start.append(first)
        stop.append(first + size)
    return Box(tuple(centre), tuple(start), tuple(stop))


def planes(array: np.ndarray, box: Box) -> Planes:
    """The three planes of ``box`` through its centre, copied out of a (slices, rows,
    columns) volume (so the volume can be freed)."""
    (z, y, x), (z0, y0, x0), (z1, y1, x1) = box.centre, box.start, box.stop
    return Planes(
        slice_plane=np.array(array[z, y0:y1, x0:x1], dtype=np.float32),
        across_rows=np.array(array[z0:z1, y, x0:x1], dtype=np.float32),
        across_columns=np.array(array[z0:z1, y0:y1, x], dtype=np.float32),
    )


def structure_plane(array: np.ndarray, box: Box) -> np.ndarray:
    """The structure operator's map (`thinct.structure`) of the slice plane through ``box``
    of a (slices, rows, columns) HU volume, in the lung window, cropped like `planes`. The
    map is made from the whole slice, so the crop's border is no border of the operator."""
    from thinct.structure import enhance, lung_window

    (z, _, _), (_, y0, x0), (_, y1, x1) = box.centre, box.start, box.stop
    return np.array(enhance(lung_window(array[z]))[y0:y1, x0:x1], dtype=np.float32)


@dataclass(frozen=True)
class Panel:
    """One column of a case figure: a title, the three planes it shows and, optionally, the
    structure map of its slice plane (`structure_plane`), drawn under that plane."""

    title: str
    planes: Planes
    structure: np.ndarray | None = None


def save_case_figure(
    path: Path,
    title: str,
    panels: Sequence[Panel],
    error: Panel | None,
    spacing: Sequence[float],
    window: tuple[float, float] = WINDOWS["lung"].contrast_limits,
    plane_names: Sequence[str] = ("axial", "coronal", "sagittal"),
    superior_up: bool = True,
    rows: Sequence[int] = (0, 1, 2),
    panel_inches: float = _PANEL_INCHES,
) -> Path:
    """Draw the columns ``panels`` (greyscale in ``window``) and ``error`` (|HU|, 0 to
    `ERROR_RANGE_HU`) as rows of the three planes, and write the PNG atomically.

    ``spacing`` is (slices, rows, columns) in mm: every panel is drawn at its physical
    proportions, with a 10 mm scale bar in the first column. ``superior_up`` flips the planes
    across the slices so that the last slice is at the top (the head end of an axial scan
    whose slice index runs towards the head). ``rows`` picks which planes are drawn, in
    order, by their index in `Planes.as_list` (``(1, 2)``: only the two across the slices);
    ``panel_inches`` is the width of each column.

    When panels carry structure maps, a row of them (0 to `STRUCTURE_RANGE`, greyscale; the
    error column: their difference, in colour) follows the slice plane's row, as in the
    figures of topology-preserving super-resolution; a column without one is left blank.
    """
    from matplotlib.figure import Figure

    dz, dy, dx = (float(s) for s in spacing)
    # (vertical, horizontal) mm per pixel of each plane.
    pixel = [(dy, dx), (dz, dx), (dz, dy)]
    columns = list(panels) + ([error] if error is not None else [])
    # (plane, is the structure row) of each row of the figure.
    layout = []
    for plane in rows:
        layout.append((plane, False))
        if plane == 0 and any(c.structure is not None for c in columns):
            layout.append((plane, True))
    first = columns[0].planes.as_list()
    ratios = [
        first[plane].shape[0] * pixel[plane][0] / (first[plane].shape[1] * pixel[plane][1])
        for plane, _ in layout
    ]
    width = panel_inches * len(columns)
    height = panel_inches * sum(ratios) + 0.9
    figure = Figure(figsize=(width, height), dpi=_DPI, facecolor="white")
    grid = figure.add_gridspec(
        len(layout),
        len(columns),
        height_ratios=ratios,
        left=0.03,
        right=0.995,
        bottom=0.01,
        top=1 - 0.75 / height,
        wspace=0.03,
        hspace=0.04,
    )
    figure.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    for col, column in enumerate(columns):
        is_error = error is not None and column is error
        images = column.planes.as_list()
        for row, (plane, is_structure) in enumerate(layout):
            axes = figure.add_subplot(grid[row, col])
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_visible(False)
            image, (v, h) = images[plane], pixel[plane]
            if plane > 0 and superior_up:
                image = image[::-1]
            extent = (0, image.shape[1] * h, image.shape[0] * v, 0)
            if is_structure:
                if column.structure is None:
                    axes.axis("off")
                    continue
                image = np.abs(column.structure) if is_error else column.structure
                limits, colours = (0, STRUCTURE_RANGE), "magma" if is_error else "gray"
            elif is_error:
                image, limits, colours = np.abs(image), (0, ERROR_RANGE_HU), "magma"
            else:
                limits, colours = window, "gray"
            axes.imshow(
                image,
                cmap=colours,
                vmin=limits[0],
                vmax=limits[1],
                extent=extent,
                interpolation="nearest",
            )
            if row == 0:
                axes.set_title(column.title, fontsize=8)
            if col == 0:
                name = f"{plane_names[plane]} structure" if is_structure else plane_names[plane]
                axes.set_ylabel(name, fontsize=8)
                if not is_structure:
                    _scale_bar(axes, image.shape[1] * h, image.shape[0] * v)
    with replacing(path) as staged:
        figure.savefig(staged, format="png", dpi=_DPI, facecolor="white")
    return path


def _scale_bar(axes, width_mm: float, height_mm: float) -> None:
    """A 10 mm bar (5 mm on narrow panels) in the lower left corner of a panel drawn in mm,
    outlined in black so that it shows on light and dark tissue alike."""
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    length = 10.0 if width_mm >= 25 else 5.0
    x0, y0 = 0.05 * width_mm, 0.93 * height_mm
    axes.plot(
        [x0, x0 + length],
        [y0, y0],
        color="yellow",
        linewidth=2,
        solid_capstyle="butt",
        path_effects=[patheffects.withStroke(linewidth=3.5, foreground="black")],
    )
    axes.text(
        x0 + length / 2,
        y0 - 0.03 * height_mm,
        f"{length:g} mm",
        color="yellow",
        fontsize=6,
        ha="center",
        va="bottom",
        path_effects=outline,
    )
    axes.set_xlim(0, width_mm)
    axes.set_ylim(height_mm, 0)
