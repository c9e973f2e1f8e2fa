"""Slice sensitivity profiles: how much each thin slice contributes to a thick one.

The one definition of a profile, shared by thick-slice simulation, the consistency
projection and every list of profile choices (CLI, training recipes). numpy only (SciPy
loads when a Gaussian is computed), so recipe checks and the CLI's choices stay light.
"""

from __future__ import annotations

import math

import numpy as np

PROFILES: tuple[str, ...] = ("boxcar", "gaussian")
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def profile_weights(
    centres: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    thickness: float,
    profile: str = "boxcar",
    fwhm: float | None = None,
) -> np.ndarray:
    """``weights[i, j]``: how much of the slice profile of the slab centred at ``centres[i]``
    falls on the thin box from ``lower[j]`` to ``upper[j]`` (all in one unit along the slice
    axis). Rows are not normalised: a row sums to the share of the profile that the boxes
    cover, 1 when they cover the whole slab.

    ``boxcar`` is flat over ``thickness``; ``gaussian`` has a full width at half maximum of
    ``fwhm`` (default: the thickness). The one definition of a slice profile: simulation and
    the consistency projection both use it.
    """
    centres = np.asarray(centres, dtype=float)[:, None]
    lower, upper = np.asarray(lower, dtype=float)[None], np.asarray(upper, dtype=float)[None]
    if profile == "boxcar":
        start, end = centres - thickness / 2, centres + thickness / 2
        overlap = np.minimum(upper, end) - np.maximum(lower, start)
        return np.clip(overlap, 0.0, None) / thickness
    sigma = (thickness if fwhm is None else fwhm) * _FWHM_TO_SIGMA
    scale = sigma * math.sqrt(2.0)
    from scipy.special import erf  # here: `import thinct` (the CLI start) stays free of SciPy

    return 0.5 * (erf((upper - centres) / scale) - erf((lower - centres) / scale))
