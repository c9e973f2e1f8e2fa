"""The command line end to end on real, full-size thick scans: the 5 mm chest scan of ../shared
and the real 5 mm DICOM series (slow; each skips when its data is absent)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from helpers.cli import assert_ok, read, thinct
from helpers.paths import real_dicom_folder, shared_scan

import thinct as thinct_api
from thinct.geometry import Grid, slab_extent, slice_axis
from thinct.models import create_model, save_model

pytestmark = pytest.mark.slow


def test_real_5mm_chest_scan_to_1mm(tmp_path):
    source = shared_scan("pyradiomics_lung1_5mm.nii.gz")
    target = tmp_path / "lung1_1mm.nii.gz"
    assert_ok(thinct("upsample", source, target, "--method", "linear"))

    thick, thin = read(source), read(target)
    assert thin.GetSize() == (512, 512, 48 * 5)
    assert thin.GetSpacing() == pytest.approx((*thick.GetSpacing()[:2], 1.0))
    assert thin.GetDirection() == pytest.approx(thick.GetDirection())
    expected_origin = np.asarray(thick.GetOrigin()) - 2.0 * np.asarray(thick.GetDirection())[6:]
    assert thin.GetOrigin() == pytest.approx(tuple(expected_origin))
    # Linear interpolation reproduces every thick slice at its centre (thin slice 2 + 5k).
    thick_values = sitk.GetArrayFromImage(thick)
    thin_values = sitk.GetArrayFromImage(thin)
    np.testing.assert_array_equal(thin_values[2::5], thick_values)


def assert_same_extent(thick: thinct_api.Volume, thin: thinct_api.Volume) -> None:
    """The thin slices cover exactly the thick slabs: outer edges at the same world points."""
    thick_grid, thin_grid = Grid.of(thick.image), Grid.of(thin.image)
    for end_thick, end_thin in zip(
        slab_extent(thick_grid, slice_axis(thick_grid.spacing)),
        slab_extent(thin_grid, slice_axis(thin_grid.spacing)),
        strict=True,
    ):
        np.testing.assert_allclose(end_thin, end_thick, atol=1e-3)


def test_real_dicom_series_to_a_thin_dicom_series(tmp_path):
    source = real_dicom_folder()
    target = tmp_path / "thin_series"
    assert_ok(thinct("upsample", source, target, "--method", "linear"))

    files = sorted(target.iterdir())
    assert len(files) == 64 * 5
    original = pydicom.dcmread(next(source.glob("*.dcm")), stop_before_pixels=True)
    written = pydicom.dcmread(files[0], stop_before_pixels=True)
    for keyword in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert written.get(keyword) == original.get(keyword), keyword
    assert written.SeriesInstanceUID != original.SeriesInstanceUID
    assert float(written.SliceThickness) == 1.0
    assert "SYNTHETIC" in written.DerivationDescription

    thin = thinct_api.read_volume(target)
    assert_same_extent(thinct_api.read_volume(source), thin)

    summary = json.loads(thinct("info", target, "--json").stdout)
    assert summary["slices"] == 320
    assert summary["slice_spacing_mm"] == pytest.approx(1.0)
    assert summary["slices_look"] == "thin"


def test_real_dicom_series_through_a_model_to_a_thin_dicom_series(tmp_path):
    """The whole model path on a real full-size series: every one of the 320 thin slices is
    predicted, on the thin grid of the same extent, and the series names the model."""
    source = real_dicom_folder()
    torch.manual_seed(0)
    small = create_model(
        "cthnet", encoder_dim=8, encoder_depths=(1,), latent_channels=2, fold=4,
        through_depths=(1,), through_heads=4, in_plane_depths=(1,), head_channels=4,
    )  # fmt: skip
    folder = save_model(small, tmp_path / "small-cthnet")
    target = tmp_path / "thin_series"
    assert_ok(thinct("upsample", source, target, "--model", folder, "--device", "cpu"))

    files = sorted(target.iterdir())
    assert len(files) == 64 * 5
    written = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert "model small-cthnet" in written.DerivationDescription
    thin = thinct_api.read_volume(target)
    assert_same_extent(thinct_api.read_volume(source), thin)
    # Every slice holds the model's prediction: none is constant (an empty, unpredicted slice
    # would be), the first and last included.
    values = sitk.GetArrayFromImage(thin.image)
    assert all(np.ptp(plane) > 0 for plane in values)
