"""`thinct.integrations.monai.ThinSlicesd`, the MONAI transform, with real MONAI calls on the
example crop: the affine of thinct's own pipeline (in RAS, and in LPS when the metadata says
so), the voxels of ThinSlices, labels nearest with their dtype, Compose, Dataset and
DataLoader, SaveImage,
the inverse (directly, through Compose and through Invertd), and clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torchio as tio
from helpers.paths import EXAMPLES

import thinct
from thinct.errors import UsageError
from thinct.integrations.torchio import ThinSlices

monai = pytest.importorskip("monai")
from monai.data import DataLoader, Dataset, MetaTensor, decollate_batch  # noqa: E402
from monai.transforms import (  # noqa: E402
    Compose,
    Invertd,
    LoadImaged,
    SaveImage,
    ScaleIntensityRanged,
    SpatialCropd,
)

from thinct.integrations.monai import ThinSlicesd  # noqa: E402

# MONAI's reader registry announces that the optional GPU DICOM decoder is absent, and itk's
# SWIG wrappers warn on import: noise that says nothing about thinct.
pytestmark = [
    pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader"),
    pytest.mark.filterwarnings("ignore:builtin type .* has no __module__:DeprecationWarning"),
]

THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"
FLIP_XY = np.diag([-1.0, -1.0, 1.0, 1.0])


def _load(reader=None) -> dict:
    """The example 5 mm crop as MONAI loads it, with a lung mask (HU < -400) as int16."""
    data = LoadImaged(keys="ct", reader=reader, ensure_channel_first=True)({"ct": str(THICK)})
    data["mask"] = (data["ct"] < -400).to(torch.int16)
    return data


def _ras_points(image: sitk.Image, indices) -> np.ndarray:
    """World positions (RAS) of voxel indices of a SimpleITK image (which is in LPS)."""
    lps = np.array([image.TransformIndexToPhysicalPoint(index) for index in indices])
    return lps * [-1, -1, 1]


def _voxel_points(affine: torch.Tensor, indices) -> np.ndarray:
    homogeneous = np.array([[*index, 1] for index in indices], dtype=float)
    return (affine.numpy() @ homogeneous.T).T[:, :3]


def test_geometry_and_voxels_match_thinct_and_thinslices():
    """The thin affine puts the first and last slices where `thinct.upsample_volume` does,
    1 mm apart, and the voxels are ThinSlices' on the same file."""
    loaded = _load()
    result = ThinSlicesd("ct", method="linear")(loaded)["ct"]
    assert isinstance(result, MetaTensor) and tuple(result.shape) == (1, 192, 192, 80)
    assert float(loaded["ct"].meta["pixdim"][3]) == 5.0  # the input is left as it was
    reference = thinct.upsample_volume(thinct.read_volume(THICK), method="linear", spacing=1.0)
    ends = [(0, 0, 0), (191, 191, 79)]
    assert np.allclose(_voxel_points(result.affine, ends), _ras_points(reference.image, ends))
    assert np.isclose(float(result.affine[2, 2]), 1.0)
    assert result.meta["space"] == "RAS" and list(result.meta["pixdim"][1:4]) == pytest.approx(
        [0.681641, 0.681641, 1.0], abs=1e-6
    )
    # The file as loaded: MONAI's SaveImage(resample=True) needs the pair to stay together.
    assert list(result.meta["spatial_shape"]) == [192, 192, 16]
    assert result.meta["filename_or_obj"] == str(THICK)
    expected = ThinSlices(method="linear")(tio.Subject(ct=tio.ScalarImage(THICK)))
    assert torch.equal(result.as_tensor(), expected.ct.data)
    # The thick grid the inverse returns to is recorded as ThinSlices records it.
    (_, arguments) = expected.applied_transforms[-1]
    record = result.applied_operations[-1]["extra_info"]["thick_grid"]
    assert record == arguments["source_grids"]["ct"]


def test_labels_go_nearest_onto_the_identical_grid_with_their_dtype():
    data = ThinSlicesd("ct", label_keys="mask", method="linear")(_load())
    mask = data["mask"]
    assert mask.dtype == torch.int16 and set(torch.unique(mask).tolist()) == {0, 1}
    assert mask.shape == data["ct"].shape and torch.equal(mask.affine, data["ct"].affine)
    # Each thin slice of an ``edges`` grid copies the thick slab it lies in.
    assert torch.equal(mask[..., 7], _load()["mask"][..., 1])


def test_lps_metadata_keeps_its_space():
    """An LPS MetaTensor (ITKReader with affine_lps_to_ras=False) gets the same grid, in LPS."""
    ras = _load()["ct"]
    lps = MetaTensor(ras.as_tensor(), affine=torch.as_tensor(FLIP_XY) @ ras.affine)
    lps.meta["space"] = "LPS"
    thin_ras = ThinSlicesd("ct", method="linear")({"ct": ras})["ct"]
    thin_lps = ThinSlicesd("ct", method="linear")({"ct": lps})["ct"]
    assert thin_lps.meta["space"] == "LPS"
    assert torch.allclose(thin_lps.affine, torch.as_tensor(FLIP_XY) @ thin_ras.affine)
    assert torch.equal(thin_lps.as_tensor(), thin_ras.as_tensor())


def test_itk_reader_in_ras_and_lps():
    pytest.importorskip("itk")
    from monai.data import ITKReader

    nibabel = ThinSlicesd("ct", method="linear")(_load())["ct"]
    for reader, flip in ((ITKReader(), np.eye(4)), (ITKReader(affine_lps_to_ras=False), FLIP_XY)):
        data = ThinSlicesd("ct", label_keys="mask", method="linear")(_load(reader))
        assert torch.allclose(data["ct"].affine, torch.as_tensor(flip) @ nibabel.affine)
        assert torch.equal(data["ct"].as_tensor(), nibabel.as_tensor())
        assert data["mask"].dtype == torch.int16


def test_compose_dataset_loader_and_inverse():
    """A cropped scan through Compose (ThinSlicesd before intensity scaling), a Dataset and a
    DataLoader with a worker; Compose.inverse returns each item to the loaded thick grid, with
    the mask's labels whole."""
    transform = Compose(
        [
            LoadImaged(keys="ct", ensure_channel_first=True),
            _add_mask,
            SpatialCropd(keys=["ct", "mask"], roi_start=(64, 64, 0), roi_end=(128, 128, 16)),
            ThinSlicesd("ct", label_keys="mask", method="linear"),
            ScaleIntensityRanged("ct", a_min=-1000, a_max=400, b_min=0, b_max=1, clip=True),
        ]
    )
    loader = DataLoader(Dataset([{"ct": str(THICK)}], transform=transform), num_workers=1)
    (batch,) = list(loader)
    assert tuple(batch["ct"].shape) == (1, 1, 64, 64, 80) and batch["ct"].max() <= 1.0
    assert batch["mask"].dtype == torch.int16
    (item,) = decollate_batch(batch)
    back = transform.inverse(item)
    loaded = _load()
    assert back["ct"].shape == back["mask"].shape == (1, 192, 192, 16)
    assert torch.allclose(back["ct"].affine, loaded["ct"].affine)
    assert torch.equal(back["mask"][:, 64:128, 64:128], loaded["mask"][:, 64:128, 64:128])


def test_lazy_compose_applies_pending_crops_first():
    """MONAI's lazy resampling: a pending crop is applied before ThinSlicesd runs."""
    steps = [
        LoadImaged(keys="ct", ensure_channel_first=True),
        SpatialCropd(keys="ct", roi_start=(64, 64, 0), roi_end=(128, 128, 16)),
        ThinSlicesd("ct", method="linear"),
    ]
    lazily = Compose(steps, lazy=True)({"ct": str(THICK)})["ct"]
    eagerly = Compose(steps)({"ct": str(THICK)})["ct"]
    assert tuple(lazily.shape) == (1, 64, 64, 80) and not lazily.pending_operations
    assert torch.equal(lazily.as_tensor(), eagerly.as_tensor())
    assert torch.allclose(lazily.affine, eagerly.affine)


def _add_mask(data: dict) -> dict:
    return {**data, "mask": (data["ct"] < -400).to(torch.int16)}


def test_invertd_brings_a_thin_prediction_back_to_the_thick_grid():
    """The MONAI inference recipe: a prediction on the thin grid, Invertd with the image's
    transforms. nearest_interp takes each slab's majority label, otherwise slab averages."""
    transform = ThinSlicesd("ct", method="linear")
    data = transform(_load())
    prediction = (data["ct"] < -400).float()  # a "segmentation" on the thin grid

    def invert(nearest: bool) -> MetaTensor:
        invertd = Invertd("pred", transform=transform, orig_keys="ct", nearest_interp=nearest)
        return invertd({**data, "pred": prediction.clone()})["pred"]

    labels, means = invert(True), invert(False)
    thick_mask = _load()["mask"]
    for back in (labels, means):
        assert back.shape == (1, 192, 192, 16)
        assert torch.allclose(back.affine, thick_mask.affine)
    assert set(torch.unique(labels).tolist()) == {0.0, 1.0}
    assert float((labels != thick_mask).float().mean()) < 0.05
    assert 0 < float(((means > 0) & (means < 1)).float().mean()) < 0.2  # slabs cut by the edge
    assert len(data["ct"].applied_operations) == 1  # Invertd leaves the image's record alone


def test_save_image_writes_the_thin_geometry(tmp_path):
    result = ThinSlicesd("ct", method="linear")(_load())["ct"]
    SaveImage(output_dir=tmp_path, separate_folder=False, print_log=False)(result)
    (written,) = tmp_path.glob("*.nii.gz")
    image = sitk.ReadImage(str(written))
    reference = thinct.upsample_volume(thinct.read_volume(THICK), method="linear", spacing=1.0)
    assert image.GetSize() == reference.image.GetSize() == (192, 192, 80)
    assert np.allclose(image.GetSpacing(), reference.image.GetSpacing(), atol=1e-5)
    assert np.allclose(image.GetOrigin(), reference.image.GetOrigin(), atol=1e-3)
    assert np.allclose(image.GetDirection(), reference.image.GetDirection())
    assert np.allclose(sitk.GetArrayViewFromImage(image), reference.array, atol=1e-3)


def test_the_model_runs_lazily_and_matches_thinslices():
    crop = SpatialCropd(["ct"], roi_start=(64, 64, 0), roi_end=(128, 128, 16))(_load())
    transform = ThinSlicesd("ct", model="cthnet-small")
    assert transform.thin_slices._loaded is None  # nothing loaded until an image arrives
    result = transform(crop)["ct"]
    cropped = tio.CropOrPad((64, 64, 16))(tio.ScalarImage(THICK))
    expected = ThinSlices(model="cthnet-small")(cropped)
    assert tuple(result.shape) == (1, 64, 64, 80)
    assert torch.allclose(result.as_tensor(), expected.data, atol=1e-3)
    assert np.allclose(result.affine.numpy(), expected.affine, atol=1e-4)


def test_missing_keys_and_bad_arguments_are_clear_errors():
    data = _load()
    with pytest.raises(KeyError, match="Key `label` of transform `ThinSlicesd` was missing"):
        ThinSlicesd(["ct", "label"], method="linear")(data)
    partial = ThinSlicesd(["ct", "label"], method="linear", allow_missing_keys=True)(data)
    assert partial["ct"].shape[-1] == 80 and "label" not in partial
    with pytest.raises(UsageError, match="'ct': ThinSlicesd needs one channel-first 3D"):
        ThinSlicesd("ct", method="linear")({"ct": data["ct"][0]})  # no channel dimension
    with pytest.raises(UsageError, match="got Tensor of shape"):
        ThinSlicesd("ct", method="linear")({"ct": data["ct"].as_tensor()})
    odd = data["ct"].clone()
    odd.meta["space"] = "XYZ"
    with pytest.raises(UsageError, match="unknown space 'XYZ'"):
        ThinSlicesd("ct", method="linear")({"ct": odd})
    with pytest.raises(UsageError, match="method must be one of"):
        ThinSlicesd("ct", method="cubic")
    with pytest.raises(UsageError, match="either a model or a method"):
        ThinSlicesd("ct", model="cthnet-small", method="linear")
    with pytest.raises(UsageError, match="factor"):
        ThinSlicesd("ct", method="linear", factor=1)


def test_import_thinct_and_the_cli_do_not_import_monai():
    code = "import sys, thinct, thinct.cli.app; sys.exit('monai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
