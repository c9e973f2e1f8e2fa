"""The diffusion of DSDM (SR3's conditioning): its noise schedule, the noising of training, and
the samplers that turn noise, or a first guess, into an image.

The schedule is SR3's: ``T`` betas rising linearly, and gamma_t, the product of (1 - beta)
up to step t, the share of signal left at step t (gamma_0 = 1: no noise). A training example
is ``sqrt(gamma) y + sqrt(1 - gamma) eps`` with gamma drawn uniformly between two consecutive
gammas, so the denoiser learns a continuum of noise levels, told sqrt(gamma) rather than a
step index; any schedule of levels can then be sampled.

Sampling visits a few of the ``T`` levels, evenly spaced steps (respacing), from the
noisiest to gamma = 1:

- ``ancestral``: DDPM's posterior step between consecutive visited levels, with fresh noise
  at every step but the last (the paper's sampler, usually 100 steps);
- ``ddim``: DDIM's deterministic step (eta = 0), good with far fewer steps.

Both estimate the clean image at every step and clip it to the signal range before the step,
as SR3 does. Refinement (SDEdit) starts from a given image noised to the level at a
``strength`` in (0, 1] of the schedule instead of from pure noise: the lower the strength,
the fewer levels are left and the closer the result stays to its start; near 0 none is left
and the start comes back unchanged.

Images are on the signal scale [-1, 1] (`to_signal` of thinct's [0, 1] scale); every random
draw comes from the caller's ``torch.Generator``, so a seed gives the same output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from thinct.errors import Argument, UsageError
from thinct.inference.options import SAMPLERS
from thinct.models.config import DSDMConfig
from thinct.volume import HU_MAX, HU_MIN

# (state, gamma, step index) -> the noise the denoiser sees in the state.
NoisePredictor = Callable[[Tensor, float, int], Tensor]


def to_signal(unit: Tensor) -> Tensor:
    """thinct's [0, 1] intensity scale to the diffusion's [-1, 1]."""
    return unit * 2 - 1


def to_unit(signal: Tensor) -> Tensor:
    """The diffusion's [-1, 1] back to thinct's [0, 1] scale."""
    return (signal + 1) / 2


def signal_of_hu(hu: Tensor) -> Tensor:
    """Hounsfield units, clipped to the models' window [HU_MIN, HU_MAX], on the signal scale."""
    return to_signal((hu.clamp(HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN))


def hu_of_signal(signal: Tensor) -> Tensor:
    """The signal scale back to Hounsfield units."""
    return to_unit(signal) * (HU_MAX - HU_MIN) + HU_MIN


@dataclass(frozen=True)
class NoiseSchedule:
    """``gammas[t]`` for t = 0..T, falling from 1 (float64, on the CPU)."""

    gammas: Tensor

    @classmethod
    def linear(cls, steps: int, beta_start: float, beta_end: float) -> NoiseSchedule:
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        gammas = torch.cumprod(1 - betas, dim=0)
        return cls(torch.cat([torch.ones(1, dtype=torch.float64), gammas]))

    @classmethod
    def of(cls, config: DSDMConfig) -> NoiseSchedule:
        return cls.linear(config.train_steps, config.beta_start, config.beta_end)

    @property
    def steps(self) -> int:
        return len(self.gammas) - 1

    def training_levels(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> Tensor:
        """(batch,) gammas for training: a step t in 1..T, then uniformly between gamma_t and
        gamma_(t-1) (float32, on ``device``; the draws on the CPU from ``generator``)."""
        step = torch.randint(1, self.steps + 1, (batch,), generator=generator)
        share = torch.rand(batch, generator=generator, dtype=torch.float64)
        low, high = self.gammas[step], self.gammas[step - 1]
        return (low + share * (high - low)).float().to(device)

    def levels(self, count: int, strength: float = 1.0) -> list[float]:
        """The gammas a sampler visits: ``count`` evenly spaced steps from the level at
        ``strength`` of the schedule down to gamma = 1, both ends included (fewer when the
        strength leaves fewer steps; only ``[1.0]`` when it leaves none)."""
        check_strength(strength)
        first = round(strength * self.steps)
        count = min(count, first)
        steps = torch.linspace(first, 0, count + 1).round().long() if count else torch.zeros(1)
        return [float(self.gammas[int(t)]) for t in steps]


def check_strength(strength: float) -> None:
    """Refuse a refinement strength outside (0, 1]: the share of the schedule to go back."""
    if not (math.isfinite(strength) and 0 < strength <= 1):
        raise UsageError(Argument("refine"), f" must be a strength in (0, 1], got {strength:g}")


def q_sample(clean: Tensor, gamma: Tensor, noise: Tensor) -> Tensor:
    """``sqrt(gamma) clean + sqrt(1 - gamma) noise``, gamma (B,) for a batch of (B, ...)."""
    gamma = gamma.reshape(-1, *([1] * (clean.dim() - 1)))
    return gamma.sqrt() * clean + (1 - gamma).sqrt() * noise


def estimated_clean(state: Tensor, noise: Tensor, gamma: float | Tensor) -> Tensor:
    """The clean image a noise prediction implies, ``(state - sqrt(1 - gamma) noise) /
    sqrt(gamma)``, clipped to the signal range: a new tensor. ``gamma`` is one level (a
    sampler's step) or (B,) levels of a training batch, differentiable."""
    if isinstance(gamma, Tensor):
        gamma = gamma.reshape(-1, *([1] * (state.dim() - 1)))
        return ((state - (1 - gamma).sqrt() * noise) / gamma.sqrt()).clamp(-1, 1)
    clean = torch.add(state, noise, alpha=-math.sqrt(1 - gamma))
    return clean.div_(math.sqrt(gamma)).clamp_(-1, 1)


def ancestral_step(
    state: Tensor, noise: Tensor, gamma: float, following: float, generator: torch.Generator
) -> Tensor:
    """DDPM's posterior sample at level ``following`` (> ``gamma``), given the state at
    ``gamma`` and its predicted noise; with respacing, beta is 1 - gamma / following. The
    state is updated in place (a volume's state is large) and returned."""
    clean = estimated_clean(state, noise, gamma)
    beta = 1 - gamma / following
    from_clean = math.sqrt(following) * beta / (1 - gamma)
    from_state = math.sqrt(1 - beta) * (1 - following) / (1 - gamma)
    state.mul_(from_state).add_(clean, alpha=from_clean)
    del clean
    variance = beta * (1 - following) / (1 - gamma)
    if variance > 0:  # none on the last step, to gamma = 1
        fresh = torch.randn(
            state.shape, generator=generator, device=state.device, dtype=state.dtype
        )
        state.add_(fresh, alpha=math.sqrt(variance))
    return state


def ddim_step(state: Tensor, noise: Tensor, gamma: float, following: float) -> Tensor:
    """DDIM's deterministic step to level ``following``: the clean estimate noised by the
    noise it implies, ``(state - sqrt(gamma) clean) / sqrt(1 - gamma)``, written as a mix of
    the state and the clean estimate. The state is updated in place and returned."""
    clean = estimated_clean(state, noise, gamma)
    from_state = math.sqrt((1 - following) / (1 - gamma))
    from_clean = math.sqrt(following) - from_state * math.sqrt(gamma)
    return state.mul_(from_state).add_(clean, alpha=from_clean)


def initial_state(
    shape: Sequence[int],
    level: float,
    generator: torch.Generator,
    start: Tensor | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Where sampling begins: pure noise, or ``start`` (a signal) noised to gamma ``level``."""
    device = start.device if start is not None else device
    noise = torch.randn(tuple(shape), generator=generator, device=device)
    if start is None:
        return noise
    return math.sqrt(level) * start + math.sqrt(1 - level) * noise


def sample(
    predict: NoisePredictor,
    state: Tensor,
    levels: Sequence[float],
    sampler: str,
    generator: torch.Generator,
) -> Tensor:
    """Step ``state`` (at ``levels[0]``) through ``levels`` to gamma = 1, in place, and return
    it clipped to the signal range. ``predict(state, gamma, step)`` gives the noise at each
    step; a sampler over a volume decides there which planes to run
    (`thinct.inference.planes`)."""
    if sampler not in SAMPLERS:
        raise UsageError(
            Argument("sampler"), f" must be one of {', '.join(SAMPLERS)}, got {sampler!r}"
        )
    for step, (gamma, following) in enumerate(zip(levels[:-1], levels[1:], strict=True)):
        noise = predict(state, gamma, step)
        if sampler == "ancestral":
            state = ancestral_step(state, noise, gamma, following, generator)
        else:
            state = ddim_step(state, noise, gamma, following)
    return state.clamp_(-1, 1)
