"""CT display windows (level and width in HU) for napari's contrast limits.

The reader opens scans in the lung window because thinct's main use is chest CT for nodule
and pneumonia detectors; the widget offers the others as presets.
"""

from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    """A display window: ``level`` is its centre, ``width`` its span, both in HU."""

    level: float
    width: float

    @property
    def contrast_limits(self) -> tuple[float, float]:
        return (self.level - self.width / 2, self.level + self.width / 2)


WINDOWS: dict[str, Window] = {
    "lung": Window(level=-600, width=1500),
    "mediastinum": Window(level=40, width=400),
    "bone": Window(level=400, width=1800),
}
