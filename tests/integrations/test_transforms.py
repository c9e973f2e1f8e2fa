"""`thinct.ThinSlices`, the TorchIO transform, on the real example crop: the same voxels and
geometry as thinct's own pipeline, labels on the identical grid, include/exclude, history
replay, the inverse, and use inside Compose, SubjectsLoader and a Queue."""

from __future__ import annotations

import copy
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torchio as tio
from helpers.paths import EXAMPLES

import thinct
from thinct.errors import GeometryError, ThinctWarning, UsageError
from thinct.integrations.torchio import ThinSlices

THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"


def _subject(size: int = 192) -> tio.Subject:
    """The example 5 mm crop (its central ``size`` x ``size`` pixels, lung and chest wall)
    with a lung mask, and no history."""
    ct = tio.ScalarImage(THICK)
    if size < 192:
        cropped = tio.CropOrPad((size, size, 16))(ct)
        ct = tio.ScalarImage(tensor=cropped.data, affine=cropped.affine)
    mask = tio.LabelMap(tensor=(ct.data < -400).to(torch.int16), affine=ct.affine)
    return tio.Subject(ct=ct, mask=mask)


def _as_sitk(image: tio.Image) -> sitk.Image:
    return image.as_sitk()


def test_same_voxels_and_geometry_as_thinct_upsample():
    """A ScalarImage gets exactly what `thinct.upsample_volume` makes of the same file."""
    subject = ThinSlices(method="bspline", spacing=1.0)(_subject())
    reference = thinct.upsample_volume(thinct.read_volume(THICK), method="bspline", spacing=1.0)
    result = _as_sitk(subject.ct)
    assert result.GetSize() == reference.image.GetSize() == (192, 192, 80)
    assert np.allclose(result.GetSpacing(), reference.image.GetSpacing())
    assert np.allclose(result.GetOrigin(), reference.image.GetOrigin(), atol=1e-4)
    assert np.allclose(result.GetDirection(), reference.image.GetDirection())
    assert np.allclose(sitk.GetArrayViewFromImage(result), reference.array, atol=1e-3)


def test_first_and_last_thin_slices_sit_inside_the_thick_slabs():
    """With ``edges`` the thin slices tile the thick slabs: the first is half a thin spacing
    inside the first slab's outer edge, in world coordinates."""
    thick = _subject()
    thin = ThinSlices(method="linear", factor=5)(thick)
    thick_z = thick.ct.affine[2, 3] + np.array([-2.5, 15 * 5 + 2.5])  # outer slab edges (RAS z)
    thin_z = thin.ct.affine[2, 3] + np.array([0, 79]) * thin.ct.affine[2, 2]
    assert np.allclose(thin_z, [thick_z[0] + 0.5, thick_z[1] - 0.5])
    centers = ThinSlices(method="linear", factor=5, align="centers")(thick)
    assert centers.ct.shape[-1] == 76
    assert np.isclose(centers.ct.affine[2, 3], thick.ct.affine[2, 3])


def test_labels_go_nearest_onto_the_identical_grid():
    subject = ThinSlices(method="linear")(_subject())
    assert subject.mask.shape == subject.ct.shape
    assert np.allclose(subject.mask.affine, subject.ct.affine)
    assert subject.mask.data.dtype == torch.int16
    assert set(torch.unique(subject.mask.data).tolist()) == {0, 1}
    # Nearest neighbour: each thin slice of an ``edges`` grid copies the slab it lies in.
    thick_mask = _subject().mask.data
    assert torch.equal(subject.mask.data[..., 7], thick_mask[..., 1])


def test_include_and_exclude():
    original = _subject()
    only_ct = ThinSlices(method="linear", include=["ct"])(original)
    assert only_ct.ct.shape[-1] == 80 and only_ct.mask.shape[-1] == 16
    no_ct = ThinSlices(method="linear", exclude=["ct"])(original)
    assert no_ct.ct.shape[-1] == 16 and no_ct.mask.shape[-1] == 80


def test_history_replays_and_inverse_returns_to_the_thick_grid():
    original = _subject()
    thin = ThinSlices(method="linear")(original)
    ((name, arguments),) = thin.applied_transforms
    assert name == "ThinSlices" and arguments["method"] == "linear"
    assert arguments["source_grids"]["ct"]["size"] == [192, 192, 16]
    replayed = thin.get_composed_history()(original)
    assert torch.equal(replayed.ct.data, thin.ct.data)
    back = thin.apply_inverse_transform()
    assert back.ct.shape == original.ct.shape
    assert np.allclose(back.ct.affine, original.ct.affine)
    # Each thick slab holds exactly its five nearest-neighbour copies: labels come back whole.
    assert torch.equal(back.mask.data, original.mask.data)
    assert back.ct.data.sub(original.ct.data).abs().mean() < 20  # slab means of linear slices


def test_inverse_of_an_image_it_did_not_make_is_refused():
    thin = ThinSlices(method="linear", include=["ct"])(_subject())
    transform = ThinSlices(method="linear", include=["ct", "mask"]).inverse()
    with pytest.raises(UsageError, match="'ct' was not made thin by this ThinSlices"):
        transform(thin)


def test_compose_queue_and_loaders():
    """Inside Compose (before intensity normalisation), a SubjectsDataset, a Queue of patches
    drawn by a worker process, and a SubjectsLoader whose batches invert."""
    transform = tio.Compose(
        [ThinSlices(method="linear"), tio.RescaleIntensity((0, 1), in_min_max=(-1000, 400))]
    )
    dataset = tio.SubjectsDataset([_subject(64), _subject(96)], transform=transform)
    queue = tio.Queue(
        dataset,
        max_length=8,
        samples_per_volume=4,
        sampler=tio.UniformSampler((32, 32, 40)),
        num_workers=1,
        shuffle_subjects=False,
        shuffle_patches=False,
    )
    patches = list(tio.SubjectsLoader(queue, batch_size=4))
    assert len(patches) == 2
    assert tuple(patches[0]["ct"][tio.DATA].shape) == (4, 1, 32, 32, 40)
    assert patches[0]["ct"][tio.DATA].max() <= 1.0
    loader = tio.SubjectsLoader(
        tio.SubjectsDataset([_subject(64)], transform=transform),
        collate_fn=tio.utils.history_collate,  # batches keep each subject's history
    )
    (batch,) = list(loader)
    (subject,) = tio.utils.get_subjects_from_batch(batch)
    back = subject.apply_inverse_transform(warn=False)
    assert back.ct.shape == (1, 64, 64, 16) and back.mask.shape == (1, 64, 64, 16)


def test_the_model_loads_lazily_once_and_matches_the_engine():
    transform = ThinSlices(model="cthnet-small")
    assert transform._loaded is None  # nothing loaded until a subject arrives
    subject = transform(_subject(64))
    assert transform._loaded is not None
    assert transform.__getstate__()["_loaded"] is None  # what pickles carry: workers load their own
    assert copy.deepcopy(transform)._loaded is None
    volume = thinct.read_volume(THICK)
    crop = volume.with_image(volume.image[64:128, 64:128, :])
    expected = thinct.upsample_volume(crop, model=thinct.load_model("cthnet-small"))
    result = _as_sitk(subject.ct)
    assert result.GetSize() == expected.image.GetSize()
    assert np.allclose(sitk.GetArrayViewFromImage(result), expected.array, atol=1e-3)
    assert np.allclose(result.GetOrigin(), expected.image.GetOrigin(), atol=1e-4)


def test_several_channels_are_each_made_thin():
    ct = _subject(64).ct
    two = tio.ScalarImage(tensor=torch.cat([ct.data, ct.data + 10]), affine=ct.affine)
    result = ThinSlices(method="linear")(tio.Subject(ct=two))
    assert result.ct.shape == (2, 64, 64, 80)
    assert torch.allclose(result.ct.data[1] - result.ct.data[0], torch.tensor(10.0), atol=1e-2)


def test_bad_arguments_and_images_are_clear_errors():
    with pytest.raises(UsageError, match="either a model or a method"):
        ThinSlices(model="cthnet-small", method="linear")
    with pytest.raises(UsageError, match="method must be one of"):
        ThinSlices(method="cubic")
    with pytest.raises(UsageError, match="align must be one of"):
        ThinSlices(method="linear", align="middle")
    with pytest.raises(UsageError, match="factor"):
        ThinSlices(method="linear", factor=1)
    iso = tio.ScalarImage(tensor=torch.zeros(1, 8, 8, 8) - 500, affine=np.eye(4))
    with pytest.raises(GeometryError, match="image 'ct': slices are already 1 mm apart"):
        ThinSlices(method="linear")(tio.Subject(ct=iso))


def test_images_that_are_not_hu_are_flagged():
    normalised = tio.RescaleIntensity((0, 1))(_subject(64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ThinSlices(method="linear")(normalised)
    assert any(issubclass(w.category, ThinctWarning) and "'ct'" in str(w.message) for w in caught)


def test_a_prediction_added_on_the_thin_grid_inverts_with_its_image():
    """The usual pattern: segment the thin subject, add the prediction, invert everything."""
    thin = ThinSlices(method="linear")(_subject(64))
    prediction = tio.LabelMap(tensor=(thin.ct.data < -400).to(torch.uint8), affine=thin.ct.affine)
    thin.add_image(prediction, "prediction")
    back = thin.apply_inverse_transform()
    assert back.prediction.shape == (1, 64, 64, 16)
    assert np.allclose(back.prediction.affine, back.ct.affine)
    assert back.prediction.data.dtype == torch.uint8
    elsewhere = tio.LabelMap(tensor=torch.zeros(1, 64, 64, 80, dtype=torch.uint8))
    thin = ThinSlices(method="linear")(_subject(64))
    thin.add_image(elsewhere, "elsewhere")
    with pytest.raises(UsageError, match="'elsewhere' was not made thin"):
        thin.apply_inverse_transform()


def test_threads_sharing_one_transform_record_their_own_grids():
    transform = ThinSlices(method="linear")
    sizes = [32, 48, 64, 80] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda size: transform(_subject(size)), sizes))
    for size, subject in zip(sizes, results, strict=True):
        ((_, arguments),) = subject.applied_transforms
        assert arguments["source_grids"]["ct"]["size"] == [size, size, 16]


def test_a_single_slice_is_a_clear_error():
    single = tio.ScalarImage(
        tensor=torch.full((1, 16, 16, 1), -500.0), affine=np.diag([1, 1, 5, 1])
    )
    with pytest.raises(GeometryError, match="single slice"):
        ThinSlices(method="linear")(tio.Subject(ct=single))
