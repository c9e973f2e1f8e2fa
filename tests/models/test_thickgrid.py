"""ThickGridNet: thin slots from a (2+1)D network on the thick grid, through the same registry,
model folders and engine as CTHNet and TVSRN."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers.paths import EXAMPLES

import thinct
from thinct.errors import UsageError
from thinct.geometry import Grid, thin_grid
from thinct.inference.engine import upsample_with_model
from thinct.models import config_from_dict, create_model, list_models, load_model, save_model
from thinct.models.config import ThickGridConfig

SMALL = dict(channels=8, blocks=2)


def test_registered_with_its_config_and_cost():
    entry = {e.name: e for e in list_models()}["thickgrid"]
    assert isinstance(entry.config, ThickGridConfig)
    model = create_model("thickgrid")
    parameters = sum(p.numel() for p in model.parameters())
    # stem 1->32 (3x3x3), 8 blocks of 3x3 and 3x1 convolutions, head 32->5 (3x3).
    assert parameters == (27 * 32 + 32) + 8 * (2 * 32 * 32 * 12 // 2 + 64) + (32 * 5 * 9 + 5)


@pytest.mark.parametrize("ratio", [2, 3, 5])
def test_each_thick_slice_unfolds_into_ratio_slots(ratio):
    model = create_model("thickgrid", ratio=ratio, **SMALL)
    x = torch.rand(2, 1, 8, 20, 28)
    assert model(x).shape == (2, 1, 7 * ratio + 1, 20, 28)


def test_untrained_model_is_linear_interpolation_through_the_engine():
    thick = thinct.read_volume(EXAMPLES / "lidc0002_crop_5mm.nii.gz")
    grid = thin_grid(Grid.of(thick.image), spacing=1.0)
    model = create_model("thickgrid", **SMALL)
    made = upsample_with_model(thick, grid, model)
    linear = thinct.interpolate(thick, grid, method="linear")
    difference = sitk.GetArrayFromImage(made.image) - sitk.GetArrayFromImage(linear.image)
    # Inside the scan; past the first and last centres the engine reflects the scan.
    assert np.abs(difference[3:-3]).max() < 0.05
    assert Grid.of(made.image) == grid.grid


def test_slot_k_of_a_thick_slice_is_head_channel_k_around_it():
    model = create_model("thickgrid", interpolation_residual=False, **SMALL).eval()
    x = torch.rand(1, 1, 8, 16, 16)
    with torch.no_grad():
        features = model.act(model.body(model.stem(x)) + model.stem(x))
        per_slice = model.head(features)[0]  # (ratio, slices, H, W)
        out = model(x)[0, 0]
    for z in (0, 3, 7):
        for k in range(5):
            slot = 5 * z + k - 2
            if 0 <= slot < out.shape[0]:
                assert torch.allclose(out[slot], per_slice[k, z], atol=1e-6)


def test_any_in_plane_size_and_training_gives_finite_gradients():
    model = create_model("thickgrid", **SMALL)
    out = model(torch.rand(1, 1, 8, 13, 17))
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(UsageError, match="8"):
        model(torch.rand(1, 1, 6, 16, 16))


def test_a_model_folder_rebuilds_the_same_network(tmp_path):
    model = create_model("thickgrid", **SMALL)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    save_model(model, tmp_path / "tg")
    loaded = load_model(tmp_path / "tg")
    x = torch.rand(1, 1, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert loaded.config == model.config
    assert config_from_dict(model.config.to_dict()) == model.config


def test_bad_sizes_are_one_line_usage_errors():
    with pytest.raises(UsageError, match="channels"):
        create_model("thickgrid", channels=0)
    with pytest.raises(UsageError, match="unknown thickgrid config fields: fold"):
        create_model("thickgrid", fold=8)
