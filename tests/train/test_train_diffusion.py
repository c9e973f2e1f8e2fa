"""Training a diffusion model: the conditions of crops, the planes, the objective, the weights'
average, and a tiny DSDM run through `thinct train` that validates, keeps its best and
resumes."""

from __future__ import annotations

import csv

import numpy as np
import SimpleITK as sitk
import torch
from helpers.training import tiny_recipe, write_recipe
from torch import nn

from thinct.geometry import Grid, thin_grid
from thinct.inference.planes import condition_hu
from thinct.models import create_model, load_model
from thinct.train.config import DiffusionSection, load_train_config
from thinct.train.diffusion import DiffusionObjective, WeightAverage, crop_conditions, crop_planes
from thinct.train.loop import CHECKPOINT_FILE, train
from thinct.volume import HU_MAX, HU_MIN, Volume

TINY_DSDM = {
    "widths": [4, 4],
    "kernel_size": 3,
    "fusion_channels": 4,
    "embedding_dim": 8,
    "train_steps": 50,
    "sampling_steps": 2,
}


def _unit(hu: np.ndarray) -> np.ndarray:
    return (np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)


def test_crop_conditions_are_the_engines_interpolation_of_the_crop() -> None:
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000, 400, (6, 16, 12)).astype(np.float32)
    thick = torch.from_numpy(_unit(hu))[None, None]
    conditions = crop_conditions(thick, ratio=3, method="linear")
    assert conditions.shape == (1, 1, 16, 16, 12)  # (6 - 1) * 3 + 1 slots
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((1.0, 1.0, 3.0))
    expected = condition_hu(
        Volume(image), thin_grid(Grid.of(image), factor=3, align="centers"), "linear"
    )
    np.testing.assert_allclose(conditions[0, 0].numpy(), _unit(expected), atol=1e-5)
    # Slot 3 k is thick slice k; slot 1 lies a third of the way to the next one.
    np.testing.assert_allclose(conditions[0, 0, ::3].numpy(), _unit(hu), atol=1e-5)
    np.testing.assert_allclose(
        conditions[0, 0, 1].numpy(), _unit(hu[0] * 2 / 3 + hu[1] / 3), atol=1e-5
    )


def test_crop_planes_are_coronal_planes_on_the_signal_scale() -> None:
    thin = torch.rand(2, 1, 11, 8, 9)
    condition = torch.rand(2, 1, 11, 8, 9)
    generator = torch.Generator().manual_seed(0)
    reference, cond = crop_planes(thin, condition, 3, generator)
    assert reference.shape == cond.shape == (6, 1, 11, 9)
    for plane in range(6):
        crop = plane // 3
        matches = [
            torch.allclose(reference[plane, 0], thin[crop, 0, :, row] * 2 - 1) for row in range(8)
        ]
        assert sum(matches) == 1
        row = matches.index(True)
        assert torch.allclose(cond[plane, 0], condition[crop, 0, :, row] * 2 - 1)


def test_objective_is_finite_and_trains_both_streams() -> None:
    torch.manual_seed(0)
    model = create_model("dsdm-small", **{**TINY_DSDM, "widths": (4, 4)})
    objective = DiffusionObjective(model.config, DiffusionSection(planes=2), seed=0, step=0)
    thick = torch.rand(2, 1, model.config.slices, 16, 16) * 0.3 + 0.1
    thin = torch.rand(2, 1, model.config.out_slots, 16, 16) * 0.3 + 0.1
    loss = objective(model, thick, thin)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for stream in (model.image_stream, model.structure_stream):
        grads = [p.grad for p in stream.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    # The surrogate is a fixed target, never trained.
    assert not any(p.requires_grad for p in objective.surrogate.parameters())


def test_weight_average_moves_towards_the_model() -> None:
    model = nn.Linear(2, 1)
    average = WeightAverage(model, decay=0.75)
    before = average.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    average.update(model)
    assert torch.allclose(average.model.weight, before + 1.0)
    assert not average.model.weight.requires_grad


def test_a_tiny_dsdm_trains_validates_and_resumes(tmp_path) -> None:
    recipe = tiny_recipe(
        tmp_path / "run",
        optim={"steps": 3, "batch_size": 1},
        diffusion={"planes": 2, "validation_steps": 2, "ema": 0.5},
        validate_every=3,
    )
    recipe["model"] = {"name": "dsdm-small", "config": TINY_DSDM}
    config = load_train_config(write_recipe(tmp_path / "dsdm.yaml", recipe))
    result = train(config)
    assert result.best_step == 3 and np.isfinite(result.best_psnr)
    best = load_model(str(result.folder / "best"))
    assert best.config.architecture == "dsdm"
    state = torch.load(result.folder / CHECKPOINT_FILE, weights_only=True)
    # best/ holds the weights' average, which the checkpoint keeps beside the model's own.
    for name, value in best.state_dict().items():
        assert torch.equal(value, state["average"][name])
    assert any(
        not torch.equal(state["model"][name], state["average"][name]) for name in state["model"]
    )
    with open(result.folder / "log.csv", newline="") as stream:
        losses = [float(row["loss"]) for row in csv.DictReader(stream) if row["loss"]]
    assert len(losses) == 3 and all(np.isfinite(losses))

    longer = load_train_config(
        write_recipe(tmp_path / "longer.yaml", {**recipe, "optim": {**recipe["optim"], "steps": 4}})
    )
    resumed = train(longer, resume=True)
    assert resumed.steps == 4
