"""The imaging enhancement operator: bright tubes and blobs of a 2D slice, as a map.

It follows the structure kernel of Chu et al. (MICCAI 2023). At each scale ``s`` the
scale-normalised Hessian's eigenvalues l1, l2 (|l1| <= |l2|) give

    V = l2 (k1 l1 + lt) (k2 l2 + lt) / (l1 + l2 + lt)^3,
    lt = (l2 - l1) tanh(g) + l1,   g = |l2 / l1| - 1,

where lt moves from l1 (a blob, l1 ~ l2) to l2 (a tube, |l2| >> |l1|); k1 weighs the
smaller eigenvalue and so the blobs, k2 the larger one. The map is the maximum over scales.

V alone scales with nothing (it is homogeneous of degree 0 in the eigenvalues) and is even
(the same for -l1, -l2), so it would answer dark tubes, the noise of a flat region and the
bright side of a step edge as strongly as a vessel. Hence the guards (docs/structure.md):

- sign: bright structures on a dark background only. Across them the intensity has a
  maximum, so l2 < 0; l2 >= 0 gives 0. l1 is clamped to <= 0, so lt and the denominator
  keep one sign and the denominator is at least |l2|.
- ratio: g reads |l1| floored at `CURVATURE_FLOOR` and is clamped to [0, `MAX_G`]: no
  division by zero, and tanh is saturated there anyway.
- strength, in intensity units: ``1 - exp(-l2^2 / (2 contrast^2))`` (Frangi's structure
  term), so flat and noisy regions, whose curvatures are small, give about 0.
- edges: at a tube's or a blob's centre the gradient vanishes; beside a step edge it does
  not. ``exp(-edge (t |grad I_t| / |l2|)^2)``, with the gradient taken at the coarser scale
  t = `EDGE_SCALE` * s: there a step edge's gradient is larger than its curvature at s
  (about 1.5 times where the curvature is largest), while a tube's, symmetric, stays near 0
  a good part of the way to its wall.
- saddles: a positive l1 (convex along the structure: the rim around a dark hole, the gap
  between two vessels) is no bright structure: ``exp(-saddle (max(l1, 0) / |l2|)^2)``.

V is divided by its value for an ideal tube, (1 + k2) / 8, so a tube's centre responds about
1 and a blob about 8 (1 + k1) / 27 of that (0.89 with the defaults). Input: CT on the lung
window's [0, 1] scale (`lung_window`), which the intensity constant assumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from thinct.errors import Argument, InputError, UsageError
from thinct.structure.hessian import eigenvalues, gradient, hessian

# Scales in pixels: an ideal tube of standard deviation w answers most strongly at
# s = w sqrt(2), so on 0.6-1 mm pixels they suit vessels of about 1.5-5 mm across (wider ones
# still respond) and small nodules. A scale of one pixel would add mostly the noise of thin
# slices.
DEFAULT_SCALES = (1.5, 2.0, 3.0)
K1 = 2.0  # blobs: 8 (1 + K1) / 27 of a tube's response
K2 = 1.0
# The structure strength's scale (scale-normalised curvature, lung-window units): a vessel of
# 0.2 contrast (300 HU) has |l2| ~ 0.08 at its best scale (strength 0.84); 30 HU of noise
# gives |l2| of 0.005 (rms) to 0.009 (99th percentile) at 1.5 pixels (strength 0.01-0.03).
CONTRAST = 0.04
EDGE = 5.0
EDGE_SCALE = 2.0
SADDLE = 8.0
CURVATURE_FLOOR = 1e-6
MAX_G = 30.0
# Values beyond this are clipped before the Hessian so that its squares stay finite in
# float32 (the lung window's scale is [0, 1]).
IMAGE_BOUND = 1e4

Image = TypeVar("Image", np.ndarray, Tensor)


def structure_kernel(l1: Tensor, l2: Tensor, k1: float = K1, k2: float = K2) -> Tensor:
    """Equation 3 for bright structures, divided by a tube's value: written with the
    magnitudes a = max(-l1, 0) <= b = max(-l2, 0), which is the same V (degree 0, even)."""
    b = (-l2).clamp_min(CURVATURE_FLOOR)
    a = (-l1).clamp_min(0).minimum(b)
    g = (b / a.clamp_min(CURVATURE_FLOOR) - 1).clamp(0, MAX_G)
    lt = (b - a) * torch.tanh(g) + a
    return b * (k1 * a + lt) * (k2 * b + lt) / (a + b + lt) ** 3 * (8 / (1 + k2))


def _one_scale(
    planes: Tensor, scale: float, k1: float, k2: float, contrast: float, edge: float
) -> Tensor:
    l1, l2 = eigenvalues(*hessian(planes, scale))
    bright = (-l2).clamp_min(0)
    strength = 1 - torch.exp(-(bright**2) / (2 * contrast**2))
    r, c = gradient(planes, EDGE_SCALE * scale)
    slope = (r**2 + c**2) / bright.clamp_min(CURVATURE_FLOOR) ** 2
    saddle = (l1.clamp_min(0) / bright.clamp_min(CURVATURE_FLOOR)) ** 2
    return structure_kernel(l1, l2, k1, k2) * strength * torch.exp(-edge * slope - SADDLE * saddle)


def _check_options(
    scales: Sequence[float], k1: float, k2: float, contrast: float, edge: float
) -> tuple[float, ...]:
    scales = tuple(float(s) for s in np.atleast_1d(np.asarray(scales, dtype=float)))
    if not scales or not all(np.isfinite(s) and s > 0 for s in scales):
        raise UsageError(Argument("scales"), f" must be positive numbers of pixels, got {scales}")
    if not (k1 >= 0 and k2 >= 0):
        raise UsageError(Argument("k1"), " and ", Argument("k2"), " must be 0 or more")
    if not (contrast > 0 and edge >= 0):
        raise UsageError(
            Argument("contrast"), " must be positive and ", Argument("edge"), " 0 or more"
        )
    return scales


def enhance_planes(
    planes: Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    *,
    k1: float = K1,
    k2: float = K2,
    contrast: float = CONTRAST,
    edge: float = EDGE,
) -> Tensor:
    """The operator's map of (..., H, W) floating-point planes, differentiable."""
    scales = _check_options(scales, k1, k2, contrast, edge)
    shape = planes.shape
    if planes.numel() == 0:
        return torch.zeros_like(planes)
    flat = planes.reshape(-1, *shape[-2:]).clamp(-IMAGE_BOUND, IMAGE_BOUND)
    maps = [_one_scale(flat, s, k1, k2, contrast, edge) for s in scales]
    best = maps[0] if len(maps) == 1 else torch.stack(maps).amax(0)
    return best.reshape(shape)


def enhance(
    image: Image,
    scales: Sequence[float] = DEFAULT_SCALES,
    *,
    k1: float = K1,
    k2: float = K2,
    contrast: float = CONTRAST,
    edge: float = EDGE,
) -> Image:
    """The enhancement map of bright tubes and blobs (vessels, nodules) of a 2D image.

    ``image``: a (H, W) numpy array, or a torch tensor (..., H, W) of planes (the map is
    differentiable then), on the lung window's [0, 1] scale (`lung_window`). ``scales`` in
    pixels; ``k1``, ``k2``: equation 3's weights; ``contrast``: the structure strength's
    scale in image units; ``edge``: how hard step edges are suppressed. Returns a float map
    of the image's shape: about 1 on a tube's centre line, 0 where nothing is bright and
    curved (see the module's docstring).
    """
    options = {"k1": k1, "k2": k2, "contrast": contrast, "edge": edge}
    if isinstance(image, Tensor):
        if image.ndim < 2:
            raise UsageError(
                Argument("image"), f" must be (..., H, W), got shape {tuple(image.shape)}"
            )
        planes = image if image.is_floating_point() else image.float()
        return enhance_planes(planes, scales, **options)
    array = np.asarray(image)
    if array.ndim != 2:
        raise UsageError(Argument("image"), f" must be a 2D array (H, W), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise InputError(f"image must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError("image has NaN or infinite values")
    with torch.no_grad():
        return enhance_planes(torch.from_numpy(array), scales, **options).numpy()
