"""Scan geometry <-> napari layer transforms, so layers overlay in the scan's own world.

Convention: a layer's world coordinates are the scan's physical coordinates (ITK's LPS, mm),
listed in napari's axis order (z, y, x). The layer data is the SimpleITK array, whose axes
are (z, y, x) = index (k, j, i), so both the data and the world axes are ITK's reversed.

napari maps data to world as ``affine @ (rotate @ shear @ diag(scale) @ d + translate)``.
A scan's voxel ``d`` lies at ``direction @ (spacing * d) + origin`` (all in (z, y, x)), which
this module writes as ``scale = spacing``, ``translate = origin`` and ``affine`` = the
direction matrix as a rotation about the origin. An axis-aligned scan (identity direction,
most CT) thus gets an identity affine, and layers placed with only scale and translate (as
other plugins and napari's own "new labels" do) line up with it. Flipped and oblique scans
keep positive scales; their direction lives in the affine. Two layers from scans with the
same direction (a thick scan and its thin version) differ only in scale and translate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import SimpleITK as sitk
from napari.layers import Layer
from napari.utils.transforms import Affine

from thinct.errors import GeometryError, InputError

# Reverses the axis order: ITK's (x, y, z) <-> napari's (z, y, x).
_REVERSE = np.eye(3)[::-1]
# Composing napari's transform and taking it apart again adds round-off; where the result is
# this close to the layer's own scale (relative), translate (mm) or affine entry, that exact
# value is kept, so reading a scan and writing its layer keeps the geometry bit for bit. It is
# above float32 precision because NIfTI stores directions as float32, orthonormal only to ~1e-7.
_ROUND_OFF = 1e-6
# A direction whose columns are further than this from orthonormal is a sheared layer, which
# no volume file can describe.
_ORTHONORMAL_TOLERANCE = 1e-6


def layer_transform(image: sitk.Image) -> dict[str, Any]:
    """``scale``, ``translate`` and ``affine`` keyword arguments for a napari layer whose data
    is ``sitk.GetArrayFromImage(image)``, placing it at the scan's physical coordinates."""
    _check_3d(image.GetDimension())
    spacing = np.asarray(image.GetSpacing(), dtype=float)[::-1]
    origin = np.asarray(image.GetOrigin(), dtype=float)[::-1]
    direction = _REVERSE @ np.asarray(image.GetDirection(), dtype=float).reshape(3, 3) @ _REVERSE
    affine = np.eye(4)
    affine[:3, :3] = direction
    # A rotation about the origin: the origin voxel stays where `translate` puts it.
    affine[:3, 3] = origin - direction @ origin
    return {"scale": tuple(spacing), "translate": tuple(origin), "affine": affine}


def data_to_world(transform: Mapping[str, Any]) -> np.ndarray:
    """The 4 x 4 homogeneous data-to-world matrix of layer ``transform`` keywords or of a
    layer's state (``scale``, ``translate``, and optionally ``rotate``, ``shear``, ``affine``),
    composed the way napari composes them."""
    physical = Affine(
        scale=transform["scale"],
        translate=transform["translate"],
        rotate=transform.get("rotate"),
        shear=transform.get("shear"),
    ).affine_matrix
    return _affine_matrix(transform) @ physical


def image_geometry(transform: Mapping[str, Any]) -> tuple[tuple[float, ...], ...]:
    """ITK ``(spacing, origin, direction)`` (x, y, z order, direction row-major) of a 3D layer
    with these transform keywords: the inverse of `layer_transform`.

    Any napari transform whose axes stay orthogonal works (a layer the user rotated or moved
    is written where it is shown); a sheared or skewed one raises `GeometryError`.
    """
    world = data_to_world(transform)
    _check_3d(world.shape[0] - 1)
    linear, offset = world[:3, :3], world[:3, 3]
    spacing = np.linalg.norm(linear, axis=0)
    if not np.all(spacing > 0):
        raise GeometryError("the layer's transform collapses an axis (a zero scale)")
    scale = np.asarray(transform["scale"], dtype=float)
    spacing = _exact(spacing, scale, _ROUND_OFF * scale)
    direction = _exact(linear / spacing, _affine_matrix(transform)[:3, :3], _ROUND_OFF)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=_ORTHONORMAL_TOLERANCE):
        raise GeometryError(
            "the layer is sheared or skewed; a volume file needs orthogonal axes "
            "(reset the layer's shear and affine to write it)"
        )
    offset = _exact(offset, np.asarray(transform["translate"], dtype=float), _ROUND_OFF)
    return (
        tuple(float(v) for v in spacing[::-1]),
        tuple(float(v) for v in offset[::-1]),
        tuple(float(v) for v in (_REVERSE @ direction @ _REVERSE).ravel()),
    )


def image_from_layer(data: Any, attributes: Mapping[str, Any]) -> sitk.Image:
    """A SimpleITK image of 3D layer ``data`` (z, y, x) placed by the layer's ``attributes``
    (its transform keywords; ``multiscale`` takes the full-resolution level, ``rgb`` is
    refused: colour is not a CT volume)."""
    if attributes.get("rgb"):
        raise InputError("an RGB layer is not a CT volume")
    array = _pixels(np.asarray(data[0] if attributes.get("multiscale") else data))
    _check_3d(array.ndim)
    spacing, origin, direction = image_geometry(attributes)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def layer_attributes(layer: Layer) -> dict[str, Any]:
    """What `image_from_layer` needs of a layer in the viewer: its transform (as the user may
    have moved it) and whether it is multiscale or RGB; the same keys napari gives a writer."""
    return {
        "scale": layer.scale,
        "translate": layer.translate,
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine,
        "multiscale": layer.multiscale,
        "rgb": getattr(layer, "rgb", False),
    }


def _pixels(array: np.ndarray) -> np.ndarray:
    """The layer's voxels in a type SimpleITK takes: masks (bool) as 0/1 bytes, half floats as
    float32; anything that is not real numbers (complex, strings, objects) is refused."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind not in "iuf":
        raise InputError(f"a layer of {array.dtype} values is not a volume of intensities")
    return array


def _affine_matrix(transform: Mapping[str, Any]) -> np.ndarray:
    affine = transform.get("affine")
    if affine is None:
        return np.eye(4)
    if isinstance(affine, Affine):
        return affine.affine_matrix
    return np.asarray(affine, dtype=float)


def _exact(composed: np.ndarray, own: np.ndarray, tolerance: Any) -> np.ndarray:
    """``own`` where ``composed`` differs from it only by round-off, else ``composed``."""
    return np.where(np.abs(composed - own) <= tolerance, own, composed)


def _check_3d(ndim: int) -> None:
    if ndim != 3:
        raise GeometryError(f"a {ndim}D layer; thinct works on 3D volumes")
