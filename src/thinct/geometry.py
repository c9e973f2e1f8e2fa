"""Where the slices are: the slice axis, the thin grid a thick scan is upsampled onto, and
checks that a stack of slices really is a regular grid.

All geometry is in world (LPS, mm) coordinates through the image's spacing, origin and
direction, so flipped and oblique scans need no special cases: the slice axis is an index
axis, and moving along it moves along the matching column of the direction matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import SimpleITK as sitk

from thinct.errors import Argument, GeometryError, UsageError

ALIGNMENTS: tuple[str, ...] = ("edges", "centers")

# Slice counts are floor(length / spacing); this absorbs float noise such as 3 * 10 / 1.25.
_COUNT_EPS = 1e-6
# The most thin slices per thick slice (upsampling) or thick per thin (simulating): 100 is far
# beyond any real reconstruction, and a mistyped option beyond it would fill the memory.
MAX_RATIO = 100
# Grids closer than this are one grid: affines stored as float32 (NIfTI, batches of tensors)
# round away more than this, and nnU-Net's own check is np.allclose on the same values.
_SPACING_RTOL = 1e-5
_ORIGIN_ATOL_MM = 1e-3
_DIRECTION_ATOL = 1e-5
# The most output pixels per input pixel along each in-plane axis: 8 makes 4096 x 4096 pixels
# of a 512 x 512 slice, far finer than any CT reconstruction resolves.
MAX_IN_PLANE = 8


def slices_first(array: np.ndarray, axis: int) -> np.ndarray:
    """A view of a SimpleITK array ((z, y, x) order) with the ITK index ``axis`` first: a
    stack of slices along that axis, whichever axis it is."""
    return np.moveaxis(array, 2 - axis, 0)


def slices_back(stack: np.ndarray, axis: int) -> np.ndarray:
    """The (z, y, x) view of a stack that `slices_first` made along ``axis``."""
    return np.moveaxis(stack, 0, 2 - axis)


@dataclass(frozen=True)
class Grid:
    """A regular 3D sampling grid in world space (the geometry of a SimpleITK image)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image | sitk.ImageFileReader) -> Grid:
        """The grid of an image, or of a file whose header a reader has read."""
        return cls.from_values(
            image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()
        )

    @classmethod
    def from_values(
        cls,
        size: Sequence[int],
        spacing: Sequence[float],
        origin: Sequence[float],
        direction: Sequence[float],
    ) -> Grid:
        """A grid from any sequences of numbers (SimpleITK tuples, lists, numpy arrays)."""
        return cls(
            size=tuple(int(v) for v in size),
            spacing=tuple(float(v) for v in spacing),
            origin=tuple(float(v) for v in origin),
            direction=tuple(float(v) for v in direction),
        )

    def to_record(self) -> dict[str, list[float]]:
        """The grid as plain lists of numbers, for JSON files and transform histories;
        `from_record` reads it back exactly."""
        return {field.name: list(getattr(self, field.name)) for field in fields(self)}

    @classmethod
    def from_record(cls, record: Mapping[str, Sequence[float]]) -> Grid:
        """The grid that `to_record` wrote."""
        return cls.from_values(**{field.name: record[field.name] for field in fields(cls)})

    @property
    def matrix(self) -> np.ndarray:
        """Direction matrix: column i is the world direction of index axis i."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """World coordinates of (continuous) indices given as (..., 3) in (i, j, k) order."""
        index = np.asarray(index, dtype=float)
        return np.asarray(self.origin) + (index * np.asarray(self.spacing)) @ self.matrix.T

    def apply_to_image(self, image: sitk.Image) -> None:
        """Give an image of this grid's size this grid's spacing, origin and direction."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    def apply_to(self, resampler: sitk.ResampleImageFilter) -> None:
        """Make a resampler produce exactly this grid."""
        resampler.SetSize([int(v) for v in self.size])
        resampler.SetOutputSpacing(self.spacing)
        resampler.SetOutputOrigin(self.origin)
        resampler.SetOutputDirection(self.direction)


def grid_difference(first: Grid, second: Grid) -> str | None:
    """What differs between two grids ("size", "spacing", ...), or None when they are one."""
    if first.size != second.size:
        return "size"
    if not np.allclose(first.spacing, second.spacing, rtol=_SPACING_RTOL, atol=0):
        return "spacing"
    if not np.allclose(first.origin, second.origin, rtol=0, atol=_ORIGIN_ATOL_MM):
        return "origin"
    if not np.allclose(first.direction, second.direction, rtol=0, atol=_DIRECTION_ATOL):
        return "direction"
    return None


@dataclass(frozen=True)
class ThinGrid:
    """The thin grid of a thick scan, and where each thin slice sits in the thick scan.

    ``source_index[j]`` is the position of thin slice ``j`` as a continuous slice index of the
    thick scan (0 is the centre of the first thick slice), which is what any method needs to
    know to predict it. ``grid`` keeps the thick scan's pixels, where methods make their slices;
    ``refined`` is the output's grid when the pixels are refined in-plane too (else None).
    """

    grid: Grid
    axis: int
    align: str
    source_index: tuple[float, ...]
    refined: Grid | None = None

    @property
    def spacing(self) -> float:
        return self.grid.spacing[self.axis]

    @property
    def output(self) -> Grid:
        """The grid of the result: ``refined`` when the pixels are refined in-plane as well
        (`in_plane_grid`), else ``grid``, the thin slices on the input's in-plane grid."""
        return self.refined or self.grid

    @property
    def keeps_slices(self) -> bool:
        """True when the thin slices are the input's own (a factor of 1, for an in-plane
        refinement alone): no method has slices to make."""
        step = self.source_index[1] - self.source_index[0]
        return abs(self.source_index[0]) < 1e-9 and abs(step - 1) < 1e-9


def slice_axis(spacing: tuple[float, ...] | list[float]) -> int:
    """The index axis along which the slices are stacked.

    Pixels are square, so when two spacings are equal and the third differs, the odd one out
    is the slice axis: this also recognises thin reconstructions whose slices are closer
    together than their pixels (0.625 mm slices of 0.7 mm pixels). Otherwise it is the axis
    with the largest spacing, ties going to the last axis (z of an isotropic volume).
    """

    def same(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-6 * max(abs(a), abs(b))

    for axis in (2, 0, 1):
        first, second = (spacing[i] for i in range(3) if i != axis)
        if same(first, second) and not same(spacing[axis], first):
            return axis
    axis = len(spacing) - 1
    for i in range(len(spacing) - 2, -1, -1):
        if spacing[i] > spacing[axis] * (1 + 1e-6):
            axis = i
    return axis


def asks_in_plane(in_plane: int | None, in_plane_spacing: float | None) -> bool:
    """Whether the options ask for in-plane refinement: a factor above 1, or a spacing (which
    a scan may turn out to have already)."""
    return in_plane_spacing is not None or (in_plane is not None and in_plane > 1)


def check_in_plane_options(in_plane: int | None, in_plane_spacing: float | None) -> None:
    """Refuse an in-plane factor or spacing that can never work, before any scan is read."""
    if in_plane is not None and in_plane_spacing is not None:
        raise UsageError(
            "give either ", Argument("in_plane"), " or ", Argument("in_plane_spacing"), ", not both"
        )
    if in_plane is not None and (int(in_plane) != in_plane or not 1 <= in_plane <= MAX_IN_PLANE):
        raise UsageError(
            Argument("in_plane"),
            f" must be a whole number from 1 to {MAX_IN_PLANE}, got {in_plane:g}",
        )
    if in_plane_spacing is not None and not (
        math.isfinite(in_plane_spacing) and in_plane_spacing > 0
    ):
        raise UsageError(
            Argument("in_plane_spacing"),
            f" must be a positive number of mm, got {in_plane_spacing:g}",
        )


def check_target_options(
    spacing: float | None,
    factor: int | None,
    in_plane: int | None = None,
    in_plane_spacing: float | None = None,
) -> None:
    """Refuse a target spacing or factor (and in-plane refinement) that can never work,
    before any scan is read.

    A factor of 1 keeps the slices, which is a job only beside an in-plane refinement. The
    ratio limits for ``spacing`` and ``in_plane_spacing`` need the scan's spacings, so
    `thin_grid` checks them.
    """
    check_in_plane_options(in_plane, in_plane_spacing)
    if spacing is not None and factor is not None:
        raise UsageError(
            "give either ", Argument("spacing"), " or ", Argument("factor"), ", not both"
        )
    refining = asks_in_plane(in_plane, in_plane_spacing)
    lowest = 1 if refining else 2
    if factor is not None and (int(factor) != factor or not lowest <= factor <= MAX_RATIO):
        hint = (
            ()
            if refining or factor != 1
            else ("; 1 (the slices kept) needs ", Argument("in_plane"))
        )
        raise UsageError(
            Argument("factor"),
            f" must be a whole number from {lowest} to {MAX_RATIO}, got {factor:g}",
            *hint,
        )
    if spacing is not None and not (math.isfinite(spacing) and spacing > 0):
        raise UsageError(Argument("spacing"), f" must be a positive number of mm, got {spacing:g}")


def target_spacing(thick_spacing: float, spacing: float | None, factor: int | None) -> float:
    """Resolve ``--spacing`` / ``--factor`` (checked by `check_target_options`) into a slice
    spacing in mm (default 1.0 mm)."""
    if factor is not None:
        return thick_spacing / factor
    return 1.0 if spacing is None else float(spacing)


def _edges_axis(count: int, spacing: float, new_spacing: float) -> tuple[int, float]:
    """Samples of ``new_spacing`` that tile the extent of ``count`` samples of ``spacing``
    (outer edge to outer edge): how many, and the first one's centre relative to the first old
    centre (mm). The largest whole number that fits, centred: for a whole ratio r, r * count
    samples whose outer edges are the old ones."""
    extent = count * spacing
    new_count = math.floor(extent / new_spacing + _COUNT_EPS)
    first = -spacing / 2 + (extent - new_count * new_spacing) / 2 + new_spacing / 2
    return new_count, first


def refined_grid(grid: Grid, spacing: Sequence[float]) -> Grid:
    """``grid`` resampled to ``spacing`` (mm, one per index axis, none coarser than the
    grid's own) over the same field of view: along each axis whose spacing changes, the new
    pixels tile the extent of the old ones as `_edges_axis` places them. Directions are kept,
    so the new pixels lie along the same (flipped or oblique) axes."""
    size = list(grid.size)
    origin = np.asarray(grid.origin, dtype=float)
    for i, new in enumerate(spacing):
        if float(new) != grid.spacing[i]:
            size[i], first = _edges_axis(grid.size[i], grid.spacing[i], float(new))
            origin = origin + grid.matrix[:, i] * first
    return Grid.from_values(size, spacing, origin, grid.direction)


def in_plane_grid(
    grid: Grid, axis: int, in_plane: int | None = None, in_plane_spacing: float | None = None
) -> Grid:
    """The grid of ``grid``'s slices (stacked along ``axis``) with their pixels refined
    ``in_plane`` times along each in-plane axis, or to ``in_plane_spacing`` mm; ``grid``
    itself when neither refines (no option, a factor of 1, the pixels' own spacing).

    The refined pixels tile the same field of view (`refined_grid`): with a factor f the
    spacing becomes old / f and the first pixel centre moves (old - new) / 2 towards the
    outer edge, so the outer edges stay where they were. A spacing that does not divide the
    field of view gives the largest whole number of pixels that fits, centred in it. At
    most `MAX_IN_PLANE` pixels per input pixel along an axis.
    """
    check_in_plane_options(in_plane, in_plane_spacing)
    plane = [i for i in range(3) if i != axis]
    spacing = list(grid.spacing)
    if in_plane_spacing is None:
        for i in plane:
            spacing[i] = grid.spacing[i] / (in_plane or 1)
        return refined_grid(grid, spacing) if (in_plane or 1) > 1 else grid
    finest = min(grid.spacing[i] for i in plane)
    coarsest = max(grid.spacing[i] for i in plane)
    if in_plane_spacing > finest * (1 + 1e-6):
        raise GeometryError(
            f"pixels are already {finest:g} mm; an in-plane spacing of {in_plane_spacing:g} mm "
            "is not finer"
        )
    if coarsest / in_plane_spacing > MAX_IN_PLANE * (1 + 1e-9):
        raise UsageError(
            f"an in-plane spacing of {in_plane_spacing:g} mm would make "
            f"{round(coarsest / in_plane_spacing, 1):g} pixels of each {coarsest:g} mm pixel "
            f"along an axis; the most is {MAX_IN_PLANE} (",
            Argument("in_plane_spacing", f"{coarsest / MAX_IN_PLANE:g}"),
            " or more)",
        )
    for i in plane:  # a spacing within float noise of the pixels' own keeps them
        if in_plane_spacing < grid.spacing[i] * (1 - 1e-6):
            spacing[i] = float(in_plane_spacing)
    return refined_grid(grid, spacing)


def thin_grid(
    grid: Grid,
    spacing: float | None = None,
    factor: int | None = None,
    align: str = "edges",
    in_plane: int | None = None,
    in_plane_spacing: float | None = None,
) -> ThinGrid:
    """The grid of thin slices for a thick scan, and of the output when its pixels are
    refined in-plane as well.

    ``edges`` covers the whole extent of the thick slabs (first slab's outer edge to the last
    slab's outer edge), as a real thin reconstruction of the same range would: n * r slices
    for an integer ratio r. ``centers`` runs from the first thick slice centre to the last
    ((n - 1) * r + 1 slices). For non-integer ratios, ``edges`` keeps the largest whole number
    of thin slices and centres them in the extent; ``centers`` starts at the first thick centre.
    At most `MAX_RATIO` thin slices per thick slice.

    ``grid`` of the result keeps the input's in-plane sampling: it is what every method
    predicts. ``in_plane`` or ``in_plane_spacing`` refine the pixels of the output
    (``refined``, see `in_plane_grid`); with a refinement the slices may also stay as they are
    (a factor of 1, or a target of the slice spacing).
    """
    check_target_options(spacing, factor, in_plane, in_plane_spacing)
    if align not in ALIGNMENTS:
        raise UsageError(f"alignment must be one of {', '.join(ALIGNMENTS)}, got {align!r}")
    axis = slice_axis(grid.spacing)
    thick = grid.spacing[axis]
    n = grid.size[axis]
    if n < 2:
        raise GeometryError("the volume has a single slice; there is nothing to interpolate")
    thin = target_spacing(thick, spacing, factor)
    refines = in_plane_grid(grid, axis, in_plane, in_plane_spacing) != grid
    if refines and abs(thin - thick) <= 1e-6 * thick:
        thin = thick  # the slices stay; only the pixels are refined
    elif thin >= thick * (1 - 1e-6):
        message = f"slices are already {thick:g} mm apart; a target of {thin:g} mm is not thinner"
        if not refines and asks_in_plane(in_plane, in_plane_spacing):  # the pixels' own spacing
            message += ", and the pixels are already that fine"
        raise GeometryError(message)
    if thick / thin > MAX_RATIO * (1 + 1e-9):
        # Far beyond any real reconstruction, and the grid alone would fill the memory.
        raise UsageError(
            f"a target of {thin:g} mm would make {round(thick / thin, 1):g} thin slices of each "
            f"{thick:g} mm slice; the most is {MAX_RATIO} (",
            Argument("spacing", f"{thick / MAX_RATIO:g}"),
            " or more)",
        )
    if align == "edges":
        count, first = _edges_axis(n, thick, thin)
    else:
        count = math.floor((n - 1) * thick / thin + _COUNT_EPS) + 1
        first = 0.0
    offsets = first + thin * np.arange(count)
    size = list(grid.size)
    size[axis] = count
    new_spacing = list(grid.spacing)
    new_spacing[axis] = thin
    origin = np.asarray(grid.origin) + grid.matrix[:, axis] * first
    thin_geometry = Grid(
        size=tuple(size),
        spacing=tuple(new_spacing),
        origin=tuple(float(v) for v in origin),
        direction=grid.direction,
    )
    refined = in_plane_grid(thin_geometry, axis, in_plane, in_plane_spacing) if refines else None
    return ThinGrid(
        grid=thin_geometry,
        axis=axis,
        align=align,
        source_index=tuple(float(v) for v in offsets / thick),
        refined=refined,
    )


def slice_centres(grid: Grid, axis: int) -> np.ndarray:
    """World coordinates (n, 3) of the centre of the in-plane origin voxel of every slice."""
    index = np.zeros((grid.size[axis], 3))
    index[:, axis] = np.arange(grid.size[axis])
    return grid.index_to_world(index)


def slab_extent(grid: Grid, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the outer edges of the first and last slice along ``axis``."""
    start = np.zeros(3)
    end = np.zeros(3)
    start[axis] = -0.5
    end[axis] = grid.size[axis] - 0.5
    return grid.index_to_world(start), grid.index_to_world(end)


def check_slice_positions(
    positions: np.ndarray, row: np.ndarray, column: np.ndarray, pixel_spacing: float
) -> float:
    """Check that slice positions (n, 3), sorted along the slice normal, form a regular stack.

    Returns the slice spacing in mm. Raises `GeometryError` for duplicated or overlapping
    positions, gaps or uneven spacing, and gantry tilt (slice origins drifting in-plane by
    more than half a pixel over the stack), none of which a regular 3D grid can represent.
    """
    positions = np.asarray(positions, dtype=float)
    if len(positions) < 2:
        raise GeometryError("the series has a single slice; there is nothing to interpolate")
    normal = np.cross(row, column)
    along = positions @ normal
    steps = np.diff(along)
    if np.any(np.abs(steps) < 1e-3):
        duplicate = int(np.argmin(np.abs(steps)))
        raise GeometryError(
            f"slices {duplicate} and {duplicate + 1} sit at the same position "
            "(duplicated or overlapping slices); select a single reconstruction"
        )
    step = float(np.median(steps))
    deviation = np.abs(steps - step)
    tolerance = max(0.01, 0.01 * abs(step))
    irregular = np.flatnonzero(deviation > tolerance)
    if irregular.size:
        # Name the first irregular step (not the worst), so the message points at where the
        # stack stops being regular.
        first = int(irregular[0])
        raise GeometryError(
            f"non-uniform slice spacing: steps range from {np.abs(steps).min():.3g} to "
            f"{np.abs(steps).max():.3g} mm (first irregular step after slice {first}); "
            "missing slices or a mixed series cannot be resampled as one volume"
        )
    drift = positions[-1] - positions[0]
    in_plane = drift - (drift @ normal) * normal
    if np.linalg.norm(in_plane) > 0.5 * pixel_spacing:
        tilt = math.degrees(math.atan2(np.linalg.norm(in_plane), abs(drift @ normal)))
        raise GeometryError(
            f"gantry tilt of {tilt:.1f} degrees: slices are sheared, which thinct does not "
            "correct; reformat the series to an untilted grid first"
        )
    return abs(step)
