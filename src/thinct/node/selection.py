"""Which complete series the node turns into thin slices: thick axial CT. Anything else (a
localizer, an already-thin series, a sagittal reformat, thinct's own output sent back by a
router) is ignored with one reason, which the log and `thinct serve status` show."""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from thinct.node.settings import NodeSettings


def rejection(folder: Path, settings: NodeSettings) -> str | None:
    """Why the series in ``folder`` is not processed, or None when it is."""
    headers = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError) as error:
            return f"unreadable instance {path.name} ({error})"
    if not headers:
        return "no instances"
    first = headers[0]
    if first.get("Modality") != "CT":
        return f"modality {first.get('Modality') or 'missing'}, not CT"
    if "LOCALIZER" in [str(v).upper() for v in first.get("ImageType", [])]:
        return "a localizer"
    if "thinct" in str(first.get("DerivationDescription", "")):
        return "made by thinct"
    if len(headers) < settings.min_slices:
        return f"{len(headers)} slices, fewer than {settings.min_slices}"
    if settings.descriptions:
        description = str(first.get("SeriesDescription", ""))
        if not any(fnmatch.fnmatch(description.lower(), p.lower()) for p in settings.descriptions):
            return f"description {description!r} matches none of the patterns"
    try:
        orientation = np.array([float(v) for v in first.ImageOrientationPatient])
        positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
    except (AttributeError, ValueError, TypeError):
        return "no usable ImageOrientationPatient or ImagePositionPatient"
    if orientation.shape != (6,) or positions.shape != (len(headers), 3):
        return "an ImageOrientationPatient without 6 values or an ImagePositionPatient without 3"
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    if not length > 0:  # also NaN
        return "an ImageOrientationPatient whose rows and columns are not directions"
    tilt = math.degrees(math.acos(min(1.0, abs(float(normal[2])) / length)))
    if tilt > settings.max_tilt:
        return f"slices {tilt:.0f} degrees from axial (at most {settings.max_tilt:g})"
    spacing = float(np.median(np.diff(np.sort(positions @ normal / length))))
    if not spacing >= settings.min_spacing:  # also NaN
        return f"slice spacing {spacing:.2f} mm, below {settings.min_spacing:g} mm"
    return None
