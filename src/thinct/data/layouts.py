"""Real paired scans in the two public folder layouts, each pair checked slice by slice.

- ``rplhr`` (RPLHR-CT): ``FOLDER/{train,val,test}/{1mm,5mm}/CASE.nii.gz``.
- ``cthnet`` (the published CTHNet code): ``FOLDER/HD_1mm/CASE.nii.gz`` and
  ``FOLDER/HD_5mm/CASE.nii.gz``, the split in a JSON file beside them, ``HD_dict.json`` (its
  name in the CTHNet code) or ``split.json``: ``{"train": [...], "val": [...], "test": [...]}``
  listing case ids or file names (other keys, such as the code's ``path_img``, are ignored).

A thick and a thin scan pair only when they line up. Their geometry must put them on one
in-plane grid and every thick slice centre on a thin slice centre (thick slice z on thin slice
``ratio * z + offset``); their voxels must then confirm it: the thick slices must match the
means of the thin slices of their slabs at that offset, closely and better than at any shift
of up to one slab. A pair that fails is skipped with a `ThinctWarning` that names the case and
the reason, so one bad case does not stop a dataset.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from thinct.data.cases import Case
from thinct.data.pairs import Pair, slice_stack
from thinct.errors import GeometryError, ThinctWarning, UsageError
from thinct.geometry import Grid, ThinGrid, slice_axis, slices_first
from thinct.io import read_volume
from thinct.volume import HU_MAX, HU_MIN, Volume

LAYOUTS: tuple[str, ...] = ("rplhr", "cthnet")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Thin and thick folder names: under each split (rplhr), under the dataset folder (cthnet).
RPLHR_FOLDERS = ("1mm", "5mm")
CTHNET_FOLDERS = ("HD_1mm", "HD_5mm")
CTHNET_SPLIT_FILES = ("HD_dict.json", "split.json")
SUFFIXES = (".nii.gz", ".nii")
# The ThinGrid alignment of a case: the grid of a real thin reference, not one thinct made.
REFERENCE_ALIGN = "reference"

# Geometry: thick slice centres must fall within this many thin slices of a thin slice centre
# (over the whole scan, so a spacing ratio slightly off a whole number counts as it drifts).
POSITION_TOLERANCE = 0.1
# In-plane: spacings and direction cosines equal to 1e-3, origins within a quarter pixel.
SPACING_TOLERANCE = 1e-3
DIRECTION_TOLERANCE = 1e-3
PIXEL_TOLERANCE = 0.25
# Voxels: Pearson correlation of the thick slices with the thin slab means at the geometric
# offset, at least MIN_CORRELATION and within CORRELATION_MARGIN of the best shift's.
MIN_CORRELATION = 0.9
CORRELATION_MARGIN = 0.002
PIXEL_STEP = 4  # every 4th row and column is plenty for a correlation
MIN_CHECKED_SLICES = 3


@dataclass(frozen=True)
class PairedFiles:
    """One case of a layout: its id and its thick and thin scan files."""

    name: str
    thick: Path
    thin: Path


class _Mismatch(Exception):
    """Why a thick and a thin scan do not pair; the pair is skipped with a warning."""


@dataclass(frozen=True)
class _Placement:
    """Where the thick slices sit in the thin scan: thick slice z on the continuous thin
    index ``offset + ratio * z``, along index axis ``axis`` of both."""

    axis: int
    ratio: float
    offset: float


# --- files ---------------------------------------------------------------------------------


def layout_files(layout: str, folder: Path, split: str) -> list[PairedFiles]:
    """The cases of one split of a paired dataset folder, in case id order.

    A case whose thick or thin file is missing is skipped with a warning.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    if layout == "rplhr":
        thin_dir, thick_dir = (folder / split / name for name in RPLHR_FOLDERS)
        _need_folders(folder, layout, thin_dir, thick_dir)
        names = sorted(set(_case_ids(thin_dir)) | set(_case_ids(thick_dir)))
    else:
        thin_dir, thick_dir = (folder / name for name in CTHNET_FOLDERS)
        _need_folders(folder, layout, thin_dir, thick_dir)
        names = _split_cases(folder, split)
    if not names:
        raise UsageError(f"{folder}: the {layout} layout holds no {split} cases")
    found = []
    for name in names:
        thick, thin = _scan_file(thick_dir, name), _scan_file(thin_dir, name)
        missing = [d for d, path in ((thick_dir, thick), (thin_dir, thin)) if path is None]
        if missing:
            where = " or ".join(str(d) for d in missing)
            _skip(name, f"no {name}.nii.gz in {where}")
            continue
        found.append(PairedFiles(name=name, thick=thick, thin=thin))
    if not found:
        raise UsageError(
            f"{folder}: no {split} case of the {layout} layout has both its thick and thin "
            "file (see the warnings)"
        )
    return found


def _need_folders(folder: Path, layout: str, *folders: Path) -> None:
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        expected = " and ".join(str(f.relative_to(folder)) for f in folders)
        raise UsageError(
            f"{folder}: no {missing[0].relative_to(folder)} folder (the {layout} layout has "
            f"{expected})"
        )


def _case_id(file_name: str) -> str:
    for suffix in SUFFIXES:
        if file_name.endswith(suffix):
            return file_name[: -len(suffix)]
    return file_name


def _case_ids(folder: Path) -> list[str]:
    return [
        _case_id(p.name)
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.endswith(SUFFIXES)
    ]


def _scan_file(folder: Path, name: str) -> Path | None:
    for suffix in SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _split_cases(folder: Path, split: str) -> list[str]:
    """The case ids the split JSON file lists for ``split``."""
    found = [folder / name for name in CTHNET_SPLIT_FILES if (folder / name).is_file()]
    if not found:
        raise UsageError(
            f"{folder}: no split file ({' or '.join(CTHNET_SPLIT_FILES)}) beside "
            f"{' and '.join(CTHNET_FOLDERS)}"
        )
    if len(found) > 1:
        raise UsageError(f"{folder}: holds both {' and '.join(CTHNET_SPLIT_FILES)}; keep one")
    path = found[0]
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())
        raise UsageError(f"{path} is not valid JSON: {reason}") from None
    if not isinstance(values, dict) or split not in values:
        raise UsageError(f"{path} has no {split!r} list of cases")
    entries = values[split]
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise UsageError(f"{path}: {split!r} must be a list of case names")
    return list(dict.fromkeys(_case_id(Path(entry).name) for entry in entries))


def _skip(name: str, reason: str | Exception) -> None:
    warnings.warn(f"{name}: {reason}; skipped", ThinctWarning, stacklevel=3)


# --- geometry ------------------------------------------------------------------------------


def _continuous_index(grid: Grid, world: np.ndarray) -> np.ndarray:
    """The continuous (i, j, k) index of a world point in a grid."""
    basis = grid.matrix * np.asarray(grid.spacing)  # column i: the world step of index i
    return np.linalg.solve(basis, np.asarray(world, dtype=float) - np.asarray(grid.origin))


def _placement(thick: Grid, thin: Grid) -> _Placement:
    """Check that two grids share their in-plane sampling and orientation, and place the
    thick slices in the thin scan."""
    axis = slice_axis(thick.spacing)
    thin_axis = slice_axis(thin.spacing)
    if thin_axis != axis:
        raise _Mismatch(
            f"the slices are stacked along different axes ({'xyz'[axis]} in the thick scan, "
            f"{'xyz'[thin_axis]} in the thin one)"
        )
    in_plane = [a for a in range(3) if a != axis]
    if any(thick.size[a] != thin.size[a] for a in in_plane):
        sizes = [" x ".join(str(g.size[a]) for a in in_plane) for g in (thick, thin)]
        raise _Mismatch(f"in-plane sizes differ ({sizes[0]} thick, {sizes[1]} thin)")
    for a in in_plane:
        if abs(thick.spacing[a] - thin.spacing[a]) > SPACING_TOLERANCE * thin.spacing[a]:
            raise _Mismatch(
                f"in-plane spacings differ ({thick.spacing[a]:.4g} mm thick, "
                f"{thin.spacing[a]:.4g} mm thin along {'xyz'[a]})"
            )
    if np.abs(thick.matrix - thin.matrix).max() > DIRECTION_TOLERANCE:
        raise _Mismatch("the scans are oriented differently (direction matrices differ)")
    origin = _continuous_index(thin, np.asarray(thick.origin))
    shift = max(abs(origin[a]) for a in in_plane)
    if shift > PIXEL_TOLERANCE:
        raise _Mismatch(f"in-plane origins differ by {shift:.2f} pixels")
    return _Placement(
        axis=axis, ratio=thick.spacing[axis] / thin.spacing[axis], offset=float(origin[axis])
    )


def reference_grid(thick: Grid, reference: Grid) -> ThinGrid:
    """A thin reference's own grid as the thin grid of a thick scan.

    ``source_index[j]`` is where reference slice ``j`` lies as a continuous slice index of the
    thick scan, from both scans' world geometry. The two grids must share their in-plane
    sampling and orientation (`GeometryError` otherwise).
    """
    try:
        placement = _placement(thick, reference)
    except _Mismatch as reason:
        raise GeometryError(f"the reference does not fit the thick scan: {reason}") from None
    slices = np.arange(reference.size[placement.axis])
    return ThinGrid(
        grid=reference,
        axis=placement.axis,
        align=REFERENCE_ALIGN,
        source_index=tuple(float(v) for v in (slices - placement.offset) / placement.ratio),
    )


def _whole_offset(placement: _Placement, ratio: int, thick_slices: int, thin: Grid) -> int:
    """The whole offset of a pair whose geometry puts each thick slice centre on a thin slice
    centre, ``ratio`` thin slices apart (negative when the thin scan starts later)."""
    axis = placement.axis
    offset = round(placement.offset)
    between = abs(placement.offset - offset)
    drift = abs(placement.ratio - ratio) * (thick_slices - 1)
    if between + drift <= POSITION_TOLERANCE:
        return offset
    if drift > between:
        thick_mm = placement.ratio * thin.spacing[axis]
        raise _Mismatch(
            f"thick slices are {thick_mm:.4g} mm apart, {placement.ratio:.4g} thin slices of "
            f"{thin.spacing[axis]:.4g} mm, not the {ratio} the pairs need"
        )
    raise _Mismatch(
        f"the thick slice centres fall between thin slices (thick slice 0 at thin slice "
        f"{placement.offset:.2f})"
    )


# --- voxels --------------------------------------------------------------------------------


def _slab_weights(centres: np.ndarray, width: float, count: int) -> np.ndarray:
    """Boxcar weights (len(centres), count) of thin slices (unit boxes around their indices)
    in slabs of ``width`` thin slices around continuous thin indices ``centres``."""
    lower = np.arange(count) - 0.5
    start = centres[:, None] - width / 2
    overlap = np.minimum(lower[None] + 1, start + width) - np.maximum(lower[None], start)
    return np.clip(overlap, 0.0, None) / width


def _downsampled(array: np.ndarray) -> np.ndarray:
    """Every PIXEL_STEP-th row and column (fewer for small slices), clipped to the HU window
    the networks see, as a float64 copy."""
    step = max(1, min(PIXEL_STEP, min(array.shape[1:]) // 32))
    return np.clip(np.array(array[:, ::step, ::step], dtype=np.float64), HU_MIN, HU_MAX)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    # Element-wise sums, not BLAS: a few microseconds of work must not wait on BLAS threads
    # of a busy machine.
    a = a - a.mean()
    b = b - b.mean()
    norm = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b)) / norm if norm > 0 else 0.0


def slab_correlations(
    thick: np.ndarray, thin: np.ndarray, offset: float, ratio: float
) -> dict[int, float]:
    """Pearson correlation of the thick slices with the means of the thin slices of their
    slabs, for the slabs placed at ``offset + ratio * z`` shifted by each whole number of thin
    slices up to one slab either way.

    Both stacks are (slices, rows, columns) HU; the correlation uses every 4th pixel of the
    thick slices whose slabs stay inside the thin stack at every shift. Empty when fewer than
    `MIN_CHECKED_SLICES` do.
    """
    reach = math.ceil(ratio - 1e-6)
    count = thin.shape[0]
    centres = offset + ratio * np.arange(thick.shape[0])
    half = ratio / 2 + reach
    usable = (centres - half >= -0.5 - 1e-6) & (centres + half <= count - 0.5 + 1e-6)
    if usable.sum() < MIN_CHECKED_SLICES:
        return {}
    first = max(0, math.floor(centres[usable][0] - half))
    last = min(count, math.ceil(centres[usable][-1] + half) + 1)
    target = _downsampled(thick)[usable].ravel()
    flat = _downsampled(thin[first:last]).reshape(last - first, -1)
    correlations = {}
    for shift in range(-reach, reach + 1):
        weights = _slab_weights(centres[usable] + shift - first, ratio, last - first)
        means = np.empty((len(weights), flat.shape[1]))
        for row, slab in enumerate(weights):
            band = np.flatnonzero(slab)  # a few thin slices: skip the zeros around them
            low, high = band[0], band[-1] + 1
            means[row] = np.sum(slab[low:high, None] * flat[low:high], axis=0)
        correlations[shift] = _pearson(target, means.ravel())
    return correlations


def _check_voxels(thick: np.ndarray, thin: np.ndarray, offset: float, ratio: float) -> None:
    correlations = slab_correlations(thick, thin, offset, ratio)
    if not correlations:
        raise _Mismatch(
            f"fewer than {MIN_CHECKED_SLICES} thick slices lie inside the thin scan, too few "
            "to check that they line up"
        )
    best = max(correlations, key=correlations.get)
    here = correlations[0]
    if correlations[best] - here > CORRELATION_MARGIN and correlations[best] >= MIN_CORRELATION:
        raise _Mismatch(
            f"thick and thin do not line up (best correlation {correlations[best]:.3f} at "
            f"offset {offset + best:.4g}, geometry says {offset:.4g} with {here:.3f})"
        )
    if here < MIN_CORRELATION:
        raise _Mismatch(
            f"thick and thin do not line up (correlation {here:.3f} at offset {offset:.4g}, "
            f"below {MIN_CORRELATION}: different content)"
        )


# --- pairs and cases -----------------------------------------------------------------------


def _pair(name: str, thick: Volume, thin: Volume, ratio: int) -> Pair:
    thin_grid = Grid.of(thin.image)
    placement = _placement(Grid.of(thick.image), thin_grid)
    axis = placement.axis
    offset = _whole_offset(placement, ratio, thick.image.GetSize()[axis], thin_grid)
    thin_count = thin.image.GetSize()[axis]
    # Keep the thick slices that sit on a thin slice: drop those before the thin scan starts
    # (which makes the offset non-negative) and after it ends.
    first = max(0, -(offset // ratio))
    end = min(thick.image.GetSize()[axis], (thin_count - 1 - offset) // ratio + 1)
    if end - first < 1:
        raise _Mismatch("the thick and thin scans do not overlap")
    thick_array = slice_stack(thick.image, axis)[first:end].copy()
    thin_array = slice_stack(thin.image, axis)
    offset += ratio * first
    _check_voxels(thick_array, thin_array, offset, ratio)
    return Pair(thick=thick_array, thin=thin_array, ratio=ratio, offset=offset, name=name)


def _case(name: str, thick: Volume, reference: Volume) -> Case:
    thick_grid = Grid.of(thick.image)
    placement = _placement(thick_grid, Grid.of(reference.image))
    axis = placement.axis
    if placement.ratio <= 1 + 1e-6:
        raise _Mismatch(
            f"the thick slices are {placement.ratio:.3g} times as far apart as the thin ones; "
            "nothing to upsample (files swapped?)"
        )
    # Keep the reference slices within the thick scan's slabs: nothing outside predicts them.
    count = thick.image.GetSize()[axis]
    index = (np.arange(reference.image.GetSize()[axis]) - placement.offset) / placement.ratio
    inside = np.flatnonzero((index >= -0.5 - 1e-3) & (index <= count - 0.5 + 1e-3))
    if inside.size < 2:
        raise _Mismatch("the thick and thin scans do not overlap")
    _check_voxels(
        slices_first(sitk.GetArrayViewFromImage(thick.image), axis),
        slices_first(sitk.GetArrayViewFromImage(reference.image), axis),
        placement.offset,
        placement.ratio,
    )
    if inside.size < index.size:
        start = [0, 0, 0]
        size = list(reference.image.GetSize())
        start[axis], size[axis] = int(inside[0]), int(inside.size)
        cropped = sitk.RegionOfInterest(reference.image, size, start)
        reference = reference.with_image(cropped, reference.slice_thickness)
    grid = reference_grid(thick_grid, Grid.of(reference.image))
    return Case(name=name, thick=thick, reference=reference, grid=grid)


def layout_pairs(layout: str, folder: Path, split: str, ratio: int) -> list[Pair]:
    """Training pairs from real thick and thin scans of one split of a paired dataset.

    Thick slices must be ``ratio`` thin slices apart and line up with the thin scan (see the
    module's docstring); a case that does not is skipped with a warning, and only thick
    slices that sit on a thin slice are kept (so the offset is never negative).
    """
    pairs: list[Pair] = []
    files = layout_files(layout, folder, split)
    for case in files:
        try:
            pairs.append(_pair(case.name, read_volume(case.thick), read_volume(case.thin), ratio))
        except _Mismatch as reason:
            _skip(case.name, reason)
    if not pairs:
        raise UsageError(
            f"{folder}: none of the {len(files)} {split} cases of the {layout} layout gives a "
            "pair that lines up (see the warnings)"
        )
    return pairs


def layout_cases(layout: str, folder: Path, split: str) -> list[Case]:
    """Evaluation cases from real thick and thin scans of one split of a paired dataset.

    Each case's reference is the thin scan on its own grid, cut to the slices within the thick
    scan's slabs; ``grid.source_index`` places its slices in the thick scan by world geometry.
    Cases that do not line up are skipped with a warning.
    """
    cases: list[Case] = []
    files = layout_files(layout, folder, split)
    for case in files:
        try:
            cases.append(_case(case.name, read_volume(case.thick), read_volume(case.thin)))
        except _Mismatch as reason:
            _skip(case.name, reason)
    if not cases:
        raise UsageError(
            f"{folder}: none of the {len(files)} {split} cases of the {layout} layout lines up "
            "(see the warnings)"
        )
    return cases
