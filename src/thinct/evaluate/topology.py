"""Topology of the vessel tree: does an output keep the reference's vessels whole and joined?

PSNR and even vesselness differences say how far an output is from the reference, not
whether a vessel that runs on in the reference breaks into pieces in the output (or two that
are apart merge). Topology-preserving CT super-resolution (Chu et al., MICCAI 2023) asks for
exactly that; thinct measures it on the vessel tree of a slab of each case:

- the vessel tree: the map of the imaging enhancement operator (`thinct.structure`, about 1
  on an ideal bright tube, 0 where nothing is bright and curved) of each axial slice in the
  lung window, stacked into 3D and thresholded at `THRESHOLD`; then 3D connected components
  with full 26-connectivity (oblique vessels touch their next slice diagonally), of which
  those smaller than `MIN_COMPONENT_MM3` are dropped in both volumes: at that size they are
  noise specks, which a thin slice has many of and any smoothing removes;
- `cldice`: the centreline Dice of the two trees (Shit et al., CVPR 2021), with 3D
  skeletons by scikit-image: topology precision is the fraction of the output's skeleton
  inside the reference's tree, topology sensitivity the fraction of the reference's skeleton
  inside the output's tree, and clDice their harmonic mean. 1 for identical trees, lower as
  vessels are broken, lost or invented; NaN when the reference has no vessels;
- `component_diff`: the output's number of components minus the reference's. Above 0: the
  output's tree falls apart into more pieces (broken vessels, or spurious fragments); below
  0: pieces are lost or merged. 0 is best; it depends on the slab's size, so compare methods
  on the same cases.

The slab is `SLAB_SLICES` contiguous slices in the middle of the counted slices (the end
slices are left out as for the other metrics; a shorter case is used whole): contiguous, so
that continuity across slices counts, and bounded, because the operator is the expensive
part (about half a CPU-second per 512 x 512 slice: some 8 s per method on a whole scan).
torch loads on first use (the operator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from thinct.errors import GeometryError
from thinct.evaluate import metrics

# Chosen on real chest CT slices: above it the tree holds the small vessels whole; higher
# thresholds break them into pieces, lower ones add little but specks of noise.
THRESHOLD = 0.15
MIN_COMPONENT_MM3 = 10.0  # about 13 mm of a 1 mm vessel
SLAB_SLICES = 16
# 26-connectivity: voxels that share a face, an edge or a corner are joined.
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def topology_slab(count: int, exclude: int = metrics.EDGE_SLICES, most: int = SLAB_SLICES) -> slice:
    """The contiguous slices a topology score looks at: the middle ``most`` of those between
    the ``exclude`` slices at each end, or all of them when there are fewer."""
    if count <= 2 * exclude:
        raise GeometryError(f"{count} slices leave nothing once {exclude} are left out at each end")
    kept = count - 2 * exclude
    start = exclude + max(0, (kept - most) // 2)
    return slice(start, start + min(kept, most))


def structure_map(hu_slices: np.ndarray) -> np.ndarray:
    """The operator's map of each axial slice of a (slices, rows, columns) HU stack."""
    from thinct.structure import enhance_volume, lung_window

    return enhance_volume(lung_window(hu_slices), axis=0)


@dataclass(frozen=True)
class VesselTree:
    """A thresholded structure map without its specks: the voxels, their 3D skeleton and
    the number of connected components."""

    mask: np.ndarray
    skeleton: np.ndarray
    components: int


def vessel_tree(structure: np.ndarray, voxel_mm3: float) -> VesselTree:
    """The vessel tree of a 3D structure map whose voxels hold ``voxel_mm3`` mm^3 each."""
    from skimage.morphology import skeletonize

    if structure.ndim != 3:
        raise GeometryError(f"a vessel tree needs a 3D map, got shape {structure.shape}")
    if not (np.isfinite(voxel_mm3) and voxel_mm3 > 0):
        raise GeometryError(f"voxel volume must be a positive number of mm^3, got {voxel_mm3}")
    labels, count = ndimage.label(structure > THRESHOLD, _CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    kept = sizes * voxel_mm3 >= MIN_COMPONENT_MM3
    kept[0] = False
    mask = kept[labels]
    return VesselTree(mask, skeletonize(mask), int(kept.sum()))


def cldice(output: VesselTree, reference: VesselTree) -> float:
    """Centreline Dice of two vessel trees (1 for identical ones, NaN without reference
    vessels)."""
    if output.mask.shape != reference.mask.shape:
        raise GeometryError(f"vessel trees {output.mask.shape} and {reference.mask.shape} differ")
    reference_length = int(reference.skeleton.sum())
    if reference_length == 0:
        return float("nan")
    output_length = int(output.skeleton.sum())
    precision = (
        np.count_nonzero(output.skeleton & reference.mask) / output_length if output_length else 0.0
    )
    sensitivity = np.count_nonzero(reference.skeleton & output.mask) / reference_length
    if precision + sensitivity == 0:
        return 0.0
    return float(2 * precision * sensitivity / (precision + sensitivity))


def topology_scores(
    output: np.ndarray,
    reference: np.ndarray,
    voxel_mm3: float,
    exclude: int = metrics.EDGE_SLICES,
    most: int = SLAB_SLICES,
) -> tuple[float, int]:
    """(clDice, component_diff) of two (slices, rows, columns) HU volumes on the same grid,
    on `topology_slab`."""
    metrics.trimmed(output, reference, exclude)
    slab = topology_slab(output.shape[0], exclude, most)
    mine = vessel_tree(structure_map(output[slab]), voxel_mm3)
    theirs = vessel_tree(structure_map(reference[slab]), voxel_mm3)
    return cldice(mine, theirs), mine.components - theirs.components
