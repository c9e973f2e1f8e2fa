"""DSDM's denoiser: two streams and a fusion module on 2D planes of any size, behind the same
registry and model folders as the thin-slice models."""

from __future__ import annotations

import pytest
import torch

from thinct.errors import UsageError
from thinct.models import config_from_dict, create_model, list_models, load_model, save_model
from thinct.models.config import DSDMConfig
from thinct.models.dsdm import structure_input

TINY = dict(widths=(4, 8), kernel_size=3, fusion_channels=4, embedding_dim=8)


def _stream_parameters(inputs: int, widths: tuple[int, ...], kernel: int, outputs: int) -> int:
    """Weights and biases of ``len(widths)`` convolutions down and as many back."""
    down = (inputs, *widths)
    up = (*widths[::-1], outputs)
    pairs = [*zip(down, down[1:], strict=False), *zip(up, up[1:], strict=False)]
    return sum(a * b * kernel**2 + b for a, b in pairs)


def _planes(batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(batch, 1, height, width, generator=generator)
    condition = torch.rand(batch, 1, height, width, generator=generator) * 2 - 1
    structure = torch.rand(batch, 1, height, width, generator=generator)
    return noisy, condition, structure, torch.rand(batch, generator=generator)


def test_registered_sizes_and_the_public_codes_parameter_count():
    entries = {e.name: e for e in list_models()}
    assert isinstance(entries["dsdm"].config, DSDMConfig)
    assert entries["dsdm"].weights is None and entries["dsdm-small"].weights is None
    model = create_model("dsdm")
    parameters = sum(p.numel() for p in model.parameters())
    # Two RED-CNN streams of 5 x 5 convolutions, 32-64-128-128-128 channels (the public
    # code's, with 2 input and 8 output channels here) make up nearly all of it ...
    widths = (32, 64, 128, 128, 128)
    streams = 2 * _stream_parameters(2, widths, 5, 8)
    assert streams == 4_318_480
    # ... the rest is the noise level's embedding (64 -> 256 -> 64), a scale and a shift per
    # channel of each of the image stream's layers, and the fusion module's 3 x 3 layers.
    embedding = (64 * 256 + 256) + (256 * 64 + 64)
    modulated = sum(widths) * 2 - widths[-1] + 8
    modulations = 64 * 2 * modulated + 2 * modulated
    fusion = 2 * (8 * 8 * 9 + 8) + (8 * 8 * 9 + 8 + 8 * 9 + 1) + (9 * 8 * 9 + 8 + 8 * 9 + 1)
    assert parameters == streams + embedding + modulations + fusion == 4_463_322
    small = sum(p.numel() for p in create_model("dsdm-small").parameters())
    assert small < 50_000


@pytest.mark.parametrize("size", [(24, 24), (13, 30), (3, 5), (1, 9)])
def test_planes_of_any_size_come_out_their_size(size):
    model = create_model("dsdm", **TINY)
    noise, structure_map = model(*_planes(2, *size))
    assert noise.shape == structure_map.shape == (2, 1, *size)


def test_forward_and_backward_give_finite_gradients_to_every_parameter():
    model = create_model("dsdm", **TINY)
    # Modulations start at zero; a step away from it lets gradients reach the embedding.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    noise, structure_map = model(*_planes(2, 16, 20))
    (noise.square().mean() + structure_map.abs().mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_the_structure_map_depends_on_the_condition_alone():
    model = create_model("dsdm", **TINY)
    noisy, condition, structure, level = _planes(2, 16, 16)
    _, first = model(noisy, condition, structure, level)
    _, second = model(torch.randn_like(noisy), condition, structure, level.flip(0))
    assert torch.equal(first, second)


def test_the_noise_prediction_follows_the_noise_level_once_trained():
    model = create_model("dsdm", **TINY)
    noisy, condition, structure, _ = _planes(1, 16, 16)
    structure_map = model.structure_map(condition, structure)
    low, high = torch.tensor([0.1]), torch.tensor([0.9])
    untrained = [model.predict_noise(noisy, condition, structure_map, x) for x in (low, high)]
    assert torch.equal(*untrained)  # modulations start at zero: the level is ignored
    with torch.no_grad():
        for modulation in model.image_stream.modulations:
            modulation.project.weight.normal_(0, 0.1)
    moved = [model.predict_noise(noisy, condition, structure_map, x) for x in (low, high)]
    assert not torch.allclose(*moved)


def test_structure_input_is_the_operators_map_of_the_condition_on_the_lung_window():
    # A bright vessel (0 HU) across lung (-850 HU), on the signal scale.
    hu = torch.full((1, 32, 32), -850.0)
    hu[0, :, 15:18] = 0.0
    signal = (hu + 1024) / 3072 * 2 - 1
    response = structure_input(signal)
    assert response.shape == signal.shape
    assert response[0, 16, 16] > 0.5 > response[0, 16, 4]


def test_a_model_folder_rebuilds_the_same_network(tmp_path):
    model = create_model("dsdm", **TINY)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    save_model(model, tmp_path / "dsdm")
    loaded = load_model(tmp_path / "dsdm")
    assert loaded.config == model.config
    inputs = _planes(1, 12, 12)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(*inputs), model(*inputs), strict=True))


def test_registered_sizes_without_weights_say_so():
    with pytest.raises(UsageError, match="no trained weights"):
        load_model("dsdm-small")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"sampler": "euler"}, "sampler must be one of ancestral, ddim"),
        ({"condition_method": "cubic"}, "condition_method must be one of"),
        ({"beta_start": 0.1, "beta_end": 0.01}, "beta_start < beta_end < 1"),
        ({"sampling_steps": 3000}, "cannot exceed train_steps"),
        ({"interpolation_residual": True}, "does not apply"),
        ({"embedding_dim": 7}, "even"),
        ({"widths": [16, 0]}, "widths"),
    ],
)
def test_bad_configs_are_usage_errors_that_say_what_is_wrong(values, words):
    with pytest.raises(UsageError, match=words):
        config_from_dict({"architecture": "dsdm", **values})


def test_planes_of_the_wrong_shape_are_refused():
    model = create_model("dsdm", **TINY)
    with pytest.raises(UsageError, match=r"\(batch, 1, H, W\)"):
        model.structure_map(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))
