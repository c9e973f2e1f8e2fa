"""Training losses on the [0, 1] scale, over every thin slot of a crop.

L1 is the papers' loss. An SSIM term (per slot, the evaluation's Gaussian window) or a
gradient term (L1 of finite differences along all three axes) can be added with a weight:
both reward sharp edges that L1 alone lets blur. A structure term (the structure domain of
Chu et al.) compares the vessels and nodules of output and target instead: the L1 distance
of their maps by the frozen surrogate of the structure operator, on axial and coronal
planes, where a thin vessel broken or blurred away costs more than its few voxels do in L1.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from thinct.errors import UsageError
from thinct.evaluate.metrics import ssim_map
from thinct.structure.intensity import lung_window
from thinct.structure.surrogate import StructureSurrogate, load_surrogate
from thinct.train.config import LOSSES
from thinct.volume import HU_MAX, HU_MIN


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_2d(output: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM of the slices of (B, 1, slots, H, W) tensors (valid region only)."""
    window = _gaussian_window().to(output)
    x = output.flatten(0, 2)[:, None]
    y = target.flatten(0, 2)[:, None]

    return ssim_map(x, y, lambda a: F.conv2d(a, window)).mean()


def gradient_l1(output: Tensor, target: Tensor) -> Tensor:
    """L1 distance of the finite differences along slots, rows and columns."""
    total = output.new_zeros(())
    for dim in (2, 3, 4):
        total = total + F.l1_loss(torch.diff(output, dim=dim), torch.diff(target, dim=dim))
    return total / 3


@cache
def surrogate_on(device: torch.device) -> StructureSurrogate:
    """The frozen structure surrogate, loaded once per device."""
    return load_surrogate(device)


def _structure_maps(crops: Tensor) -> tuple[Tensor, Tensor]:
    """The surrogate's maps of the axial (rows x columns) and coronal (slots x columns)
    planes of (B, 1, slots, H, W) crops on the [0, 1] scale of [HU_MIN, HU_MAX]."""
    surrogate = surrogate_on(crops.device)
    lung = lung_window(crops * (HU_MAX - HU_MIN) + HU_MIN)
    return surrogate(lung), surrogate(lung.transpose(-3, -2))


def structure_l1(output: Tensor, target: Tensor) -> Tensor:
    """L1 distance of the structure maps of output and target, axial and coronal planes
    weighed alike (no gradient to the surrogate's weights, nor through the target)."""
    axial, coronal = _structure_maps(output)
    with torch.no_grad():
        axial_target, coronal_target = _structure_maps(target)
    return (F.l1_loss(axial, axial_target) + F.l1_loss(coronal, coronal_target)) / 2


def training_loss(output: Tensor, target: Tensor, kind: str = "l1", weight: float = 0.1) -> Tensor:
    if kind not in LOSSES:
        raise UsageError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    loss = F.l1_loss(output, target)
    if kind == "l1+ssim":
        loss = loss + weight * (1 - ssim_2d(output, target))
    elif kind == "l1+gradient":
        loss = loss + weight * gradient_l1(output, target)
    elif kind == "l1+structure":
        loss = loss + weight * structure_l1(output, target)
    return loss
