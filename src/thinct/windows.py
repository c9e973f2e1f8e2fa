"""CT display windows (level and width in HU): one list for the figures of `thinct evaluate`
(``--window``) and the napari plugin's presets, so a window means the same everywhere.

Lung is the default everywhere: thinct's main use is chest CT for nodule and pneumonia readers
and detectors.
"""

from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    """A display window: ``level`` is its centre, ``width`` its span, both in HU."""

    level: float
    width: float

    @property
    def contrast_limits(self) -> tuple[float, float]:
        """The lowest and highest HU shown (black and white), napari's contrast limits."""
        return (self.level - self.width / 2, self.level + self.width / 2)


WINDOWS: dict[str, Window] = {
    "lung": Window(level=-600, width=1500),
    "soft-tissue": Window(level=40, width=400),
    "bone": Window(level=400, width=1800),
}
