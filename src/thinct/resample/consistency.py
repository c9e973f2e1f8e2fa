"""Data consistency: thin slices that give back the thick slices they were made from.

A thick slice is the slice-profile-weighted mean of the thin signal over its slab (see
`thinct.resample.simulate`). When that profile is known, the thin slices any method produced can be
corrected so that they reproduce every thick slice exactly: the smallest change (in the least
squares sense) that does it is the orthogonal projection onto the set of volumes consistent
with the thick scan,

    x' = x + A^T (A A^T)^-1 (b - A x),

where ``A`` holds the profile weights of each thin slice in each thick slice and ``b`` is the
thick scan. The true thin volume lies in that set when the profile is right, so the
projection never moves an output away from it: on thick slices simulated with the same
profile it cannot lower PSNR. With the wrong profile (a real scanner's is neither exact nor
published) it can add slab-periodic bands instead, which is why it is an option.

Slabs that the thin grid does not cover whole (the half slabs at the ends of a ``centers``
grid) are left unconstrained; every pixel column shares one ``A``, so the correction is one
small matrix applied to all columns at once.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from thinct.errors import UsageError
from thinct.geometry import ThinGrid, slices_back, slices_first
from thinct.resample.profiles import PROFILES, profile_weights
from thinct.volume import Volume

CONSISTENCY_CHOICES: tuple[str, ...] = ("none", *PROFILES)
# A slab counts as covered when the thin boxes hold this much of its profile.
_COVERED = 1 - 1e-6
# Columns corrected per matrix product (bounds the temporary memory to about 100 MB).
_CHUNK = 1 << 16


def check_consistency(consistency: str) -> None:
    """Refuse a consistency that is not ``none`` or a known slice profile."""
    if consistency not in CONSISTENCY_CHOICES:
        raise UsageError(
            f"consistency must be one of {', '.join(CONSISTENCY_CHOICES)}, got {consistency!r}"
        )


def consistency_operator(
    grid: ThinGrid,
    count: int,
    thickness: float,
    profile: str = "boxcar",
    fwhm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``A`` for the slabs (of ``count`` thick slices) the thin grid covers, and
    the indices of those slabs.

    ``thickness`` and ``fwhm`` are in units of the thick slice spacing (a contiguous scan has
    thickness 1); the thin slices are boxes of their spacing centred on their positions.
    """
    if profile not in PROFILES:
        check_consistency(profile)  # explains the choices
        raise UsageError("consistency 'none' has no slice profile")
    positions = np.asarray(grid.source_index, dtype=float)
    width = positions[1] - positions[0] if len(positions) > 1 else 1.0
    slabs = np.arange(max(0, np.floor(positions[0])), min(count - 1, np.ceil(positions[-1])) + 1)
    weights = profile_weights(
        slabs, positions - width / 2, positions + width / 2, thickness, profile, fwhm
    )
    covered = weights.sum(axis=1) >= _COVERED
    rows = weights[covered]
    return rows / rows.sum(axis=1, keepdims=True), slabs[covered].astype(int)


def project(
    thin: np.ndarray, thick: np.ndarray, operator: np.ndarray, slabs: np.ndarray
) -> np.ndarray:
    """``thin`` (slices first, float32) corrected in place so that ``operator @ thin`` equals
    the ``slabs`` of ``thick`` (slices first); returned for convenience."""
    if len(slabs) == 0:
        return thin
    a = operator.astype(np.float64)
    gain = (a.T @ np.linalg.inv(a @ a.T)).astype(np.float32)  # (thin slices, slabs)
    weights = operator.astype(np.float32)
    columns = thin.reshape(thin.shape[0], -1)
    targets = thick[slabs].reshape(len(slabs), -1)
    for start in range(0, columns.shape[1], _CHUNK):
        part = slice(start, start + _CHUNK)
        residual = targets[:, part].astype(np.float32) - weights @ columns[:, part]
        columns[:, part] += gain @ residual
    return thin


def enforce_consistency(
    thin: Volume, thick: Volume, grid: ThinGrid, profile: str = "boxcar", fwhm: float | None = None
) -> Volume:
    """``thin`` (on ``grid``, the thin grid of ``thick``) projected onto the volumes whose
    ``profile``-weighted slab means are the thick slices.

    The slab thickness is the thick scan's nominal slice thickness when it is known, else its
    slice spacing; ``fwhm`` (mm) is the Gaussian profile's width (default: the thickness).
    Returns float32 HU on the same grid.
    """
    spacing = thick.image.GetSpacing()[grid.axis]
    thickness = (thick.slice_thickness or spacing) / spacing
    width = None if fwhm is None else fwhm / spacing
    count = thick.image.GetSize()[grid.axis]
    operator, slabs = consistency_operator(grid, count, thickness, profile, width)
    voxels = sitk.GetArrayViewFromImage(thin.image)
    thin_array = np.array(slices_first(voxels, grid.axis), dtype=np.float32, order="C")
    thick_view = slices_first(sitk.GetArrayViewFromImage(thick.image), grid.axis)
    corrected = project(thin_array, thick_view, operator, slabs)
    image = sitk.GetImageFromArray(slices_back(corrected, grid.axis))
    image.CopyInformation(thin.image)
    return thin.with_image(image, slice_thickness=thin.slice_thickness)
