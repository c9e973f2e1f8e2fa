"""Topology of the vessel tree: clDice and the component count on synthetic vessels whose
answer is known, the slab a score looks at, and the ordering on the real example crop."""

from __future__ import annotations

import numpy as np
import pytest

from thinct.data.cases import simulated_case
from thinct.errors import GeometryError
from thinct.evaluate import topology
from thinct.io import read_volume
from thinct.resample.interpolation import interpolate

LUNG_HU, VESSEL_HU = -850.0, 40.0


def _vessel_volume(gap: slice | None = None) -> np.ndarray:
    """A 1 mm grid of lung with a vessel of 4 mm across running along the columns (all but
    the outer 6), optionally with a ``gap`` of columns where it is missing."""
    z, y, x = np.mgrid[0:26, 0:48, 0:64]
    volume = np.full(z.shape, LUNG_HU, dtype=np.float32)
    vessel = ((z - 13) ** 2 + (y - 24) ** 2 <= 4) & (x >= 6) & (x < 58)
    volume[vessel] = VESSEL_HU
    if gap is not None:
        volume[:, :, gap] = LUNG_HU
    return volume


def _tree(volume: np.ndarray) -> topology.VesselTree:
    return topology.vessel_tree(topology.structure_map(volume), voxel_mm3=1.0)


def test_identical_vessel_trees_score_one_and_no_component_difference():
    volume = _vessel_volume()
    assert topology.topology_scores(volume, volume.copy(), voxel_mm3=1.0) == (1.0, 0)
    tree = _tree(volume[5:-5])
    assert tree.components == 1
    assert tree.skeleton.any() and np.all(tree.mask[tree.skeleton])


def test_a_broken_vessel_lowers_cldice_and_adds_a_component():
    reference = _vessel_volume()
    broken = _vessel_volume(gap=slice(28, 36))
    cldice, component_diff = topology.topology_scores(broken, reference, voxel_mm3=1.0)
    assert component_diff == 1  # one vessel became two pieces
    # Precision stays 1 (the pieces lie inside the reference's vessel); sensitivity loses
    # the skeleton across the gap.
    assert 0.8 < cldice < 1.0
    # A vessel lost altogether: no tree left, clDice 0 and one component fewer.
    lost = np.full_like(reference, LUNG_HU)
    assert topology.topology_scores(lost, reference, voxel_mm3=1.0) == (0.0, -1)


def test_cldice_is_nan_without_reference_vessels():
    lung = np.full((26, 48, 48), LUNG_HU, dtype=np.float32)
    cldice, component_diff = topology.topology_scores(_vessel_volume()[:, :, :48], lung, 1.0)
    assert np.isnan(cldice) and component_diff == 1


def test_specks_below_the_minimum_size_are_not_components():
    structure = np.zeros((8, 40, 40), dtype=np.float32)
    structure[2:6, 10:30, 18:21] = 0.9  # 240 voxels: a piece of vessel
    structure[4, 35, 35] = 1.0  # a single voxel: a noise speck
    structure[0, 0, 0] = topology.THRESHOLD  # at the threshold: not above it
    tree = topology.vessel_tree(structure, voxel_mm3=0.5)
    assert tree.components == 1
    assert tree.mask.sum() == 240 and not tree.mask[4, 35, 35]
    # With voxels of 0.02 mm^3 the piece itself is a speck (4.8 mm^3).
    assert topology.vessel_tree(structure, voxel_mm3=0.02).components == 0
    # Diagonal neighbours join (26-connectivity): three voxels of half the minimum size
    # each are one component big enough to count.
    diagonal = np.zeros((3, 3, 3), dtype=np.float32)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = diagonal[2, 2, 2] = 1.0
    assert topology.vessel_tree(diagonal, voxel_mm3=topology.MIN_COMPONENT_MM3 / 2).components == 1


def test_the_slab_is_the_middle_of_the_counted_slices():
    assert topology.topology_slab(20) == slice(5, 15)
    assert topology.topology_slab(300) == slice(142, 158)
    assert topology.topology_slab(300, most=4) == slice(148, 152)
    with pytest.raises(GeometryError, match="leave nothing"):
        topology.topology_slab(10)
    with pytest.raises(GeometryError, match="differ"):
        topology.cldice(_tree(np.zeros((4, 8, 8))), _tree(np.zeros((4, 8, 9))))


def test_bspline_keeps_the_vessel_tree_better_than_linear_on_the_real_crop(example_thin):
    volume = read_volume(example_thin)
    case = simulated_case(volume, "example")
    reference = case.reference_array()
    voxel_mm3 = float(np.prod(volume.image.GetSpacing()[:2])) * case.grid.spacing
    scores = {
        method: topology.topology_scores(
            case.slices_first(interpolate(case.thick, case.grid, method)), reference, voxel_mm3
        )
        for method in ("nearest", "linear", "bspline")
    }
    assert 0.5 < scores["linear"][0] < scores["bspline"][0] < 0.9
    # Nearest neighbour repeats each thick slice: the tree falls apart at every slab border.
    assert scores["nearest"][1] > max(scores["linear"][1], scores["bspline"][1])
