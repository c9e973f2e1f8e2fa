"""Make the thick scan a CT scanner would reconstruct from the same acquisition as a thin one.

A thick slice is the average of the signal over its slab along the slice axis, weighted by the
slice sensitivity profile. Thin voxels are taken as boxes of their spacing, so any thickness
works (not only whole multiples of the thin spacing): a thin slice half inside a slab
contributes half its weight. This is how training and evaluation pairs are made, so the
weights are exact rather than approximated by resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from thinct.errors import Argument, GeometryError, UsageError
from thinct.geometry import MAX_RATIO, Grid, slice_axis, slices_back, slices_first
from thinct.resample.profiles import PROFILES, profile_weights
from thinct.volume import Volume


@dataclass(frozen=True)
class SlabPlan:
    """How thin slices combine into thick ones.

    ``weights[i, j]`` is the share of thin slice ``j`` in thick slice ``i`` (rows sum to 1);
    ``first_centre`` is the first slab centre in mm from the first thin slice centre.
    """

    weights: np.ndarray
    first_centre: float
    increment: float


def check_slab_options(
    thickness: float, increment: float | None, profile: str, fwhm: float | None
) -> None:
    """Refuse slab options that can never work, before any scan is read.

    The limits that depend on the thin spacing (thicker than a thin slice, an increment not
    absurdly fine) need the scan, so `slab_plan` checks them.
    """
    if profile not in PROFILES:
        raise UsageError(
            Argument("profile"), f" must be one of {', '.join(PROFILES)}, got {profile!r}"
        )
    for name, value in (("thickness", thickness), ("increment", increment), ("fwhm", fwhm)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(Argument(name), f" must be a positive number of mm, got {value:g}")
    if fwhm is not None and profile != "gaussian":
        # It would be ignored: the boxcar profile has no width but the thickness.
        raise UsageError(Argument("fwhm"), " only applies to ", Argument("profile", "gaussian"))


def slab_plan(
    n_thin: int,
    thin_spacing: float,
    thickness: float,
    increment: float | None = None,
    profile: str = "boxcar",
    fwhm: float | None = None,
) -> SlabPlan:
    """Weights of contiguous (or, with a smaller increment, overlapping) thick slabs.

    Slabs start at the outer edge of the first thin slice and step by ``increment`` (default:
    the thickness) while they fit inside the thin scan's extent. ``boxcar`` averages over the
    slab; ``gaussian`` uses a Gaussian profile of full width at half maximum ``fwhm``
    (default: the thickness) centred on the slab, renormalised where it leaves the scan. The
    increment may be down to 1/`MAX_RATIO` of the thin spacing.
    """
    check_slab_options(thickness, increment, profile, fwhm)
    increment = thickness if increment is None else increment
    if thickness <= thin_spacing * (1 + 1e-6):
        raise GeometryError(
            f"slices are {thin_spacing:g} mm apart; a {thickness:g} mm thick slice is not thicker"
        )
    if increment < thin_spacing / MAX_RATIO * (1 - 1e-9):
        # Far beyond any real reconstruction, and the weights alone would fill the memory.
        ratio = round(thin_spacing / increment, 1)
        raise UsageError(
            f"an increment of {increment:g} mm would make {ratio:g} thick slices per "
            f"{thin_spacing:g} mm thin slice; the most is {MAX_RATIO} (",
            Argument("increment", f"{thin_spacing / MAX_RATIO:g}"),
            " or more)",
        )
    extent = n_thin * thin_spacing
    if thickness > extent * (1 + 1e-9):
        raise GeometryError(f"the scan covers {extent:g} mm, less than one {thickness:g} mm slab")
    count = math.floor((extent - thickness) / increment + 1e-6) + 1
    centres = -thin_spacing / 2 + thickness / 2 + increment * np.arange(count)
    lower = thin_spacing * np.arange(n_thin) - thin_spacing / 2
    weights = profile_weights(centres, lower, lower + thin_spacing, thickness, profile, fwhm)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return SlabPlan(weights=weights, first_centre=float(centres[0]), increment=float(increment))


def simulate_thick(
    volume: Volume,
    thickness: float,
    increment: float | None = None,
    profile: str = "boxcar",
    fwhm: float | None = None,
    axis: int | None = None,
) -> Volume:
    """The thick-slice version of a thin volume, on the exact grid of its slab centres.

    ``axis`` (an ITK index axis, 2 = z) defaults to the slice axis; an in-plane axis can be
    given to degrade x or y the same way. The result is float32 HU.
    """
    grid = Grid.of(volume.image)
    axis = slice_axis(grid.spacing) if axis is None else axis
    if axis not in (0, 1, 2):
        raise UsageError(f"the axis must be 0 (x), 1 (y) or 2 (z), got {axis}")
    plan = slab_plan(grid.size[axis], grid.spacing[axis], thickness, increment, profile, fwhm)
    thin = slices_first(sitk.GetArrayViewFromImage(volume.image), axis)
    rest = thin.shape[1:]
    flat = np.ascontiguousarray(thin, dtype=np.float32).reshape(thin.shape[0], -1)
    thick = plan.weights.astype(np.float32) @ flat
    array = slices_back(thick.reshape(plan.weights.shape[0], *rest), axis)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    spacing = list(grid.spacing)
    spacing[axis] = plan.increment
    image.SetSpacing(spacing)
    image.SetOrigin(tuple(np.asarray(grid.origin) + grid.matrix[:, axis] * plan.first_centre))
    image.SetDirection(grid.direction)
    nominal = thickness if profile == "boxcar" else (fwhm or thickness)
    return volume.with_image(image, slice_thickness=nominal)
