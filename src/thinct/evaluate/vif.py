"""Visual information fidelity (VIF) of a thin volume against its reference, by torchmetrics.

VIF (Sheikh and Bovik) asks how much of the information a viewer could draw from the
reference survives in the output: 1 for an identical image, lower as detail is lost (a
blurred or noisy output), above 1 only where the output has more contrast than the
reference. thinct takes the pixel-domain variant of a maintained implementation
(``torchmetrics.functional.image.visual_information_fidelity``) rather than its own.

How it is applied, so that the numbers mean the same on every scan:

- the axial slices of `metrics.frangi_slices` (24 spread over the case, the end slices left
  out; all of them for a short case), each slice a separate image, scores averaged over
  slices. A reference slice of one grey level throughout (nothing to lose) does not count;
- intensities in the lung window ([-1350, 150] HU, clipped), scaled to [0, 255]: the
  model's visual-noise variance (torchmetrics' default, 2) is set for 8-bit images, so the
  window is what a reader sees at 8 bits;
- float32 on the CPU: float64 gives the same scores to four decimals at twenty times the time.

torchmetrics finds four scales with kernels of up to 17 pixels, so a slice must be at least
`MIN_PIXELS` pixels each way; smaller crops get NaN. torch and torchmetrics load on the
first call.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from thinct.errors import ThinctError, ThinctWarning
from thinct.evaluate import metrics

MIN_PIXELS = 41  # torchmetrics' smallest image for its four scales
GREY_LEVELS = 255.0  # the window is scaled to [0, GREY_LEVELS]


def missing_dependency() -> str | None:
    """Why VIF cannot be computed here (one line), or None when torchmetrics is installed."""
    if importlib.util.find_spec("torchmetrics") is None:
        return "torchmetrics is not installed, so vif is nan (pip install torchmetrics)"
    return None


@functools.cache
def _implementation() -> Callable[..., Any] | None:
    """torchmetrics' VIF, or None (and one warning) where torchmetrics is installed but cannot
    be imported: a torchvision built for another torch (nnU-Net's dependencies bring one)
    breaks its import, and one missing column should not stop an evaluation."""
    try:
        from torchmetrics.functional.image import visual_information_fidelity
    except Exception as error:  # noqa: BLE001 - any import failure means the same here
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        warnings.warn(
            f"vif is nan: torchmetrics cannot be imported here ({reason})",
            ThinctWarning,
            stacklevel=2,
        )
        return None
    return visual_information_fidelity


def slice_vif(output_slices: np.ndarray, reference_slices: np.ndarray) -> float:
    """The mean VIF of (slices, rows, columns) HU stacks, slice by slice in the lung window;
    NaN when the slices are smaller than `MIN_PIXELS` or every reference slice is one grey
    level."""
    output_slices, reference_slices = np.asarray(output_slices), np.asarray(reference_slices)
    if output_slices.shape != reference_slices.shape or output_slices.ndim != 3:
        raise ThinctError(
            f"VIF needs two stacks of slices of one shape, got {output_slices.shape} and "
            f"{reference_slices.shape}"
        )
    if min(output_slices.shape[1:]) < MIN_PIXELS or output_slices.shape[0] == 0:
        return float("nan")
    reason = missing_dependency()
    if reason is not None:
        raise ThinctError(reason)
    visual_information_fidelity = _implementation()
    if visual_information_fidelity is None:
        return float("nan")
    import torch

    def grey(hu: np.ndarray) -> np.ndarray:
        unit = metrics.window_unit(hu, *metrics.LUNG_WINDOW).astype(np.float32)
        return unit * np.float32(GREY_LEVELS)

    reference_grey = grey(reference_slices)
    # A slice that is one grey level throughout holds no information to keep (its score
    # would be 0 / 0, or float32 rounding).
    informative = np.ptp(reference_grey, axis=(1, 2)) > 0
    if not informative.any():
        return float("nan")
    scores = []
    with torch.no_grad():
        # One slice per call, so each is scored alone whatever the torchmetrics version
        # (per-image scores of a batch, ``reduction="none"``, are recent).
        for mine, theirs in zip(
            grey(output_slices[informative]), reference_grey[informative], strict=True
        ):
            score = visual_information_fidelity(
                torch.from_numpy(mine)[None, None], torch.from_numpy(theirs)[None, None]
            )
            scores.append(float(score))
    return float(np.mean(scores))


def vif(
    output: np.ndarray,
    reference: np.ndarray,
    exclude: int = metrics.EDGE_SLICES,
    most: int = metrics.FRANGI_SLICES,
) -> float:
    """VIF of two (slices, rows, columns) HU volumes on the same grid, on the slices of
    `metrics.frangi_slices` (higher is better, 1 for identical volumes)."""
    metrics.trimmed(output, reference, exclude)
    chosen = metrics.frangi_slices(output.shape[0], exclude, most)
    return slice_vif(output[chosen], reference[chosen])
