"""Training a diffusion model (DSDM, `thinct.models.dsdm`) on the planes of training crops.

The crops are the same as for the regression models (``slices`` thick slices and the
``out_slots`` thin slots of a ``tile`` x ``tile`` patch, `thinct.data.crops`); a diffusion
model learns from 2D planes of them that contain the slice axis (coronal planes; the crops'
random transposes make half of them sagittal), ``diffusion.planes`` random planes per crop.
The condition of a plane is what the engine will give the model at inference: the thick
crop interpolated onto the thin slots by the model's ``condition_method``, through the same
function (`thinct.inference.planes.condition_hu`).

The objective, after Chu et al. (MICCAI 2023) on SR3's conditioning:

- image domain: the squared error of the predicted noise, plus ``l1_weight`` times the L1
  distance of the clean image the prediction implies (clipped to the signal range, as the
  samplers clip it: at the noisiest levels the implied image divides by sqrt(gamma) ~ 0.007
  and would otherwise outweigh everything else) to the reference;
- structure domain, weighted by ``structure_weight``: the L1 distance of the structure
  surrogate's maps (`thinct.structure.load_surrogate`, frozen) of that implied image and of
  the reference, plus the L1 distance of the model's own structure map to the surrogate's
  map of the reference.

An exponential moving average of the weights (``ema``) is what validation scores and what
the run's ``best/`` keeps: diffusion models sample markedly better from averaged weights.
"""

from __future__ import annotations

import copy

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thinct.geometry import Grid, thin_grid
from thinct.inference.planes import condition_hu
from thinct.models.config import DSDMConfig
from thinct.models.diffusion import NoiseSchedule, hu_of_signal, to_signal
from thinct.models.dsdm import structure_input
from thinct.structure import load_surrogate, lung_window
from thinct.train.config import DiffusionSection
from thinct.volume import HU_MAX, HU_MIN, Volume


def crop_conditions(thick: Tensor, ratio: int, method: str) -> Tensor:
    """(B, 1, slots, H, W) conditions of (B, 1, slices, H, W) thick crops on the [0, 1] scale:
    each crop interpolated onto its thin slots as the engine interpolates a whole scan."""
    conditions = []
    for crop in thick[:, 0].cpu().numpy():
        hu = crop * (HU_MAX - HU_MIN) + HU_MIN
        image = sitk.GetImageFromArray(hu.astype(np.float32))
        image.SetSpacing((1.0, 1.0, float(ratio)))
        thin = thin_grid(Grid.of(image), factor=ratio, align="centers")
        stack = condition_hu(Volume(image), thin, method)
        conditions.append((np.clip(stack, HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN))
    return torch.from_numpy(np.stack(conditions)[:, None].astype(np.float32)).to(thick.device)


def crop_planes(
    thin: Tensor, condition: Tensor, count: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``count`` random coronal planes of each crop: (B * count, 1, slots, W) references and
    conditions on the signal scale."""
    batch, _, _, rows, _ = thin.shape
    picks = torch.randint(0, rows, (batch, count), generator=generator).to(thin.device)
    index = picks[:, None, None, :, None].expand(-1, 1, thin.shape[2], -1, thin.shape[4])
    planes = [torch.gather(t, 3, index).permute(0, 3, 1, 2, 4) for t in (thin, condition)]
    reference, cond = (p.reshape(batch * count, 1, thin.shape[2], thin.shape[4]) for p in planes)
    return to_signal(reference), to_signal(cond)


class DiffusionObjective(nn.Module):
    """The loss of one batch of crops for a DSDM denoiser (see the module docstring)."""

    def __init__(self, config: DSDMConfig, weights: DiffusionSection, seed: int, step: int) -> None:
        super().__init__()
        self.config = config
        self.weights = weights
        self.schedule = NoiseSchedule.of(config)
        self.surrogate = load_surrogate().requires_grad_(False)
        # Planes and noise levels come from their own stream, resumed runs included.
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + step)

    def _structure(self, signal: Tensor) -> Tensor:
        return self.surrogate(lung_window(hu_of_signal(signal)))

    def forward(self, network: nn.Module, thick: Tensor, thin: Tensor) -> Tensor:
        """The loss of ``network`` (the model, or its DistributedDataParallel wrapper)."""
        config = self.config
        condition = crop_conditions(thick, config.ratio, config.condition_method)
        reference, cond = crop_planes(thin, condition, self.weights.planes, self.generator)
        count = reference.shape[0]
        gamma = self.schedule.training_levels(count, self.generator, reference.device)
        noise = torch.randn(reference.shape, generator=self.generator).to(reference.device)
        scale = gamma.reshape(-1, 1, 1, 1)
        noisy = scale.sqrt() * reference + (1 - scale).sqrt() * noise
        with torch.no_grad():
            structure = structure_input(cond)
        predicted, structure_map = network(noisy, cond, structure, gamma.sqrt())
        loss = F.mse_loss(predicted, noise)
        implied = ((noisy - (1 - scale).sqrt() * predicted) / scale.sqrt()).clamp(-1, 1)
        loss = loss + self.weights.l1_weight * F.l1_loss(implied, reference)
        if self.weights.structure_weight > 0:
            with torch.no_grad():
                target = self._structure(reference)
            domain = F.l1_loss(self._structure(implied), target)
            domain = domain + F.l1_loss(structure_map, target)
            loss = loss + self.weights.structure_weight * domain
        return loss


class WeightAverage:
    """An exponential moving average of a model's weights, kept in a copy of the model."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for average, current in zip(
            self.model.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if average.is_floating_point():
                average.lerp_(current, 1 - self.decay)
            else:
                average.copy_(current)
