"""Image quality of a thin volume against its reference, in the papers' conventions.

Both volumes are (slices, rows, columns) HU arrays on the same grid. PSNR and SSIM map
[-1024, 2048] HU to [0, 1] (peak 1) and leave out ``exclude`` slices at each end, where every
method extrapolates, as the published evaluation does.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from thinct.errors import GeometryError

HU_MIN, HU_MAX = -1024.0, 2048.0
EDGE_SLICES = 5
# The published code reports 40 dB for identical volumes rather than infinity.
PSNR_IDENTICAL = 40.0
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # an 11-pixel Gaussian window
_C1, _C2 = 0.01**2, 0.03**2


def _unit(hu: np.ndarray, low: float = HU_MIN, high: float = HU_MAX) -> np.ndarray:
    return (np.clip(np.asarray(hu, dtype=np.float64), low, high) - low) / (high - low)


def _trimmed(output: np.ndarray, reference: np.ndarray, exclude: int) -> tuple[np.ndarray, ...]:
    if output.shape != reference.shape:
        raise GeometryError(f"output {output.shape} and reference {reference.shape} differ")
    if output.shape[0] <= 2 * exclude:
        raise GeometryError(
            f"{output.shape[0]} slices leave nothing once {exclude} are left out at each end"
        )
    return output[exclude : output.shape[0] - exclude], reference[
        exclude : reference.shape[0] - exclude
    ]


def psnr(
    output: np.ndarray,
    reference: np.ndarray,
    exclude: int = EDGE_SLICES,
    window: tuple[float, float] = (HU_MIN, HU_MAX),
) -> float:
    """Peak signal-to-noise ratio in dB of the HU ``window`` mapped to [0, 1]."""
    output, reference = _trimmed(output, reference, exclude)
    mse = float(np.mean((_unit(output, *window) - _unit(reference, *window)) ** 2))
    return PSNR_IDENTICAL if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim(output: np.ndarray, reference: np.ndarray, exclude: int = EDGE_SLICES) -> float:
    """Mean structural similarity of the axial slices (Gaussian window 11, sigma 1.5)."""
    output, reference = _trimmed(output, reference, exclude)
    x, y = _unit(output), _unit(reference)

    def blur(a: np.ndarray) -> np.ndarray:
        # Per slice: sigma 0 along the slice axis.
        return gaussian_filter(
            a, (0, _SSIM_SIGMA, _SSIM_SIGMA), truncate=_SSIM_RADIUS / _SSIM_SIGMA
        )

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / (
        (mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2)
    )
    return float(index.mean())
