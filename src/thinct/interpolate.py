"""Classical slice interpolation baselines (SimpleITK), onto the thin grid of `geometry`.

``bspline`` is the cubic B-spline interpolation that the CTHNet paper reports as "BIS".
Points of the ``edges`` grid beyond the first and last thick-slice centres lie within half a
thick slice of them, which ITK treats as inside the image, so every output slice gets values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from thinct.errors import UsageError
from thinct.geometry import ThinGrid
from thinct.volume import Volume

INTERPOLATORS: dict[str, int] = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "lanczos": sitk.sitkLanczosWindowedSinc,
}
METHODS: tuple[str, ...] = tuple(INTERPOLATORS)

ProgressCallback = Callable[[float], None]


def interpolate(
    volume: Volume,
    thin: ThinGrid,
    method: str = "bspline",
    progress: ProgressCallback | None = None,
) -> Volume:
    """Resample a thick volume onto its thin grid with a classical interpolator (float32)."""
    if method not in INTERPOLATORS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    resampler = sitk.ResampleImageFilter()
    thin.grid.apply_to(resampler)
    resampler.SetInterpolator(INTERPOLATORS[method])
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetDefaultPixelValue(float(np.min(sitk.GetArrayViewFromImage(volume.image))))
    if progress is not None:
        resampler.AddCommand(sitk.sitkProgressEvent, lambda: progress(resampler.GetProgress()))
    try:
        image = resampler.Execute(volume.image)
    except RuntimeError as error:
        # ITK reports a failed allocation as a generic exception; as a MemoryError it reads
        # as what it is wherever it is caught, like numpy's.
        if "Failed to allocate memory" not in str(error):
            raise
        size = " x ".join(str(v) for v in thin.grid.size)
        gib = np.prod(thin.grid.size, dtype=float) * 4 / 2**30
        raise MemoryError(f"the {size} thin volume needs {gib:,.1f} GiB") from None
    return volume.with_image(image, slice_thickness=thin.spacing)
