"""The scale-normalised Hessian and gradient of 2D images, and the Hessian's eigenvalues.

Derivatives come from separable convolutions with sampled Gaussian derivatives (truncated at
four standard deviations), so a whole batch of planes costs a few 1D passes per scale and
autograd differentiates through them. Each kernel is corrected to be exact on low-order
polynomials (the smoothing kernel sums to one, the first derivative of a ramp is its slope,
the second derivative of x^2 / 2 is one): a coarse sampling at one pixel scale would
otherwise bias the eigenvalues and with them the shape ratio the structure kernel reads.

The borders are mirrored (reflect padding, the edge pixel not repeated) so that a vessel
touching the border does not meet a false step; the mirroring repeats as often as needed, so
images smaller than a kernel (down to one pixel) work too.

Scale normalisation (derivatives of order n times ``sigma**n``) makes responses at different
scales comparable, which the multi-scale maximum needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Kernels reach this many standard deviations on each side.
TRUNCATE = 4.0
# Added under the square root of the eigenvalue spread: its gradient stays finite where the
# two eigenvalues meet (a flat region, the centre of a blob).
SPREAD_EPS = 1e-12


def gaussian_kernels(sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """The smoothing, first- and second-derivative kernels at ``sigma`` pixels, as rows of a
    (3, 2 * radius + 1) tensor, for cross-correlation (what torch's conv does)."""
    radius = max(1, math.ceil(TRUNCATE * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    smooth = torch.exp(-(x**2) / (2 * sigma**2))
    smooth = smooth / smooth.sum()
    first = x * smooth
    first = first / (x * first).sum()  # slope of a ramp: correlating x with it gives 1
    second = (x**2 - sigma**2) * smooth
    second = second - second.sum() * smooth  # a constant gives 0
    second = second / (x**2 / 2 * second).sum()  # x^2 / 2 gives 1
    return torch.stack([smooth, first, second]).to(dtype)


def reflect_indices(size: int, radius: int, device: torch.device | None = None) -> Tensor:
    """Indices of a length ``size`` axis padded by ``radius`` on both sides by mirroring
    about the edge pixels (..., 2, 1, 0, 1, 2, ...), repeated for any radius."""
    positions = torch.arange(-radius, size + radius, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def _correlate(planes: Tensor, kernels: Tensor, dim: int) -> Tensor:
    """The (K, L) ``kernels`` along one axis (dim -2: rows, -1: columns) of (N, C, H, W)
    planes with mirrored borders: (N, K, H, W). One channel (C = 1) takes every kernel;
    otherwise (C = K) channel i takes kernel i."""
    radius = (kernels.shape[1] - 1) // 2
    padded = planes.index_select(dim, reflect_indices(planes.shape[dim], radius, planes.device))
    shape = (kernels.shape[0], 1, -1, 1) if dim == -2 else (kernels.shape[0], 1, 1, -1)
    return F.conv2d(padded, kernels.reshape(shape), groups=planes.shape[1])


def hessian(planes: Tensor, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """The scale-normalised second derivatives (rr, rc, cc) of (N, H, W) planes at ``sigma``
    (r: along the rows' index, c: along the columns')."""
    smooth, first, second = gaussian_kernels(sigma, planes.dtype).to(planes.device)
    along_rows = _correlate(planes[:, None], torch.stack([smooth, first, second]), dim=-2)
    # Then along the columns: d2/dc2 of the row-smoothed plane, d/dc of the first row
    # derivative, the smoothing of the second.
    cc, rc, rr = _correlate(along_rows, torch.stack([second, first, smooth]), dim=-1).unbind(1)
    return sigma**2 * rr, sigma**2 * rc, sigma**2 * cc


def gradient(planes: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """The scale-normalised first derivatives (r, c) of (N, H, W) planes at ``sigma``."""
    smooth, first, _ = gaussian_kernels(sigma, planes.dtype).to(planes.device)
    along_rows = _correlate(planes[:, None], torch.stack([smooth, first]), dim=-2)
    c, r = _correlate(along_rows, torch.stack([first, smooth]), dim=-1).unbind(1)
    return sigma * r, sigma * c


def eigenvalues(rr: Tensor, rc: Tensor, cc: Tensor) -> tuple[Tensor, Tensor]:
    """The eigenvalues (l1, l2) of the symmetric 2x2 matrices [[rr, rc], [rc, cc]], ordered
    by magnitude: |l1| <= |l2| (l2 takes the sign of the mean curvature)."""
    mean = (rr + cc) / 2
    spread = torch.sqrt(((rr - cc) / 2) ** 2 + rc**2 + SPREAD_EPS)
    signed = torch.where(mean >= 0, spread, -spread)
    return mean - signed, mean + signed
