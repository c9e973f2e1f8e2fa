"""Bring an image on a thin grid back onto the thick grid it was made from.

Whatever was computed on synthetic thin slices (a segmentation from a detector trained on thin
CT, an edited volume) often has to go back to the original thick scan, where the radiologist
and the archive live. Each thick slice is a slab: intensities are averaged over the thin
slices inside it, and labels take the value that covers most of the slab (a majority vote
weighted by how much of each thin slice lies inside). That is the inverse of upsampling in the
sense that matters: a thin scan made from a thick one comes back as that thick scan's slabs.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from thinct.errors import GeometryError
from thinct.geometry import Grid, slice_axis, slices_back, slices_first

# Positions within this many mm are the same (headers round to about 1e-4 mm).
_TOLERANCE_MM = 1e-3


def _slab_weights(thin: Grid, thick: Grid, axis: int) -> np.ndarray:
    """``weights[k, j]``: the length (mm) of thin slice ``j`` inside thick slab ``k``."""
    direction = thick.matrix[:, axis]
    offset = float((np.asarray(thin.origin) - np.asarray(thick.origin)) @ direction)
    thin_step, thick_step = thin.spacing[axis], thick.spacing[axis]
    centres = offset + thin_step * np.arange(thin.size[axis])
    lower, upper = centres - thin_step / 2, centres + thin_step / 2
    slabs = thick_step * np.arange(thick.size[axis])
    start, end = (slabs - thick_step / 2)[:, None], (slabs + thick_step / 2)[:, None]
    return np.clip(np.minimum(upper[None], end) - np.maximum(lower[None], start), 0.0, None)


def _check_same_stack(thin: Grid, thick: Grid, axis: int) -> None:
    """The thin grid must be the thick one with only the slice axis resampled."""
    in_plane = [i for i in range(3) if i != axis]
    same_plane = all(thin.size[i] == thick.size[i] for i in in_plane) and np.allclose(
        [thin.spacing[i] for i in in_plane], [thick.spacing[i] for i in in_plane], rtol=1e-5
    )
    if not same_plane or not np.allclose(thin.direction, thick.direction, atol=1e-5):
        raise GeometryError(
            "the thin image does not share the thick scan's in-plane grid and orientation; it "
            "was not made from this scan"
        )
    shift = np.asarray(thin.origin) - np.asarray(thick.origin)
    along = thick.matrix[:, axis]
    if np.linalg.norm(shift - (shift @ along) * along) > _TOLERANCE_MM:
        raise GeometryError(
            "the thin image is shifted in-plane against the thick scan; it was not made from "
            "this scan"
        )


def thicken(image: sitk.Image, thick: Grid, labels: bool = False) -> sitk.Image:
    """``image`` (on a thin grid) resampled onto the ``thick`` grid, slab by slab.

    Intensities become float32 slab averages; with ``labels`` every thick voxel takes the
    label covering most of its slab and keeps the input's pixel type. Every thick slab must be
    at least partly covered by thin slices (a thin grid with ``centers`` alignment covers the
    outer slabs only halfway, which is enough).
    """
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise GeometryError("only 3D single-channel images can be brought back to a thick grid")
    thin = Grid.of(image)
    axis = slice_axis(thick.spacing)
    _check_same_stack(thin, thick, axis)
    weights = _slab_weights(thin, thick, axis)
    covered = weights.sum(axis=1)
    if np.any(covered < _TOLERANCE_MM):
        missing = int(np.flatnonzero(covered < _TOLERANCE_MM)[0])
        raise GeometryError(
            f"thick slice {missing} is not covered by any thin slice; the thin image covers "
            "another range than the thick scan"
        )
    values = slices_first(sitk.GetArrayViewFromImage(image), axis)
    flat = values.reshape(values.shape[0], -1)
    used = np.flatnonzero(weights.sum(axis=0) > 0)  # thin slices outside every slab drop out
    weights, flat = weights[:, used], flat[used]
    if labels:
        result = _majority(flat, weights)
    else:
        shares = (weights / covered[:, None]).astype(np.float32)
        result = shares @ flat.astype(np.float32, copy=False)
    shaped = result.reshape(thick.size[axis], *values.shape[1:])
    output = sitk.GetImageFromArray(np.ascontiguousarray(slices_back(shaped, axis)))
    thick.apply_to_image(output)
    return output


def _majority(flat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per thick voxel, the label with the largest covered length; ties go to the smaller
    label, so background wins a tie with a structure and the result is deterministic."""
    best = np.zeros((weights.shape[0], flat.shape[1]), dtype=flat.dtype)
    best_share = np.full(best.shape, -1.0, dtype=np.float32)
    for label in np.unique(flat):  # sorted ascending: a later label must beat, not tie
        share = weights.astype(np.float32) @ (flat == label).astype(np.float32)
        better = share > best_share + 1e-6
        best[better] = label
        best_share[better] = share[better]
    return best


__all__ = ["thicken"]
