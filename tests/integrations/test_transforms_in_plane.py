"""`ThinSlices` (TorchIO) and `ThinSlicesd` (MONAI) with in-plane refinement: the voxels and
grid of `thinct.upsample_volume`, labels on the identical refined grid, a history that replays,
and an inverse that returns to the thick scan, pixels included."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torchio as tio
from helpers.paths import EXAMPLES

import thinct
from thinct.errors import UsageError
from thinct.integrations.torchio import ThinSlices

THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"


def _subject(size: int = 48) -> tio.Subject:
    """The central ``size`` x ``size`` pixels of the example 5 mm crop, with a lung mask."""
    cropped = tio.CropOrPad((size, size, 16))(tio.ScalarImage(THICK))
    ct = tio.ScalarImage(tensor=cropped.data, affine=cropped.affine)
    mask = tio.LabelMap(tensor=(ct.data < -400).to(torch.int16), affine=ct.affine)
    return tio.Subject(ct=ct, mask=mask)


@pytest.mark.parametrize("refine", [{"in_plane": 2}, {"in_plane_spacing": 0.3}])
def test_same_voxels_and_grid_as_upsample_volume(refine):
    subject = _subject()
    thick = subject.ct.as_sitk()
    result = ThinSlices(method="bspline", factor=5, **refine)(subject).ct.as_sitk()
    reference = thinct.upsample_volume(thinct.Volume(thick), "bspline", factor=5, **refine).image
    assert result.GetSize() == reference.GetSize()
    assert np.allclose(result.GetSpacing(), reference.GetSpacing())
    assert np.allclose(result.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    assert np.allclose(result.GetDirection(), reference.GetDirection())
    assert np.allclose(
        sitk.GetArrayViewFromImage(result), sitk.GetArrayViewFromImage(reference), atol=1e-3
    )


def test_labels_follow_onto_the_refined_grid_and_everything_inverts():
    """Nearest neighbour copies each thick voxel into its 5 x 2 x 2 thin voxels, so the inverse
    (box averages, majority labels) gives back the thick scan exactly."""
    original = _subject()
    thin = ThinSlices(method="nearest", factor=5, in_plane=2)(original)
    assert thin.ct.shape == thin.mask.shape == (1, 96, 96, 80)
    assert np.allclose(thin.mask.affine, thin.ct.affine)
    assert thin.mask.data.dtype == torch.int16
    ((_, arguments),) = thin.applied_transforms
    assert arguments["in_plane"] == 2 and arguments["in_plane_spacing"] is None
    replayed = thin.get_composed_history()(original)
    assert torch.equal(replayed.ct.data, thin.ct.data)
    back = thin.apply_inverse_transform()
    assert back.ct.shape == original.ct.shape
    assert np.allclose(back.ct.affine, original.ct.affine)
    assert torch.equal(back.mask.data, original.mask.data)
    assert torch.allclose(back.ct.data, original.ct.data.float(), atol=1e-2)


def test_a_prediction_on_the_refined_grid_inverts_with_its_image():
    thin = ThinSlices(method="linear", factor=1, in_plane=3)(_subject(32))
    assert thin.ct.shape == (1, 96, 96, 16)
    prediction = tio.LabelMap(tensor=(thin.ct.data < -400).to(torch.uint8), affine=thin.ct.affine)
    thin.add_image(prediction, "prediction")
    back = thin.apply_inverse_transform()
    assert back.prediction.shape == (1, 32, 32, 16)
    assert np.allclose(back.prediction.affine, back.ct.affine)


def test_bad_in_plane_arguments_are_refused():
    with pytest.raises(UsageError, match="in_plane must be a whole number from 1 to 8"):
        ThinSlices(method="linear", in_plane=0)
    with pytest.raises(UsageError, match="give either in_plane or in_plane_spacing"):
        ThinSlices(method="linear", in_plane=2, in_plane_spacing=0.3)
    with pytest.raises(UsageError, match="1 \\(the slices kept\\) needs in_plane"):
        ThinSlices(method="linear", factor=1)
    kept = ThinSlices(factor=1, in_plane=2)  # the model decides, once it is loaded
    with pytest.raises(UsageError, match="leaves a model nothing to predict"):
        kept(_subject(16))


def test_monai_passes_the_refinement_through():
    pytest.importorskip("monai")
    from monai.data import MetaTensor

    from thinct.integrations.monai import ThinSlicesd

    subject = _subject(32)
    image = MetaTensor(subject.ct.data, affine=torch.as_tensor(subject.ct.affine))
    transform = ThinSlicesd("ct", method="linear", factor=5, in_plane=2)
    thin = transform({"ct": image})
    assert tuple(thin["ct"].shape) == (1, 64, 64, 80)
    expected = ThinSlices(method="linear", factor=5, in_plane=2)(subject).ct.data
    assert torch.allclose(thin["ct"].as_tensor(), expected, atol=1e-3)
    back = transform.inverse(thin)
    assert tuple(back["ct"].shape) == (1, 32, 32, 16)
    assert np.allclose(back["ct"].affine.numpy(), subject.ct.affine, atol=1e-4)
