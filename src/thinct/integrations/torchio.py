"""`ThinSlices`: thick-slice CT to thin slices as a TorchIO transform.

Pipelines built on TorchIO (segmentation or detection training, preprocessing for a model
that wants thin input) get thinct's models as one more step of a ``tio.Compose``. Scalar images
go through a model (or an interpolation baseline); label maps are resampled with nearest
neighbour onto the same thin grid, so masks stay aligned with the images they annotate.

The transform follows TorchIO's conventions: ``include``/``exclude`` choose images, every call
is recorded in the subject's history with arguments that replay it, and it is invertible. The
inverse returns each image to the thick grid it came from (intensities averaged over each
slab, labels by majority), which brings a segmentation predicted on thin slices back to the
original scan (pixels refined in-plane are averaged back as well). For that, the history
records each image's thick grid.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk
import torchio as tio
from torchio.data.io import nib_to_sitk, sitk_to_nib

from thinct.errors import GeometryError, ThinctWarning, UsageError
from thinct.geometry import ALIGNMENTS, Grid, check_target_options, grid_difference, thin_grid
from thinct.inference.options import InferenceOptions
from thinct.io import hounsfield_warning
from thinct.pipeline import upsample_volume
from thinct.resample.interpolation import METHODS
from thinct.resample.thicken import thicken
from thinct.volume import Volume

if TYPE_CHECKING:
    from torch import nn

_DEFAULTS = InferenceOptions()


class ThinSlices(tio.SpatialTransform):
    """Make thin slices from thick ones: ScalarImages through a model, LabelMaps by nearest
    neighbour onto the identical grid.

    Args:
        model: What predicts the slices: ``None`` for thinct's default model, a registered
            name, a model folder, an ``hf://owner/repo@revision`` Hub model, or a loaded
            ``nn.Module``. Loaded on first use, once per process (DataLoader workers each
            load their own). A spec string keeps the subject's history light and replayable.
        spacing: Thin slice spacing in mm (ignored when ``factor`` is given).
        factor: Thin slices per thick slice, instead of ``spacing``.
        align: ``edges`` covers the whole extent of the thick slabs, ``centers`` runs from the
            first thick slice centre to the last.
        in_plane: Also refine the pixels this many times along each in-plane axis, over the
            same field of view (1 to 8; after a regression model, by B-spline; labels by nearest
            neighbour). With it, ``factor=1`` keeps the slices.
        in_plane_spacing: Refine the pixels to this in-plane spacing in mm instead.
        method: An interpolation (``nearest``, ``linear``, ``bspline``, ``lanczos``) instead of
            a model.
        device, precision, tile, tile_overlap, z_overlap, batch_size: The sliding-window
            engine's options (see `thinct.InferenceOptions`).
        source_grids: Filled by the transform: the thick grid of every image it made thin,
            which the inverse returns to. Leave it empty.
        **kwargs: TorchIO's transform arguments (``include``, ``exclude``, ``p``, ...).

    ScalarImages must hold HU (put ThinSlices before any intensity normalisation); a
    ThinctWarning says so when they do not look like CT.
    """

    def __init__(
        self,
        model: str | Path | nn.Module | None = None,
        spacing: float | None = 1.0,
        factor: int | None = None,
        align: str = "edges",
        in_plane: int | None = None,
        in_plane_spacing: float | None = None,
        method: str | None = None,
        device: str = _DEFAULTS.device,
        precision: str = _DEFAULTS.precision,
        tile: int = _DEFAULTS.tile,
        tile_overlap: int = _DEFAULTS.tile_overlap,
        z_overlap: int = _DEFAULTS.z_overlap,
        batch_size: int = _DEFAULTS.batch_size,
        source_grids: dict[str, dict[str, list[float]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.spacing = None if factor is not None else spacing
        self.factor = factor
        self.align = align
        self.in_plane, self.in_plane_spacing = in_plane, in_plane_spacing
        self.method = method
        self.device, self.precision = device, precision
        self.tile, self.tile_overlap = tile, tile_overlap
        self.z_overlap, self.batch_size = z_overlap, batch_size
        self._given_grids = dict(source_grids or {})
        self._per_thread = threading.local()
        self.invert_transform = False
        self.args_names = [
            "model", "spacing", "factor", "align", "in_plane", "in_plane_spacing", "method",
            "device", "precision", "tile", "tile_overlap", "z_overlap", "batch_size",
            "source_grids",
        ]  # fmt: skip
        self._check_arguments()
        self._loaded: nn.Module | None = None

    def _check_arguments(self) -> None:
        """Refuse what can never work when the transform is built, not deep inside a
        DataLoader worker on the first subject."""
        check_target_options(self.spacing, self.factor, self.in_plane, self.in_plane_spacing)
        if self.align not in ALIGNMENTS:
            raise UsageError(f"align must be one of {', '.join(ALIGNMENTS)}, got {self.align!r}")
        if self.method is not None:
            if self.method not in METHODS:
                raise UsageError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
            if self.model is not None:
                raise UsageError("give either a model or a method, not both")
        from thinct.inference.engine import check_options

        check_options(self.options)

    @property
    def options(self) -> InferenceOptions:
        return InferenceOptions(
            z_overlap=self.z_overlap,
            tile=self.tile,
            tile_overlap=self.tile_overlap,
            batch_size=self.batch_size,
            device=self.device,
            precision=self.precision,
        )

    @property
    def source_grids(self) -> dict[str, dict[str, list[float]]]:
        """The thick grids of the subject this thread transformed last (what TorchIO records
        in that subject's history), or those given to the constructor. Kept per thread, so
        threads sharing one transform (a thread pool of a cached dataset) never record each
        other's grids."""
        return getattr(self._per_thread, "grids", self._given_grids)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles (DataLoader workers, the inverse) leave the loaded model behind
        (each process loads its own, once) and keep the grids this thread recorded."""
        state = self.__dict__.copy()
        state["_loaded"] = None
        state["_given_grids"] = self.source_grids
        del state["_per_thread"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._per_thread = threading.local()

    def _network(self) -> nn.Module:
        if self._loaded is None:
            from torch import nn

            from thinct.inference.engine import check_options
            from thinct.models import load_model

            model = self.model
            self._loaded = model if isinstance(model, nn.Module) else load_model(model)
            check_options(self.options, self._loaded.config.slices)
        return self._loaded

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        images = subject.get_images_dict(
            intensity_only=False, include=self.include, exclude=self.exclude
        )
        if self.invert_transform:
            for name, image in images.items():
                self._restore_thick(name, image)
            return subject
        grids = {}
        for name, image in images.items():
            grids[name] = self._make_thin(name, image)
        # A new dict, not an update: the history of earlier subjects keeps its own grids.
        self._per_thread.grids = grids
        return subject

    def _make_thin(self, name: str, image: tio.Image) -> dict[str, list[float]]:
        """Replace the image's voxels and affine with their thin version; returns the thick
        grid it had."""
        labels = isinstance(image, tio.LabelMap)
        channels, grid = [], None
        for channel in image.data:
            thick = nib_to_sitk(channel[None], image.affine, force_3d=True)
            grid = Grid.of(thick)
            channels.append(self._thin_channel(Volume(thick), labels, name))
        data = np.concatenate([sitk_to_nib(c)[0] for c in channels])
        if labels:
            data = data.astype(image.data.numpy().dtype)
        image.set_data(data)
        image.affine = sitk_to_nib(channels[0])[1]
        return grid.to_record()

    def _thin_channel(self, volume: Volume, labels: bool, name: str) -> sitk.Image:
        """One channel through `thinct.upsample_volume`: labels by nearest neighbour, images
        by the method or the model."""
        if not labels:
            message = hounsfield_warning(volume.image)
            if message:
                warnings.warn(f"image {name!r}: {message}", ThinctWarning, stacklevel=4)
        method = "nearest" if labels else self.method
        try:
            return upsample_volume(
                volume,
                method=method or "bspline",
                spacing=self.spacing,
                factor=self.factor,
                align=self.align,
                model=None if method is not None else self._network(),
                options=self.options,
                in_plane=self.in_plane,
                in_plane_spacing=self.in_plane_spacing,
            ).image
        except GeometryError as error:
            raise GeometryError(f"image {name!r}: {error}") from None

    def _restore_thick(self, name: str, image: tio.Image) -> None:
        grid = self._thick_grid_of(name, image)
        labels = isinstance(image, tio.LabelMap)
        channels = [
            thicken(nib_to_sitk(channel[None], image.affine, force_3d=True), grid, labels=labels)
            for channel in image.data
        ]
        data = np.concatenate([sitk_to_nib(c)[0] for c in channels])
        image.set_data(data.astype(image.data.numpy().dtype) if labels else data)
        image.affine = sitk_to_nib(channels[0])[1]

    def _thick_grid_of(self, name: str, image: tio.Image) -> Grid:
        """The thick grid an image returns to: its own record, or, for an image added after
        the transform (a prediction on the thin grid), the grid of the recorded image whose
        thin grid it shares."""
        grids = {key: Grid.from_record(record) for key, record in self.source_grids.items()}
        if name in grids:
            return grids[name]
        here = Grid.of(nib_to_sitk(image.data[:1], image.affine, force_3d=True))
        for grid in grids.values():
            thin = thin_grid(
                grid, self.spacing, self.factor, self.align, self.in_plane, self.in_plane_spacing
            )
            if grid_difference(thin.output, here) is None:
                return grid
        raise UsageError(
            f"image {name!r} was not made thin by this ThinSlices and does not share the thin "
            "grid of an image it made; there is no thick grid to return it to"
        )


__all__ = ["ThinSlices"]
