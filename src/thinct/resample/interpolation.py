"""Classical slice interpolation baselines (SimpleITK), onto the thin grid of `geometry`.

``bspline`` is the cubic B-spline interpolation that the CTHNet paper reports as "BIS".
Points of the ``edges`` grid beyond the first and last thick-slice centres lie within half a
thick slice of them, which ITK treats as inside the image, so every output slice gets values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from thinct.errors import Cancelled, UsageError
from thinct.geometry import Grid, ThinGrid
from thinct.inference.options import CancelCallback
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
    cancel: CancelCallback | None = None,
) -> Volume:
    """Resample a thick volume onto its thin grid with a classical interpolator (float32).

    ``cancel`` is polled with each progress step (ITK reports one per chunk of rows) and
    aborts the resampling with `Cancelled` when it returns True.
    """
    if method not in INTERPOLATORS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    resampler = sitk.ResampleImageFilter()
    thin.grid.apply_to(resampler)
    resampler.SetInterpolator(INTERPOLATORS[method])
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetDefaultPixelValue(float(np.min(sitk.GetArrayViewFromImage(volume.image))))
    cancelled = False

    def report() -> None:
        nonlocal cancelled
        if cancelled:  # ITK reports progress once more while it stops
            return
        if cancel is not None and cancel():
            cancelled = True
            resampler.Abort()  # ITK stops at its next check and Execute raises
        elif progress is not None:
            progress(resampler.GetProgress())

    if progress is not None or cancel is not None:
        resampler.AddCommand(sitk.sitkProgressEvent, report)
    try:
        image = resampler.Execute(volume.image)
    except RuntimeError as error:
        if cancelled:
            raise Cancelled("cancelled") from None
        # ITK reports a failed allocation as a generic exception; as a MemoryError it reads
        # as what it is wherever it is caught, like numpy's.
        if "Failed to allocate memory" not in str(error):
            raise
        size = " x ".join(str(v) for v in thin.grid.size)
        gib = np.prod(thin.grid.size, dtype=float) * 4 / 2**30
        raise MemoryError(f"the {size} thin volume needs {gib:,.1f} GiB") from None
    return volume.with_image(image, slice_thickness=thin.spacing)


def resample_labels(image: sitk.Image, grid: Grid) -> sitk.Image:
    """Labels on another grid by nearest neighbour: values and pixel type unchanged, 0
    (background) outside the source."""
    resampler = sitk.ResampleImageFilter()
    grid.apply_to(resampler)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampler.SetDefaultPixelValue(0)
    return resampler.Execute(image)
