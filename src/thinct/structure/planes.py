"""The structure operator on every 2D plane of a volume, along any of its axes.

The operator is 2D (the paper's): a volume is read as a stack of planes perpendicular to
``axis`` (for a (slices, rows, columns) array: 0 axial, 1 coronal, 2 sagittal) and each plane
is enhanced alone. Planes go through in blocks of about `BLOCK_PIXELS` pixels, so a 512 x 512
x 300 scan needs its float32 map plus about 250 MB of working memory, not gigabytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from thinct.errors import Argument, InputError, UsageError
from thinct.structure.operator import CONTRAST, DEFAULT_SCALES, EDGE, K1, K2, enhance_planes

# Four planes of 512 x 512 per block: about 250 MB of working memory.
BLOCK_PIXELS = 1 << 20


def enhance_volume(
    volume: np.ndarray,
    axis: int = 0,
    scales: Sequence[float] = DEFAULT_SCALES,
    *,
    k1: float = K1,
    k2: float = K2,
    contrast: float = CONTRAST,
    edge: float = EDGE,
) -> np.ndarray:
    """The operator's map (float32, the volume's shape) of each plane perpendicular to
    ``axis`` of a 3D array on the lung window's [0, 1] scale (`lung_window`); the options are
    `enhance`'s."""
    array = np.asarray(volume)
    if array.ndim != 3:
        raise UsageError(Argument("volume"), f" must be a 3D array, got shape {array.shape}")
    if not -3 <= axis < 3:
        raise UsageError(Argument("axis"), f" must be 0, 1 or 2, got {axis}")
    if array.dtype.kind not in "biuf":
        raise InputError(f"volume must hold numbers, got dtype {array.dtype}")
    planes = np.moveaxis(array, axis, 0)
    result = np.empty(planes.shape, dtype=np.float32)
    per_block = max(1, BLOCK_PIXELS // max(1, planes[0].size))
    with torch.no_grad():
        for start in range(0, planes.shape[0], per_block):
            block = np.ascontiguousarray(planes[start : start + per_block], dtype=np.float32)
            if not np.isfinite(block).all():
                raise InputError("volume has NaN or infinite values")
            result[start : start + per_block] = enhance_planes(
                torch.from_numpy(block), scales, k1=k1, k2=k2, contrast=contrast, edge=edge
            ).numpy()
    return np.moveaxis(result, 0, axis)
