"""Bring an image on a thin grid back onto the thick grid it was made from.

Whatever was computed on synthetic thin slices (a segmentation from a detector trained on thin
CT, an edited volume) often has to go back to the original thick scan, where the radiologist
and the archive live. Each thick slice is a slab: intensities are averaged over the thin
slices inside it, and labels take the value that covers most of the slab (a majority vote
weighted by how much of each thin slice lies inside). That is the inverse of upsampling in the
sense that matters: a thin scan made from a thick one comes back as that thick scan's slabs.
Pixels refined in-plane (`thinct.geometry.in_plane_grid`) come back the same way: each thick
voxel is a box, and every thin voxel counts by the volume it shares with it.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from thinct.errors import GeometryError
from thinct.geometry import Grid, refined_grid, slice_axis

# Positions within this many mm are the same (headers round to about 1e-4 mm).
_TOLERANCE_MM = 1e-3


def _slab_weights(thin: Grid, thick: Grid, axis: int) -> np.ndarray:
    """``weights[k, j]``: the length (mm) of thin sample ``j`` inside thick sample ``k`` along
    index axis ``axis`` (a slab along the slice axis, a pixel's width in-plane)."""
    direction = thick.matrix[:, axis]
    offset = float((np.asarray(thin.origin) - np.asarray(thick.origin)) @ direction)
    thin_step, thick_step = thin.spacing[axis], thick.spacing[axis]
    centres = offset + thin_step * np.arange(thin.size[axis])
    lower, upper = centres - thin_step / 2, centres + thin_step / 2
    slabs = thick_step * np.arange(thick.size[axis])
    start, end = (slabs - thick_step / 2)[:, None], (slabs + thick_step / 2)[:, None]
    return np.clip(np.minimum(upper[None], end) - np.maximum(lower[None], start), 0.0, None)


def _check_same_stack(thin: Grid, thick: Grid, axis: int) -> None:
    """The thin grid must be the thick one with the slice axis resampled, and its pixels as
    they were or refined over the same field of view (`thinct.geometry.refined_grid`)."""
    in_plane = [i for i in range(3) if i != axis]
    spacing = [thin.spacing[i] if i in in_plane else thick.spacing[i] for i in range(3)]
    finer = all(spacing[i] <= thick.spacing[i] * (1 + 1e-5) for i in in_plane)
    expected = refined_grid(thick, spacing) if finer else thick
    same_plane = finer and all(thin.size[i] == expected.size[i] for i in in_plane)
    if not same_plane or not np.allclose(thin.direction, thick.direction, atol=1e-5):
        raise GeometryError(
            "the thin image does not share the thick scan's in-plane grid and orientation; it "
            "was not made from this scan"
        )
    shift = np.asarray(thin.origin) - np.asarray(expected.origin)
    along = thick.matrix[:, axis]
    if np.linalg.norm(shift - (shift @ along) * along) > _TOLERANCE_MM:
        raise GeometryError(
            "the thin image is shifted in-plane against the thick scan; it was not made from "
            "this scan"
        )


def _average(values: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """``values`` (z, y, x) averaged onto the thick grid, one index axis at a time with its
    normalised ``weights`` (ITK order); the in-plane axes first, as they shrink the most."""
    result = values
    for axis in sorted(range(3), key=lambda i: weights[i].shape[0] / weights[i].shape[1]):
        shares = (weights[axis] / weights[axis].sum(axis=1, keepdims=True)).astype(np.float32)
        if shares.shape[0] == shares.shape[1] and np.allclose(shares, np.eye(len(shares))):
            continue  # the same samples on both grids
        moved = np.moveaxis(result, 2 - axis, 0)
        reduced = shares @ moved.reshape(moved.shape[0], -1).astype(np.float32, copy=False)
        result = np.moveaxis(reduced.reshape(-1, *moved.shape[1:]), 0, 2 - axis)
    return np.ascontiguousarray(result, dtype=np.float32)


def thicken(image: sitk.Image, thick: Grid, labels: bool = False) -> sitk.Image:
    """``image`` (on a thin grid) resampled onto the ``thick`` grid, slab by slab.

    Intensities become float32 box averages; with ``labels`` every thick voxel takes the
    label covering most of its box and keeps the input's pixel type. Every thick slab must be
    at least partly covered by thin slices (a thin grid with ``centers`` alignment covers the
    outer slabs only halfway, which is enough).
    """
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise GeometryError("only 3D single-channel images can be brought back to a thick grid")
    thin = Grid.of(image)
    axis = slice_axis(thick.spacing)
    _check_same_stack(thin, thick, axis)
    weights = [_slab_weights(thin, thick, i) for i in range(3)]
    covered = weights[axis].sum(axis=1)
    if np.any(covered < _TOLERANCE_MM):
        missing = int(np.flatnonzero(covered < _TOLERANCE_MM)[0])
        raise GeometryError(
            f"thick slice {missing} is not covered by any thin slice; the thin image covers "
            "another range than the thick scan"
        )
    values = sitk.GetArrayViewFromImage(image)
    if labels:
        result = _majority(values, weights)
    else:
        result = _average(values, weights)
    output = sitk.GetImageFromArray(result)
    thick.apply_to_image(output)
    return output


def _majority(values: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """Per thick voxel, the label with the largest covered volume; ties go to the smaller
    label, so background wins a tie with a structure and the result is deterministic."""
    best = np.zeros([w.shape[0] for w in weights[::-1]], dtype=values.dtype)
    best_share = np.full(best.shape, -1.0, dtype=np.float32)
    for label in np.unique(values):  # sorted ascending: a later label must beat, not tie
        share = _average((values == label).astype(np.float32), weights)
        better = share > best_share + 1e-6
        best[better] = label
        best_share[better] = share[better]
    return best


__all__ = ["thicken"]
