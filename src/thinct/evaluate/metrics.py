"""Image quality of a thin volume against its reference, in the papers' conventions.

Both volumes are (slices, rows, columns) HU arrays on the same grid. Every metric leaves out
``exclude`` slices at each end, where every method extrapolates, as the published evaluation
does (5 by default).

- `psnr`: [-1024, 2048] HU mapped to [0, 1], peak 1, 40 dB for identical volumes (the
  published code's convention rather than infinity).
- `ssim`: the mean structural similarity of the axial slices on the same [0, 1] scale
  (Gaussian window of 11 pixels, sigma 1.5, constants 0.01 and 0.03).
- `lung_psnr`: PSNR in the standard lung window, level -600 HU and width 1500 HU, so
  [-1350, 150] HU mapped to [0, 1]: what a reader of a chest scan sees. Differences where
  both volumes lie outside the window (bone, dense contrast, air outside the body) do not
  count.
- `frangi_score`: structure fidelity, after the vessel prior of topology-preserving CT
  super-resolution. Frangi vesselness (bright tubes, scikit-image's ``frangi``) of axial
  slices in the lung window, at scales of 0.75, 1 and 1.5 mm (lung vessels of about 1 to 4
  mm), compared as ``sum |V_output - V_reference| / sum V_reference``: 0 when the vessels
  are reproduced exactly, 1 when as much vessel signal is wrong as the reference holds (an
  output without any vessels scores exactly 1). Lower is better. See `vesselness` for the
  details that keep it comparable between methods and fast on whole scans.
- `smse`: the structure mean squared error of topology-preserving CT super-resolution (Chu
  et al., MICCAI 2023): the mean over all pixels of (V_output - V_reference)^2, with V the
  same Frangi vesselness on the same slices as `frangi_score`, times `SMSE_SCALE` (1000).
  Where `frangi_score` weighs every vessel pixel alike, SMSE weighs large differences more.
  0 is perfect; lower is better. The paper does not state its scale, so its values (0.274
  and 1.76) are not comparable with these.
- `lung_density_bias`: what an emphysema score would see. In the lung parenchyma of the
  reference (`lung_mask`), the output's mean HU minus the reference's, and its LAA-950 (the
  percentage of lung voxels below -950 HU) minus the reference's, in percentage points.
  Regression models that blur lung texture shift both; 0 is unbiased.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.ndimage import gaussian_filter

from thinct.errors import GeometryError
from thinct.volume import HU_MAX, HU_MIN

# Level -600 HU, width 1500 HU: the usual lung window of chest CT.
LUNG_WINDOW = (-1350.0, 150.0)
EDGE_SLICES = 5
# The published code reports 40 dB for identical volumes rather than infinity.
PSNR_IDENTICAL = 40.0
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # an 11-pixel Gaussian window
_C1, _C2 = 0.01**2, 0.03**2
# numpy arrays here, torch tensors in the training loss.
ArrayLike = Any
# Slices per block of PSNR and SSIM: the result is the same as for the whole volume at once
# (the SSIM window is per slice), and the float64 intermediates of a 512 x 512 x 300 scan stay
# small.
_BLOCK = 16

# Lung parenchyma: air-like voxels that are not the air around the body; a shell of this
# many voxels is peeled off so that partial volume at the chest wall and around large
# vessels does not decide the mean.
LUNG_AIR_HU = -400.0
LAA_HU = -950.0
_LUNG_PEEL = 2
# Air around the patient is about -1000 HU; even emphysematous lung averages above this.
_OUTSIDE_AIR_HU = -975.0
# Fewer lung voxels than this (a head scan, a crop below the diaphragm): no density score.
_LUNG_MIN_VOXELS = 1000

# Frangi vesselness: scales in mm, its constants, and how many slices a score looks at.
FRANGI_SCALES_MM = (0.75, 1.0, 1.5)
FRANGI_BETA = 0.5  # blob versus line (Frangi's default)
FRANGI_GAMMA = 0.1  # structure: about half the largest scale-normalised Hessian of a vessel
FRANGI_SLICES = 24
# SMSE is reported times this: vesselness lies in [0, 1] and is near 0 almost everywhere, so
# its raw mean squared difference is a few thousandths.
SMSE_SCALE = 1000.0
# scikit-image's Hessian uses a 100-sigma kernel at scales of one pixel or less; scales below
# a pixel carry no vessel anyway, so they are raised to just above one.
_FRANGI_MIN_PIXELS = 1.01


def window_unit(hu: np.ndarray, low: float = HU_MIN, high: float = HU_MAX) -> np.ndarray:
    """HU from ``low`` to ``high`` mapped to [0, 1] (clipped), in float64: the scale every
    metric compares on."""
    return (np.clip(np.asarray(hu, dtype=np.float64), low, high) - low) / (high - low)


def trimmed(output: np.ndarray, reference: np.ndarray, exclude: int) -> tuple[np.ndarray, ...]:
    """The two volumes without their ``exclude`` end slices, after checking that they are 3D
    volumes of one shape with slices left to compare."""
    if output.shape != reference.shape:
        raise GeometryError(f"output {output.shape} and reference {reference.shape} differ")
    if output.ndim != 3:
        raise GeometryError(f"volumes must be 3D (slices, rows, columns), got {output.shape}")
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
    output, reference = trimmed(output, reference, exclude)
    total = 0.0
    for start in range(0, output.shape[0], _BLOCK):
        block = slice(start, start + _BLOCK)
        total += float(
            np.sum(
                (window_unit(output[block], *window) - window_unit(reference[block], *window)) ** 2
            )
        )
    mse = total / output.size
    return PSNR_IDENTICAL if mse == 0 else float(10 * np.log10(1.0 / mse))


def lung_psnr(output: np.ndarray, reference: np.ndarray, exclude: int = EDGE_SLICES) -> float:
    """PSNR in the lung window (level -600, width 1500 HU: [-1350, 150] HU to [0, 1])."""
    return psnr(output, reference, exclude, window=LUNG_WINDOW)


def ssim_map(x: ArrayLike, y: ArrayLike, blur: Callable[[ArrayLike], ArrayLike]) -> ArrayLike:
    """The SSIM index at every pixel of two [0, 1] images, local statistics by ``blur`` (a
    Gaussian window): plain arithmetic, so numpy arrays and torch tensors (the training loss)
    share it."""
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / (
        (mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2)
    )


def ssim(output: np.ndarray, reference: np.ndarray, exclude: int = EDGE_SLICES) -> float:
    """Mean structural similarity of the axial slices (Gaussian window 11, sigma 1.5)."""
    output, reference = trimmed(output, reference, exclude)

    def blur(a: np.ndarray) -> np.ndarray:
        # Per slice: sigma 0 along the slice axis.
        return gaussian_filter(
            a, (0, _SSIM_SIGMA, _SSIM_SIGMA), truncate=_SSIM_RADIUS / _SSIM_SIGMA
        )

    total = 0.0
    for start in range(0, output.shape[0], _BLOCK):
        block = slice(start, start + _BLOCK)
        x, y = window_unit(output[block]), window_unit(reference[block])
        total += float(ssim_map(x, y, blur).sum())
    return total / output.size


def frangi_slices(count: int, exclude: int = EDGE_SLICES, most: int = FRANGI_SLICES) -> np.ndarray:
    """The slices a structure score looks at: all of them between the ``exclude`` slices at
    each end when there are at most ``most``, otherwise ``most`` spread evenly over them."""
    if count <= 2 * exclude:
        raise GeometryError(f"{count} slices leave nothing once {exclude} are left out at each end")
    kept = count - 2 * exclude
    if kept <= most:
        return np.arange(exclude, count - exclude)
    return np.unique(np.round(np.linspace(exclude, count - exclude - 1, most)).astype(int))


def vesselness(hu_slices: np.ndarray, pixel_mm: float = 1.0) -> np.ndarray:
    """Frangi vesselness of each (rows, columns) slice of a HU stack, in [0, 1].

    The slices are put in the lung window ([-1350, 150] HU to [0, 1]) and filtered with
    scikit-image's ``frangi`` for bright tubes, once per scale of `FRANGI_SCALES_MM`
    (converted to pixels with the in-plane pixel size ``pixel_mm``); the result is the largest
    response over the scales. Two choices keep the maps of two volumes comparable:

    - the structure constant is fixed (`FRANGI_GAMMA` in lung-window units, per scale divided
      by sigma squared, which is Frangi's scale normalisation of the Hessian), where
      scikit-image's default takes it from each image: a blurred output would then be judged
      on a scale of its own and look as vessel-like as a sharp one;
    - every slice is filtered on its own (2D), so the in-plane pixels are square whatever the
      slice spacing.
    """
    from skimage.filters import frangi

    stack = np.asarray(hu_slices)
    if stack.ndim != 3:
        raise GeometryError(f"vesselness needs a stack of slices, got shape {stack.shape}")
    if not (np.isfinite(pixel_mm) and pixel_mm > 0):
        raise GeometryError(f"pixel size must be a positive number of mm, got {pixel_mm}")
    result = np.zeros(stack.shape, dtype=np.float32)
    sigmas = sorted({max(mm / pixel_mm, _FRANGI_MIN_PIXELS) for mm in FRANGI_SCALES_MM})
    for index, hu in enumerate(stack):
        image = window_unit(hu, *LUNG_WINDOW).astype(np.float32)
        for sigma in sigmas:
            response = frangi(
                image,
                sigmas=[sigma],
                beta=FRANGI_BETA,
                gamma=FRANGI_GAMMA / sigma**2,
                black_ridges=False,
                mode="reflect",
            )
            np.maximum(result[index], response, out=result[index])
    return result


def _check_maps(output_vesselness: np.ndarray, reference_vesselness: np.ndarray) -> None:
    if output_vesselness.shape != reference_vesselness.shape:
        raise GeometryError(
            f"vesselness maps {output_vesselness.shape} and {reference_vesselness.shape} differ"
        )


def _slice_vesselness(
    output: np.ndarray, reference: np.ndarray, pixel_mm: float, exclude: int, most: int
) -> tuple[np.ndarray, np.ndarray]:
    """The vesselness of ``output`` and ``reference`` on their `frangi_slices`."""
    trimmed(output, reference, exclude)
    chosen = frangi_slices(output.shape[0], exclude, most)
    return vesselness(output[chosen], pixel_mm), vesselness(reference[chosen], pixel_mm)


def vessel_difference(output_vesselness: np.ndarray, reference_vesselness: np.ndarray) -> float:
    """``sum |V_output - V_reference| / sum V_reference`` (NaN if the reference has none)."""
    _check_maps(output_vesselness, reference_vesselness)
    signal = float(np.sum(reference_vesselness, dtype=np.float64))
    if signal == 0:
        return float("nan")
    difference = np.abs(
        output_vesselness.astype(np.float64) - reference_vesselness.astype(np.float64)
    )
    return float(difference.sum() / signal)


def frangi_score(
    output: np.ndarray,
    reference: np.ndarray,
    pixel_mm: float = 1.0,
    exclude: int = EDGE_SLICES,
    most: int = FRANGI_SLICES,
) -> float:
    """Structure fidelity: the relative difference of the Frangi vesselness of ``output`` and
    ``reference`` on `frangi_slices` (0 is perfect, lower is better)."""
    return vessel_difference(*_slice_vesselness(output, reference, pixel_mm, exclude, most))


def structure_mse(output_vesselness: np.ndarray, reference_vesselness: np.ndarray) -> float:
    """``SMSE_SCALE * mean (V_output - V_reference)^2`` over every pixel of two vesselness
    maps of [0, 1] (the paper's SMSE, on a readable scale)."""
    _check_maps(output_vesselness, reference_vesselness)
    difference = output_vesselness.astype(np.float64) - reference_vesselness.astype(np.float64)
    return float(SMSE_SCALE * np.mean(difference**2))


def smse(
    output: np.ndarray,
    reference: np.ndarray,
    pixel_mm: float = 1.0,
    exclude: int = EDGE_SLICES,
    most: int = FRANGI_SLICES,
) -> float:
    """Structure MSE: the mean squared difference of the Frangi vesselness of ``output`` and
    ``reference`` on `frangi_slices`, times `SMSE_SCALE` (0 is perfect, lower is better)."""
    return structure_mse(*_slice_vesselness(output, reference, pixel_mm, exclude, most))


def lung_mask(reference: np.ndarray) -> np.ndarray:
    """The lung parenchyma of a (slices, rows, columns) HU volume: 3D components of voxels
    below `LUNG_AIR_HU`, without the air around the body (components that touch an in-plane
    border and are emptier than any lung, mean below `_OUTSIDE_AIR_HU`), then eroded
    by `_LUNG_PEEL` voxels in-plane. A crop whose lung reaches its border keeps that lung; in
    an abdominal scan, gas in the bowel counts too."""
    reference = np.asarray(reference)
    air = reference < LUNG_AIR_HU
    labels, count = ndimage.label(air)
    if count == 0:
        return air
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    sums = np.bincount(labels.ravel(), weights=reference.ravel(), minlength=count + 1)[1:]
    means = sums / np.maximum(sizes, 1)
    edges = np.concatenate(
        [labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]], axis=None
    )
    touching = np.zeros(count + 1, dtype=bool)
    touching[np.unique(edges)] = True
    outside = touching[1:] & (means < _OUTSIDE_AIR_HU)
    keep = np.concatenate([[False], ~outside])
    structure = np.zeros((1, 3, 3), dtype=bool)
    structure[0] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_erosion(keep[labels], structure, iterations=_LUNG_PEEL)


def lung_density_bias(
    output: np.ndarray,
    reference: np.ndarray,
    exclude: int = EDGE_SLICES,
    mask: np.ndarray | None = None,
) -> tuple[float, float]:
    """(mean lung HU of output - of reference, LAA-950 % of output - of reference) over the
    reference's `lung_mask`; NaN for both when the scan holds too little lung. ``mask`` is
    that mask of the trimmed reference when it is already known (several outputs scored
    against one reference)."""
    output, reference = trimmed(output, reference, exclude)
    mask = lung_mask(reference) if mask is None else mask
    if mask.sum() < _LUNG_MIN_VOXELS:
        return float("nan"), float("nan")
    out, ref = output[mask].astype(np.float64), reference[mask].astype(np.float64)
    mean_bias = float(out.mean() - ref.mean())
    laa_bias = float(100.0 * (np.mean(out < LAA_HU) - np.mean(ref < LAA_HU)))
    return mean_bias, laa_bias
