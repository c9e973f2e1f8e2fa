"""The structure-domain loss (``loss: {kind: l1+structure}``): the L1 distance of the frozen
surrogate's maps of output and target, on real thin crops, and a tiny run that trains with
it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.paths import EXAMPLES
from helpers.training import CROP, tiny_config

from thinct.data.crops import CropOptions, CropSampler
from thinct.data.pairs import simulated_pair
from thinct.io import read_volume
from thinct.structure import enhance, lung_window
from thinct.structure.surrogate import fidelity
from thinct.train.loop import train
from thinct.train.losses import structure_l1, surrogate_on, training_loss
from thinct.volume import HU_MAX, HU_MIN


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """Two real thin crops (B = 2, 36 slots of 48 x 48) on the [0, 1] scale."""
    pair = simulated_pair(read_volume(EXAMPLES / CROP), ratio=5, spacing=1.25)
    sampler = CropSampler([pair], CropOptions(slices=8, ratio=5, tile=48))
    rng = np.random.default_rng(1)
    return torch.cat([sampler.draw(rng)[1][None] for _ in range(2)])


def _blurred(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool3d(x, 3, stride=1, padding=1, count_include_pad=False)


def test_identical_crops_cost_nothing(crops):
    assert float(structure_l1(crops, crops)) == 0


def test_blurred_vessels_cost_more_than_a_shift_of_soft_tissue(crops):
    blurred = float(structure_l1(_blurred(crops), crops))
    assert blurred > 0.003  # measured 0.0059
    # +30 HU everywhere: L1 sees it everywhere, the structure maps hardly at all.
    shifted = crops + 30 / (HU_MAX - HU_MIN)
    assert float(structure_l1(shifted, crops)) < blurred / 3
    assert float(F.l1_loss(shifted, crops)) > float(F.l1_loss(_blurred(crops), crops))


def test_the_loss_reads_the_lung_window_of_hu(crops):
    # The axial term by hand: HU from the [0, 1] scale, the lung window, the surrogate.
    output = _blurred(crops)
    surrogate = surrogate_on(torch.device("cpu"))

    def axial(x: torch.Tensor) -> torch.Tensor:
        return surrogate(lung_window(x * (HU_MAX - HU_MIN) + HU_MIN))

    def coronal(x: torch.Tensor) -> torch.Tensor:
        return axial(x.transpose(-3, -2))

    by_hand = (
        F.l1_loss(axial(output), axial(crops)) + F.l1_loss(coronal(output), coronal(crops))
    ) / 2
    assert float(structure_l1(output, crops)) == pytest.approx(float(by_hand), rel=1e-6)
    # The surrogate's maps follow the operator's on these crops.
    planes = lung_window(crops[0, 0] * (HU_MAX - HU_MIN) + HU_MIN)
    correlation, _ = fidelity(axial(crops[0, 0]), enhance(planes))
    assert correlation > 0.85


def test_the_loss_is_differentiable_and_leaves_the_surrogate_frozen(crops):
    output = _blurred(crops).requires_grad_(True)
    loss = training_loss(output, crops, "l1+structure", weight=0.5)
    expected = F.l1_loss(output, crops) + 0.5 * structure_l1(output, crops)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().max() > 0
    surrogate = surrogate_on(torch.device("cpu"))
    assert all(p.grad is None and not p.requires_grad for p in surrogate.parameters())


def test_a_recipe_with_the_structure_loss_trains(tmp_path):
    config = tiny_config(
        tmp_path,
        tmp_path / "run",
        loss={"kind": "l1+structure", "weight": 0.1},
        optim={"steps": 2, "warmup_steps": 1},
        validate_every=2,
    )
    assert config.loss.kind == "l1+structure"
    result = train(config, report=lambda message: None)
    assert result.steps == 2 and math.isfinite(result.best_psnr)
    assert (tmp_path / "run" / "best").is_dir()
