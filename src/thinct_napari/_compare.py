"""Side by side: the input and its thin version in two linked views of napari's grid mode.

napari's grid puts consecutive layers (``stride`` at a time, counted from the bottom of the
layer list) into one view. Comparing a scan with carried labels needs each image with its
own labels, so the two groups move to the bottom of the list, every other layer is hidden
while the comparison is on, and the stride is the size of a group. Both views share the
camera and the dims sliders, and since both layers live in the scan's world coordinates,
the same slider position shows the same anatomy. Turning it off restores what was visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer


class SideBySide:
    """Turns the comparison on and off for one viewer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self._hidden: list[Layer] = []

    def start(self, left: Sequence[Layer], right: Sequence[Layer]) -> None:
        """Show ``left`` (the input and its labels) beside ``right`` (its thin versions)."""
        if len(left) != len(right):
            raise ValueError("each view needs the same number of layers")
        self.stop()
        layers = self.viewer.layers
        for position, layer in enumerate([*left, *right]):
            layers.move(layers.index(layer), position)
        shown = {id(layer) for layer in [*left, *right]}
        self._hidden = [layer for layer in layers if id(layer) not in shown and layer.visible]
        for layer in self._hidden:
            layer.visible = False
        for layer in [*left, *right]:
            layer.visible = True
        self.viewer.canvas.grid.stride = len(left)
        self.viewer.canvas.grid.shape = (1, 2)
        self.viewer.canvas.grid.enabled = True

    def stop(self) -> None:
        """Back to one view; layers hidden for the comparison are shown again."""
        self.viewer.canvas.grid.enabled = False
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
