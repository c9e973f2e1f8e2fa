"""CT intensities for the structure operator: Hounsfield units to the lung window's [0, 1].

The operator's intensity constants (its structure strength) are set on this scale, where
the lung (about -850 HU) sits near 0.33 and vessels, nodules and soft tissue (0-150 HU) near
1, so a vessel's contrast is about 0.6 whatever the scanner's HU offset of air.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thinct.windows import WINDOWS

LUNG_LIMITS = WINDOWS["lung"].contrast_limits


def lung_window(hu: Any) -> Any:
    """Hounsfield units to the lung window's [0, 1] scale, clipped: a numpy array (or
    anything numpy reads) gives a float32 array, a torch tensor a tensor (differentiable
    inside the window)."""
    low, high = LUNG_LIMITS
    if not hasattr(hu, "detach"):  # not a torch tensor
        hu = np.asarray(hu, dtype=np.float32)
    return ((hu - low) / (high - low)).clip(0, 1)
