"""Evaluation cases: a thick scan and the thin reference on exactly the grid a method must
produce for it, so that outputs and references compare voxel by voxel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from thinct.data.pairs import resample_axis
from thinct.geometry import Grid, ThinGrid, slice_axis, slices_first, thin_grid
from thinct.resample.simulate import simulate_thick
from thinct.volume import Volume


@dataclass(frozen=True)
class Case:
    """A thick scan, its thin reference, and the thin grid (of the reference) to predict."""

    name: str
    thick: Volume
    reference: Volume
    grid: ThinGrid

    def reference_array(self) -> np.ndarray:
        """The reference as (slices, rows, columns), slices along the thin grid's axis."""
        array = sitk.GetArrayViewFromImage(self.reference.image)
        return np.array(slices_first(array, self.grid.axis), dtype=np.float32)

    def slices_first(self, volume: Volume) -> np.ndarray:
        """Any output on this case's grid as (slices, rows, columns)."""
        array = sitk.GetArrayViewFromImage(volume.image)
        return np.array(slices_first(array, self.grid.axis), dtype=np.float32)


def simulated_case(
    volume: Volume,
    name: str,
    ratio: int = 5,
    spacing: float = 1.0,
    profile: str = "boxcar",
    fwhm: float | None = None,
) -> Case:
    """A thin scan resampled to ``spacing`` as the reference, and its simulated thick scan of
    ``ratio * spacing`` mm slabs. The ``edges`` thin grid of the thick scan is then exactly
    the first ``ratio * n`` reference slices."""
    axis = slice_axis(volume.image.GetSpacing())
    thin = resample_axis(volume, axis, spacing)
    thick = simulate_thick(thin, ratio * spacing, profile=profile, fwhm=fwhm, axis=axis)
    grid = thin_grid(Grid.of(thick.image), spacing=spacing)
    size = list(thin.image.GetSize())
    size[axis] = grid.grid.size[axis]
    reference = thin.with_image(sitk.RegionOfInterest(thin.image, size, [0, 0, 0]), spacing)
    return Case(name=name, thick=thick, reference=reference, grid=grid)
