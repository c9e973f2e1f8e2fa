"""The in-memory volume that flows through thinct: a 3D SimpleITK image plus what a file
format cannot keep inside the image itself."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# The intensity window of thinct's models, their training data and the papers' metrics (HU):
# values outside are clipped, and the window is scaled to [0, 1].
HU_MIN, HU_MAX = -1024.0, 2048.0


@dataclass
class Volume:
    """A 3D scalar CT volume with its geometry.

    The image carries spacing, origin and direction. ``dicom_tags`` keeps the patient and
    study attributes of a DICOM source so a DICOM output stays in the same study;
    ``slice_thickness`` is the nominal reconstruction thickness in mm when it is known
    (DICOM input, or a simulated thick scan), which can differ from the slice spacing.
    """

    image: sitk.Image
    dicom_tags: dict[str, str] = field(default_factory=dict)
    slice_thickness: float | None = None
    source: Path | None = None

    @property
    def array(self) -> np.ndarray:
        """A (z, y, x) copy of the voxels.

        A copy, because a SimpleITK array view does not keep its image alive: a view of a
        temporary volume (``read_volume(path).array``) would read freed memory. Code that
        holds the volume may use ``sitk.GetArrayViewFromImage(volume.image)`` to avoid it.
        """
        return sitk.GetArrayFromImage(self.image)

    def with_image(self, image: sitk.Image, slice_thickness: float | None = None) -> Volume:
        """A derived volume: same provenance and DICOM tags, new voxels and geometry."""
        return replace(self, image=image, slice_thickness=slice_thickness)
