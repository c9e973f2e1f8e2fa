"""DSDM's diffusion: the noise schedule, training's noise levels, and the samplers, checked on
an oracle that knows the clean image and on a small untrained denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from thinct.errors import UsageError
from thinct.models import create_model
from thinct.models.config import DSDMConfig
from thinct.models.diffusion import (
    NoiseSchedule,
    hu_of_signal,
    initial_state,
    q_sample,
    sample,
    signal_of_hu,
    to_signal,
    to_unit,
)

SCHEDULE = NoiseSchedule.of(DSDMConfig())


def test_gammas_fall_from_one_through_the_open_interval():
    gammas = SCHEDULE.gammas
    assert SCHEDULE.steps == 2000 and gammas[0] == 1
    assert (gammas[1:] < gammas[:-1]).all()
    assert gammas[-1] > 0 and gammas[1] < 1
    assert gammas[-1] < 1e-4  # SR3's linear 1e-6 to 1e-2: nearly pure noise at the end


def test_training_levels_are_drawn_between_consecutive_gammas_one_step_at_a_time():
    schedule = NoiseSchedule.linear(4, 0.1, 0.4)  # gammas 1, 0.9, 0.72, 0.504, 0.3024
    draws = schedule.training_levels(40_000, torch.Generator().manual_seed(0))
    assert draws.dtype == torch.float32
    draws, gammas = draws.double(), schedule.gammas.float().double()
    assert ((draws >= gammas[-1]) & (draws <= 1)).all()
    # Each interval (gamma_t, gamma_(t-1)] holds a quarter of the draws, whatever its width,
    # spread evenly inside it.
    for t in range(1, 5):
        inside = draws[(draws >= gammas[t]) & (draws < gammas[t - 1])]
        assert abs(len(inside) / len(draws) - 0.25) < 0.01
        middle = (gammas[t] + gammas[t - 1]) / 2
        assert abs(inside.mean() - middle) < 0.01 * (gammas[t - 1] - gammas[t]) + 1e-3


def test_q_sample_mixes_signal_and_noise_by_the_level():
    clean, noise = torch.ones(2, 1, 3, 3), torch.full((2, 1, 3, 3), 2.0)
    gamma = torch.tensor([1.0, 0.36])
    noisy = q_sample(clean, gamma, noise)
    assert torch.equal(noisy[0], clean[0])
    assert torch.allclose(noisy[1], torch.full((1, 3, 3), 0.6 + 0.8 * 2))


def test_levels_respace_the_schedule_from_the_strength_down_to_one():
    full = SCHEDULE.levels(100)
    assert len(full) == 101 and full[0] == float(SCHEDULE.gammas[-1]) and full[-1] == 1.0
    assert all(a < b for a, b in zip(full, full[1:], strict=False))
    half = SCHEDULE.levels(10, strength=0.5)
    assert len(half) == 11 and half[0] == float(SCHEDULE.gammas[1000])
    assert SCHEDULE.levels(50, strength=0.001) == [float(SCHEDULE.gammas[t]) for t in (2, 1, 0)]
    assert SCHEDULE.levels(10, strength=1e-4) == [1.0]
    with pytest.raises(UsageError, match="strength in"):
        SCHEDULE.levels(10, strength=0)


def test_scales_convert_both_ways():
    hu = torch.tensor([-3000.0, -1024.0, 0.0, 2048.0, 4000.0])
    signal = signal_of_hu(hu)
    assert signal.tolist() == pytest.approx([-1, -1, -1 + 2 * 1024 / 3072, 1, 1])
    assert hu_of_signal(signal)[1:4].tolist() == pytest.approx([-1024, 0, 2048])
    assert torch.equal(to_unit(to_signal(torch.tensor([0.25]))), torch.tensor([0.25]))


def _oracle(clean: torch.Tensor):
    """The noise a state holds if its clean image is ``clean``: a perfect denoiser."""

    def predict(state: torch.Tensor, gamma: float, step: int) -> torch.Tensor:
        return (state - math.sqrt(gamma) * clean) / math.sqrt(1 - gamma)

    return predict


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_a_perfect_denoiser_leads_either_sampler_to_the_clean_image(sampler):
    generator = torch.Generator().manual_seed(3)
    clean = torch.rand(2, 1, 8, 8, generator=generator) * 1.6 - 0.8
    levels = SCHEDULE.levels(7)
    state = initial_state(clean.shape, levels[0], generator)
    made = sample(_oracle(clean), state, levels, sampler, generator)
    assert torch.allclose(made, clean, atol=1e-5)


def _denoiser_sampling(seed: int, sampler: str, steps: int = 4) -> torch.Tensor:
    """A small untrained DSDM (its modulations moved off zero) sampling two planes."""
    torch.manual_seed(0)
    model = create_model("dsdm-small").eval()
    with torch.no_grad():
        for modulation in model.image_stream.modulations:
            modulation.project.weight.normal_(0, 0.1)
    condition = torch.linspace(-1, 1, 2 * 20 * 24).reshape(2, 1, 20, 24)
    structure_map = model.structure_map(condition, condition.abs())
    generator = torch.Generator().manual_seed(seed)
    levels = NoiseSchedule.of(model.config).levels(steps)

    def predict(state: torch.Tensor, gamma: float, step: int) -> torch.Tensor:
        level = torch.tensor([math.sqrt(gamma)])
        return model.predict_noise(state, condition, structure_map, level)

    with torch.inference_mode():
        state = initial_state(condition.shape, levels[0], generator)
        return sample(predict, state, levels, sampler, generator)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_the_same_seed_gives_the_same_output_and_another_seed_another(sampler):
    first = _denoiser_sampling(1, sampler)
    assert torch.equal(first, _denoiser_sampling(1, sampler))
    assert not torch.allclose(first, _denoiser_sampling(2, sampler))
    assert first.shape == (2, 1, 20, 24) and first.abs().max() <= 1


def test_ddim_draws_noise_only_for_its_start_and_ancestral_at_every_step():
    generator = torch.Generator().manual_seed(0)
    clean = torch.zeros(1, 1, 4, 4)
    levels = SCHEDULE.levels(5)
    state = initial_state(clean.shape, levels[0], generator)

    def predict(state: torch.Tensor, gamma: float, step: int) -> torch.Tensor:
        return torch.full_like(state, 0.3)  # wrong on purpose: fresh noise then shows

    made = {}
    for sampler in ("ancestral", "ddim"):
        outputs = [
            sample(predict, state.clone(), levels, sampler, torch.Generator().manual_seed(s))
            for s in (5, 6)
        ]
        made[sampler] = torch.equal(*outputs)
    assert made == {"ancestral": False, "ddim": True}


def test_refinement_near_zero_strength_returns_its_start_image():
    generator = torch.Generator().manual_seed(0)
    start = torch.rand(1, 1, 6, 6, generator=generator) * 2 - 1
    levels = SCHEDULE.levels(10, strength=1e-4)
    state = initial_state(start.shape, levels[0], generator, start=start)

    def predict(state: torch.Tensor, gamma: float, step: int) -> torch.Tensor:
        raise AssertionError("no step is left to take")

    assert torch.equal(sample(predict, state, levels, "ancestral", generator), start)


def test_unknown_samplers_are_refused():
    with pytest.raises(UsageError, match="sampler must be one of ancestral, ddim"):
        sample(_oracle(torch.zeros(1)), torch.zeros(1), [0.5, 1.0], "euler", torch.Generator())
