"""The operator's surrogate: its shipped weights load (their sha256 checked), it is frozen
but passes gradients to its input, and its maps follow the operator's on real CT slices it
never trained on, within the bounds measured when it was trained (docs/structure.md)."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest
import torch
from helpers.paths import EXAMPLES, shared_scan

from thinct.errors import InputError
from thinct.io import read_volume
from thinct.structure import StructureSurrogate, enhance, load_surrogate, lung_window, surrogate
from thinct.structure.surrogate import WEIGHTS_FILE, WEIGHTS_SHA256, fidelity


@pytest.fixture(scope="module")
def model() -> StructureSurrogate:
    return load_surrogate()


def test_the_shipped_weights_are_checked_small_and_frozen(model):
    data = resources.files("thinct.structure").joinpath(WEIGHTS_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == WEIGHTS_SHA256
    assert len(data) < 50_000
    assert 1000 < sum(p.numel() for p in model.parameters()) < 10_000
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_damaged_weights_are_refused(monkeypatch):
    monkeypatch.setattr(surrogate, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(InputError, match="surrogate.safetensors is damaged"):
        load_surrogate()


def test_planes_keep_their_shape_and_gradients_reach_the_input(model):
    for shape in [(2, 3, 40, 36), (1, 1), (5, 7)]:
        planes = torch.rand(shape, requires_grad=True)
        maps = model(planes)
        assert maps.shape == planes.shape
        maps.sum().backward()
        assert torch.isfinite(planes.grad).all() and planes.grad.abs().max() > 0
    assert all(p.grad is None for p in model.parameters())


def _assert_faithful(
    model: StructureSurrogate, planes: np.ndarray, correlation: float, relative_l1: float
) -> None:
    """The surrogate's maps correlate at least ``correlation`` with the operator's and
    differ by at most ``relative_l1`` of their mass: the shipped weights' measurements
    (thinct.structure.surrogate) with a margin."""
    with torch.no_grad():
        approximate = model(torch.from_numpy(planes))
    reference = torch.from_numpy(np.stack([enhance(plane) for plane in planes]))
    measured = fidelity(approximate, reference)
    assert measured[0] >= correlation and measured[1] <= relative_l1, measured


def test_maps_follow_the_operator_on_the_example_crop(model):
    # The chest scan's slices that hold this crop were kept out of the surrogate's training.
    lung = lung_window(read_volume(EXAMPLES / "lidc0002_crop_1.25mm.nii.gz").array)
    axial = np.ascontiguousarray(lung[4::8])  # 8 planes of 192 x 192
    coronal = np.ascontiguousarray(lung[:, 12::24].transpose(1, 0, 2))  # 8 of 64 x 192
    _assert_faithful(model, axial, correlation=0.93, relative_l1=0.40)  # measured 0.961, 0.32
    _assert_faithful(model, coronal, correlation=0.93, relative_l1=0.40)  # 0.959, 0.32


@pytest.mark.slow
def test_maps_follow_the_operator_on_another_patients_scan(model):
    # A real 5 mm chest scan of another patient and scanner: its axial slices are ordinary
    # 0.57 mm images, and the surrogate never saw them.
    hu = read_volume(shared_scan("pyradiomics_lung1_5mm.nii.gz")).array
    planes = np.ascontiguousarray(lung_window(hu[12:40:4]))
    _assert_faithful(model, planes, correlation=0.92, relative_l1=0.50)  # measured 0.943, 0.42
