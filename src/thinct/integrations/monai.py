"""`ThinSlicesd`: thick-slice CT to thin slices as a MONAI dictionary transform.

MONAI pipelines (``LoadImaged`` -> ... -> a network) get thinct's models as one more step of a
``Compose``. The work is done by `thinct.integrations.torchio.ThinSlices`, the TorchIO
transform, so both front ends make identical voxels: each MetaTensor becomes a TorchIO image
with its affine in RAS (TorchIO's convention; MONAI's too unless ``meta["space"]`` says LPS),
and comes back as a MetaTensor on the thin grid with its other metadata kept.

The transform is invertible in MONAI's sense: it records each image's thick grid in its
``applied_operations``, and ``inverse`` (directly, through ``Compose.inverse`` or ``Invertd``)
returns an image on the thin grid to that thick grid, with slab averages (``mode="area"``) or,
for labels, the majority label of each slab (``mode="nearest"``, which ``Invertd``'s
``nearest_interp`` also selects).

Needs the optional extra ``thinct[monai]``; ``import thinct`` never imports MONAI.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchio as tio
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import MetaKeys, SpaceKeys, TraceKeys, convert_to_numpy, ensure_tuple
from torchio.data.io import get_sitk_metadata_from_ras_affine

from thinct.errors import UsageError
from thinct.geometry import Grid
from thinct.inference.options import InferenceOptions
from thinct.integrations.torchio import ThinSlices

if TYPE_CHECKING:
    from torch import nn

_DEFAULTS = InferenceOptions()
# Flipping x and y turns an LPS affine into a RAS one and back (the matrix is its own inverse).
_FLIP_XY = np.diag([-1.0, -1.0, 1.0, 1.0])
# The interpolation modes recorded for the inverse, in MONAI's vocabulary: "area" averages the
# thin slices of each slab, "nearest" takes the majority label (Invertd's nearest_interp
# switches any recorded mode to "nearest").
_AVERAGE, _MAJORITY = "area", "nearest"


class ThinSlicesd(MapTransform, InvertibleTransform):
    """Make thin slices from thick ones for the MetaTensors under ``keys``: images through a
    model (or an interpolation), ``label_keys`` by nearest neighbour onto the identical grid.

    Args:
        keys: The images to make thin: channel-first 3D MetaTensors ``(C, X, Y, Z)`` with an
            affine, as ``LoadImaged(..., ensure_channel_first=True)`` makes them.
        label_keys: Keys that hold labels (nearest neighbour, dtype kept); a label key missing
            from ``keys`` is added to them.
        model, spacing, factor, align, in_plane, in_plane_spacing, method, device, precision,
            tile, tile_overlap, z_overlap, batch_size: As for
            `thinct.integrations.torchio.ThinSlices`. The model loads on the first image,
            once per process (each DataLoader worker loads its own).
        allow_missing_keys: Skip keys that a data dictionary lacks instead of raising.

    Images must hold HU: put ThinSlicesd before any intensity scaling. Being deterministic, it
    is cached by ``CacheDataset`` and ``PersistentDataset``, so the model runs once per scan.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
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
        allow_missing_keys: bool = False,
    ) -> None:
        labels = ensure_tuple(label_keys)
        images = ensure_tuple(keys)
        super().__init__(images + tuple(k for k in labels if k not in images), allow_missing_keys)
        self.label_keys = frozenset(labels)
        self.thin_slices = ThinSlices(
            model=model,
            spacing=spacing,
            factor=factor,
            align=align,
            in_plane=in_plane,
            in_plane_spacing=in_plane_spacing,
            method=method,
            device=device,
            precision=precision,
            tile=tile,
            tile_overlap=tile_overlap,
            z_overlap=z_overlap,
            batch_size=batch_size,
            copy=False,  # the subject is built for one call and thrown away
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        subject = tio.Subject(
            {str(key): _to_torchio(key, d[key], key in self.label_keys) for key in keys}
        )
        thin = self.thin_slices(subject)
        for key in keys:
            thick = d[key]
            d[key] = _to_meta_tensor(thin[str(key)], thick)
            self.push_transform(
                d[key],
                orig_size=tuple(thick.shape[1:]),
                extra_info={
                    "mode": _MAJORITY if key in self.label_keys else _AVERAGE,
                    "thick_grid": _grid_record(tuple(thick.shape[1:]), _ras_affine(key, thick)),
                },
            )
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return each image to the thick grid recorded when it was made thin: slab averages,
        or majority labels where the recorded mode is ``nearest``."""
        d = dict(data)
        for key in self.key_iterator(d):
            info = self.pop_transform(d, key)[TraceKeys.EXTRA_INFO]
            labels = info["mode"] == _MAJORITY
            name = str(key)
            subject = tio.Subject({name: _to_torchio(key, d[key], labels)})
            restore = ThinSlices(source_grids={name: info["thick_grid"]}, copy=False).inverse()
            d[key] = _to_meta_tensor(restore(subject)[name], d[key])
        return d


def _ras_affine(key: Hashable, image: MetaTensor) -> np.ndarray:
    """The image's affine in RAS, whichever space its metadata says it is in."""
    affine = image.affine.detach().cpu().numpy().astype(np.float64)
    space = str(image.meta.get(MetaKeys.SPACE, SpaceKeys.RAS))
    if space == SpaceKeys.LPS:
        return _FLIP_XY @ affine
    if space != SpaceKeys.RAS:
        raise UsageError(f"{key!r}: unknown space {space!r} in the metadata (RAS or LPS)")
    return affine


def _to_torchio(key: Hashable, image: Any, labels: bool) -> tio.Image:
    """The MetaTensor as a TorchIO image (on the CPU) with its RAS affine."""
    if not isinstance(image, MetaTensor) or image.ndim != 4 or image.is_batch:
        shape = tuple(getattr(image, "shape", ()))
        raise UsageError(
            f"{key!r}: ThinSlicesd needs one channel-first 3D MetaTensor (C, X, Y, Z) with an "
            f"affine, as LoadImaged(..., ensure_channel_first=True) makes; got "
            f"{type(image).__name__} of shape {shape}"
        )
    kind = tio.LabelMap if labels else tio.ScalarImage
    return kind(tensor=image.as_tensor().detach().cpu(), affine=_ras_affine(key, image))


def _to_meta_tensor(image: tio.Image, like: MetaTensor) -> MetaTensor:
    """``image`` as a MetaTensor with ``like``'s metadata and device, and its own affine in
    ``like``'s space.

    ``original_affine`` and ``spatial_shape`` keep describing the file as loaded, as after
    MONAI's own ``Spacingd``: ``SaveImage(resample=True)`` relies on the pair. A NIfTI header's
    ``pixdim`` follows the new affine, as MONAI's spatial transforms keep it.
    """
    result = MetaTensor(image.data.to(like.device))
    result.copy_meta_from(like)  # a new dict, its values shared with ``like``'s
    affine = image.affine
    if str(like.meta.get(MetaKeys.SPACE, SpaceKeys.RAS)) == SpaceKeys.LPS:
        affine = _FLIP_XY @ affine
    result.affine = torch.as_tensor(affine, dtype=torch.float64)
    if MetaKeys.PIXDIM in result.meta:  # a new array: the metadata's values are shared
        pixdim = convert_to_numpy(result.meta[MetaKeys.PIXDIM]).copy()  # tensors after collate
        pixdim[1:4] = affine_to_spacing(result.affine, r=3).numpy()
        result.meta[MetaKeys.PIXDIM] = pixdim
    return result


def _grid_record(size: tuple[int, ...], ras_affine: np.ndarray) -> dict[str, list[float]]:
    """The thick grid in the form `ThinSlices` keeps in ``source_grids`` (SimpleITK's LPS
    origin, spacing and direction), computed here rather than read from the transform so that
    threads sharing one ThinSlicesd (CacheDataset's) cannot swap records."""
    origin, spacing, direction = get_sitk_metadata_from_ras_affine(ras_affine)
    return Grid.from_values(size, spacing, origin, direction).to_record()


__all__ = ["ThinSlicesd"]
