"""Classical slice interpolation baselines (SimpleITK), onto the thin grid of `geometry`.

``bspline`` is the cubic B-spline interpolation that the CTHNet paper reports as "BIS".
Points of the ``edges`` grid beyond the first and last thick-slice centres lie within half a
thick slice of them, which ITK treats as inside the image, so every output slice gets values.
`refine_in_plane` refines the pixels of each slice the same way (the outer pixels of a refined
grid lie within half an input pixel of the outer input pixels, again inside).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from thinct.errors import Cancelled, UsageError
from thinct.geometry import Grid, ThinGrid, slices_back, slices_first
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
    _check_method(method)
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


def _check_method(method: str) -> None:
    if method not in INTERPOLATORS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def refine_in_plane(
    volume: Volume,
    grid: Grid,
    axis: int,
    method: str = "bspline",
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> Volume:
    """``volume`` on ``grid``, which differs from the volume's own grid only in the pixels of
    its slices along ``axis`` (`thinct.geometry.in_plane_grid`), interpolated with ``method``.

    Each slice is resampled on its own, as a 2D image with the slice's in-plane spacings: no
    value mixes slices, and the interpolator's buffers (ITK's B-spline keeps a float64 copy of
    its input) hold one slice, not the volume; the float32 output is the only full-size
    buffer. ``progress`` hears after each slice, and ``cancel`` is polled there.
    """
    _check_method(method)
    source = Grid.of(volume.image)
    # The 2D plane of a slices-first view has the larger in-plane ITK axis as its rows, so a
    # 2D image of it has the smaller one as its x axis.
    low, high = sorted(i for i in range(3) if i != axis)
    shift = (np.asarray(grid.origin) - np.asarray(source.origin)) @ source.matrix
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([grid.size[low], grid.size[high]])
    resampler.SetOutputSpacing([grid.spacing[low], grid.spacing[high]])
    resampler.SetOutputOrigin([float(shift[low]), float(shift[high])])
    resampler.SetInterpolator(INTERPOLATORS[method])
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    stack = slices_first(sitk.GetArrayViewFromImage(volume.image), axis)
    shape = (grid.size[axis], grid.size[high], grid.size[low])
    try:
        refined = np.empty(shape, dtype=np.float32)
    except MemoryError:
        gib = np.prod(shape, dtype=float) * 4 / 2**30
        raise MemoryError(f"the {' x '.join(map(str, shape))} output needs {gib:.1f} GiB") from None
    resampler.SetDefaultPixelValue(float(np.min(stack)))
    for k, values in enumerate(stack):
        if cancel is not None and cancel():
            raise Cancelled("cancelled")
        plane = sitk.GetImageFromArray(np.ascontiguousarray(values))
        plane.SetSpacing([source.spacing[low], source.spacing[high]])
        result = resampler.Execute(plane)  # held: an array view does not keep it alive
        refined[k] = sitk.GetArrayViewFromImage(result)
        if progress is not None:
            progress((k + 1) / len(refined))
    image = sitk.GetImageFromArray(slices_back(refined, axis))
    del refined
    grid.apply_to_image(image)
    return volume.with_image(image, slice_thickness=volume.slice_thickness)


def resample_labels(image: sitk.Image, grid: Grid) -> sitk.Image:
    """Labels on another grid by nearest neighbour: values and pixel type unchanged, 0
    (background) outside the source."""
    resampler = sitk.ResampleImageFilter()
    grid.apply_to(resampler)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampler.SetDefaultPixelValue(0)
    return resampler.Execute(image)
