"""The "Thin slices" panel: super-resolve an Image layer in the viewer, with its labels.

The result is a new Image layer built by `thinct.upsample_volume`, the engine behind
``thinct upsample``, and placed by `layer_transform` like the reader's layers: the input and
the result overlay exactly, each thick slice centre at the same world position. Label layers
on the input's grid go onto the thin grid by nearest neighbour, so masks and annotations
drawn on the thick scan stay usable on the thin one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import SimpleITK as sitk
from magicgui.widgets import CheckBox, ComboBox, Container, Select
from napari.utils.notifications import show_warning

from thinct.errors import GeometryError, ThinctError, UsageError
from thinct.geometry import Grid, grid_difference, slice_axis
from thinct.io import check_volume, hounsfield_warning
from thinct.pipeline import upsample_volume
from thinct.resample.interpolation import resample_labels
from thinct.volume import Volume
from thinct.windows import WINDOWS
from thinct_napari._compare import SideBySide
from thinct_napari._controls import Ended, Hooks, RunControls
from thinct_napari._settings import EngineSettings, ModelCache, Settings
from thinct_napari.geometry import (
    image_from_layer,
    image_geometry,
    layer_attributes,
    layer_transform,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels


@dataclass(frozen=True)
class _Request:
    """What one run needs, taken from the layers on the main thread before it starts."""

    source: Image
    volume: Volume
    labels: list[tuple[Labels, sitk.Image]]
    settings: Settings


@dataclass(frozen=True)
class _Result:
    thin: Volume
    labels: list[tuple[Labels, sitk.Image]]


class UpsampleWidget(Container):
    """Pick an Image layer and how to make its thin slices; Run adds the thin layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.carry = Select(label="labels to carry", choices=self._labels_on_image_grid)
        self.settings = EngineSettings()
        self.controls = RunControls("Run", self.run)
        self.window = ComboBox(label="window", choices=list(WINDOWS), value="lung")
        self.compare = CheckBox(text="side by side (input | result)", value=False)
        self.carry.native.setMaximumHeight(80)  # a few names; it scrolls beyond
        super().__init__(
            widgets=[
                self.image,
                self.carry,
                *self.settings.widgets,
                *self.controls.widgets,
                self.window,
                self.compare,
            ]
        )
        self._models = ModelCache()
        # id(input layer) -> (input, its carried labels, its latest thin layers); an entry
        # holds its input, so the id stays unique until the input is removed and the entry
        # with it.
        self._results: dict[int, tuple[Image, list[Labels], list[Any]]] = {}
        self._side_by_side = SideBySide(napari_viewer)
        self.image.changed.connect(self.carry.reset_choices)
        self.window.changed.connect(self._apply_window)
        self.compare.changed.connect(self._toggle_compare)
        for event in ("inserted", "removed", "reordered"):
            getattr(napari_viewer.layers.events, event).connect(self._layers_changed)
        self._layers_changed()

    # --- choices ---------------------------------------------------------------------------

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _labels_on_image_grid(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        """Label layers that can follow the chosen image: same voxels, same world placement."""
        from napari.layers import Labels

        source = self.image.value
        if source is None:
            return []
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and _same_placement(layer, source)
        ]

    def _layers_changed(self, _event: Any = None) -> None:
        self._results = {
            key: entry for key, entry in self._results.items() if entry[0] in self.viewer.layers
        }
        self.reset_choices()
        if self.image.value is None and self.image.choices:
            self.image.value = self.image.choices[-1]  # the newest image: usually the one opened

    # --- running ---------------------------------------------------------------------------

    def run(self) -> None:
        """Start a run on the chosen image (the Run button)."""
        try:
            request = self._request()
        except ThinctError as error:
            self.controls.fail(str(error))
            return
        settings = request.settings
        status = f"{request.source.name}: {settings.made_by}, {settings.grid}..."
        self.controls.start(
            lambda hooks: self._upsample(request, hooks),
            lambda ended: self._add_result(request, ended),
            status,
        )

    def _request(self) -> _Request:
        source = self.image.value
        if source is None:
            raise UsageError("open a CT volume first (File > Open, or the thinct sample)")
        settings = self.settings.snapshot()
        image = image_from_layer(source.data, layer_attributes(source))
        check_volume(image, f"layer {source.name!r}")
        message = hounsfield_warning(image)
        if message:  # as the command line warns, and goes on
            show_warning(f"thinct: layer {source.name!r}: {message}")
        volume = Volume(image)
        labels = [
            (layer, image_from_layer(layer.data, layer_attributes(layer)))
            for layer in self.carry.value
        ]
        return _Request(source, volume, labels, settings)

    def _upsample(self, request: _Request, hooks: Hooks) -> _Result:
        """The background part: load the model (once per spec), predict, carry the labels."""
        settings = request.settings
        model = self._models.get(settings)
        thin = upsample_volume(
            request.volume,
            progress=hooks.progress,
            model=model,
            cancel=hooks.cancelled,
            **settings.file_options(),
        )
        grid = Grid.of(thin.image)
        labels = [(layer, resample_labels(image, grid)) for layer, image in request.labels]
        return _Result(thin, labels)

    def _add_result(self, request: _Request, ended: Ended) -> None:
        if not ended.ok:
            return
        result: _Result = ended.value
        settings, source = request.settings, request.source
        placement = layer_transform(result.thin.image)
        suffix = f"thin {settings.grid} {settings.made_by} ({settings.align})"
        window = WINDOWS[self.window.value]
        layers = [
            self.viewer.add_image(
                result.thin.array,
                name=f"{source.name} {suffix}",
                colormap="gray",
                contrast_limits=window.contrast_limits,
                metadata={"thinct": _provenance(settings)},
                **placement,
            )
        ]
        for labels, image in result.labels:
            layers.append(
                self.viewer.add_labels(
                    sitk.GetArrayFromImage(image), name=f"{labels.name} {suffix}", **placement
                )
            )
        if source in self.viewer.layers:  # not removed while the run went on
            self._results[id(source)] = (source, [label for label, _ in result.labels], layers)
        # The thin grid keeps the input's slice axis.
        thin = result.thin.image
        axis = slice_axis(request.volume.image.GetSpacing())
        count, spacing = thin.GetSize()[axis], thin.GetSpacing()[axis]
        pixels = " x ".join(str(n) for i, n in enumerate(thin.GetSize()) if i != axis)
        self.controls.report(
            f"added {layers[0].name}: {count} slices, {spacing:g} mm, {pixels} pixels"
        )

    # --- display ---------------------------------------------------------------------------

    def _apply_window(self) -> None:
        """The chosen CT window on the input image and the thin images made from it."""
        source = self.image.value
        if source is None:
            return
        limits = WINDOWS[self.window.value].contrast_limits
        thin = self._results.get(id(source), (None, [], []))[2][:1]
        for layer in [source, *thin]:
            layer.contrast_limits = limits

    def _toggle_compare(self, on: bool) -> None:
        if not on:
            self._side_by_side.stop()
            return
        source = self.image.value
        entry = self._results.get(id(source)) if source is not None else None
        if entry is None or any(
            layer not in self.viewer.layers for layer in [*entry[1], *entry[2]]
        ):
            self.controls.fail("run on this image first: side by side shows input and result")
            self.compare.value = False
            return
        source, labels, thin_layers = entry
        self._side_by_side.start([source, *labels], thin_layers)


def _same_placement(first: Any, second: Any) -> bool:
    """The layers share one voxel grid: the same shape, and the same place in the world as
    `thinct.geometry.grid_difference` judges grids."""
    if first.data.shape != second.data.shape:
        return False
    try:
        grids = [_grid(layer) for layer in (first, second)]
    except GeometryError:  # a sheared layer is on no grid a volume can have
        return False
    return grid_difference(*grids) is None


def _grid(layer: Any) -> Grid:
    spacing, origin, direction = image_geometry(layer_attributes(layer))
    return Grid(tuple(layer.data.shape[::-1]), spacing, origin, direction)


def _provenance(settings: Settings) -> dict[str, Any]:
    """Kept in the result layer's metadata: how these synthetic slices were made."""
    from thinct._version import __version__

    return {
        "version": __version__,
        "made_by": settings.made_by,
        "spacing": settings.spacing,
        "factor": settings.factor,
        "align": settings.align,
        "in_plane": settings.in_plane,
    }
