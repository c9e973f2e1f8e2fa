"""Training pairs: a thick stack and the thin stack it was made from, slice-aligned.

A `Pair` keeps both stacks as (slices, rows, columns) float32 HU arrays with the slice axis
first, and the alignment ``thin index of thick slice z = ratio * z + offset``. Every source of
training data ends up in this form: simulated pairs from thin scans (the core simulator, so
training sees exactly the degradation that evaluation uses), in-plane pairs that degrade x or
y of any scan the way the scanner degrades z, and real paired scans (`thinct.data.layouts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from thinct.errors import GeometryError, UsageError
from thinct.geometry import Grid, slice_axis, slices_first
from thinct.resample.simulate import simulate_thick
from thinct.volume import HU_MAX, HU_MIN, Volume


@dataclass(frozen=True)
class Pair:
    """Aligned thick and thin stacks: thick slice z sits on thin slice ``ratio * z + offset``.

    ``name`` says where the pair came from (file, part and degradation) for logs and errors.
    """

    thick: np.ndarray
    thin: np.ndarray
    ratio: int
    offset: int
    name: str

    def __post_init__(self) -> None:
        if self.thick.ndim != 3 or self.thin.ndim != 3:
            raise UsageError(f"{self.name}: pair stacks must be 3D")
        if self.thick.shape[1:] != self.thin.shape[1:]:
            raise GeometryError(
                f"{self.name}: thick {self.thick.shape[1:]} and thin {self.thin.shape[1:]} "
                "slices differ in size"
            )
        if self.offset < 0 or self.ratio < 1:
            raise UsageError(f"{self.name}: ratio must be positive and offset not negative")

    def window_starts(self, slices: int) -> int:
        """How many windows of ``slices`` thick slices have all their thin slots inside the
        thin stack (0 when none fit)."""
        by_thin = (self.thin.shape[0] - 1 - self.offset) // self.ratio - (slices - 1) + 1
        return max(0, min(self.thick.shape[0] - slices + 1, by_thin))


def normalise(hu: np.ndarray) -> np.ndarray:
    """HU to the networks' [0, 1] scale: [-1024, 2048] HU, clipped, as in the published code."""
    return (np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)


def slice_stack(image: sitk.Image, axis: int) -> np.ndarray:
    """The voxels as a float32 (slices, rows, columns) array, the given ITK axis first.

    Always a copy: a view would outlive the image it points into.
    """
    array = sitk.GetArrayViewFromImage(image)
    return np.array(slices_first(array, axis), dtype=np.float32, order="C")


def resample_axis(volume: Volume, axis: int, spacing: float) -> Volume:
    """The volume with slices ``spacing`` mm apart along one axis (cubic B-spline), from its
    first slice centre on; a spacing within 0.1 % of the current one is kept as it is."""
    grid = Grid.of(volume.image)
    current = grid.spacing[axis]
    if abs(current - spacing) <= 1e-3 * spacing:
        return volume
    size = list(grid.size)
    size[axis] = math.floor((grid.size[axis] - 1) * current / spacing + 1e-6) + 1
    new_spacing = list(grid.spacing)
    new_spacing[axis] = spacing
    resampler = sitk.ResampleImageFilter()
    Grid(tuple(size), tuple(new_spacing), grid.origin, grid.direction).apply_to(resampler)
    resampler.SetInterpolator(sitk.sitkBSpline)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return volume.with_image(resampler.Execute(volume.image), slice_thickness=spacing)


def simulated_pairs(
    volume: Volume,
    ratio: int = 5,
    spacing: float = 1.0,
    profiles: Sequence[tuple[str, float | None]] = (("boxcar", None),),
    phases: int = 1,
    axis: int | None = None,
    name: str = "",
) -> list[Pair]:
    """A thin scan and its simulated thick versions, ``ratio * spacing`` mm slabs: one pair
    per slab phase and slice profile, all sharing one thin stack (memory grows with the thick
    stacks only).

    The thin scan is first resampled to ``spacing`` along ``axis`` (default: the slice axis)
    so that any thin collection trains a model for the same physical ratio; the thick slabs
    then come from the core simulator, contiguous, each centred on a thin slice (which needs
    an odd ratio: an even number of thin slices has no centre slice). Phase ``p`` starts the
    first slab ``p`` thin slices in, so ``phases`` up to ``ratio`` varies which thin slices
    form a slab. A ``(profile, fwhm)`` with a Gaussian ``fwhm`` other than the slab thickness
    varies the profile's width around the slab (slice thickness jitter).
    """
    if ratio < 2 or ratio % 2 == 0:
        raise UsageError(f"simulated pairs need an odd ratio of 3 or more, got {ratio}")
    if not 1 <= phases <= ratio:
        raise UsageError(f"phases must be from 1 to the ratio ({ratio}), got {phases}")
    axis = slice_axis(volume.image.GetSpacing()) if axis is None else axis
    if axis not in (0, 1, 2):
        raise UsageError(f"the axis must be 0 (x), 1 (y) or 2 (z), got {axis}")
    thin = resample_axis(volume, axis, spacing)
    thin_stack = slice_stack(thin.image, axis)
    pairs = []
    for phase in range(phases):
        part = _without_first_slices(thin, axis, phase)
        for profile, fwhm in profiles:
            thick = simulate_thick(part, ratio * spacing, profile=profile, fwhm=fwhm, axis=axis)
            degradation = profile if fwhm is None else f"{profile} {fwhm:g} mm"
            shifted = f", phase {phase}" if phases > 1 else ""
            pairs.append(
                Pair(
                    thick=slice_stack(thick.image, axis),
                    thin=thin_stack[phase:],
                    ratio=ratio,
                    offset=(ratio - 1) // 2,
                    name=f"{name} ({'xyz'[axis]}, {degradation}{shifted})".strip(),
                )
            )
    return pairs


def simulated_pair(
    volume: Volume,
    ratio: int = 5,
    spacing: float = 1.0,
    profile: str = "boxcar",
    fwhm: float | None = None,
    axis: int | None = None,
    name: str = "",
) -> Pair:
    """One simulated pair (see `simulated_pairs`): the first slab phase, one profile."""
    return simulated_pairs(volume, ratio, spacing, ((profile, fwhm),), 1, axis, name)[0]


def _without_first_slices(volume: Volume, axis: int, count: int) -> Volume:
    """The volume from its ``count``-th slice along ``axis`` on, with its geometry."""
    if count == 0:
        return volume
    size = list(volume.image.GetSize())
    index = [0, 0, 0]
    index[axis], size[axis] = count, size[axis] - count
    return volume.with_image(
        sitk.RegionOfInterest(volume.image, size, index), volume.slice_thickness
    )


def slice_range(volume: Volume, start: float, stop: float) -> Volume:
    """The part of a volume between two fractions of its slices (0 to 1), along the slice
    axis, with its geometry: how one scan is split into training and held-out parts."""
    if not 0 <= start < stop <= 1:
        raise UsageError(f"a slice range needs 0 <= start < stop <= 1, got [{start}, {stop}]")
    axis = slice_axis(volume.image.GetSpacing())
    count = volume.image.GetSize()[axis]
    first, last = round(start * count), round(stop * count)
    if last - first < 2:
        raise UsageError(f"the slice range [{start}, {stop}] keeps fewer than 2 of {count} slices")
    index = [0, 0, 0]
    size = list(volume.image.GetSize())
    index[axis], size[axis] = first, last - first
    return volume.with_image(
        sitk.RegionOfInterest(volume.image, size, index), volume.slice_thickness
    )
