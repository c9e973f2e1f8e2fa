"""DSDM's denoiser: a dual-stream structure-preserving network for 2D planes (Chu et al.,
MICCAI 2023), written from the paper's description.

Two streams of the RED-CNN kind (valid convolutions down, as many transposed convolutions
back, the encoder's activations added on the way up), so a plane comes out exactly the size
it went in, whatever its size, without padding that would bias its borders:

- the image stream reads the noisy image and the low-resolution condition (the thick scan
  interpolated onto the target grid) and is told the noise level: sqrt(gamma), as SR3
  conditions on it rather than on a step index, embedded as sinusoids and an MLP, and
  applied to every layer as a scale and shift of its activations (FiLM), starting at none;
- the structure stream reads the structure operator's map of the condition and the
  condition, and knows nothing of the noise.

The fusion module then gives the two outputs: a 3 x 3 convolution on each stream's
features, a structure block that makes the structure map (the structure domain, trained
against the operator's map of the reference) and a fusion block that predicts the noise
(the image domain) from the image features and that structure map. The structure map depends
on the condition only, so a sampler computes it once per plane (`structure_map`) and calls
`predict_noise` at every step: the structure stream costs one step, not every step.

Images are on the diffusion's [-1, 1] signal scale (`thinct.models.diffusion.to_signal`);
the structure input is the operator's map of the condition (`structure_input`, about 0 to 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thinct.models.config import DSDMConfig
from thinct.models.diffusion import hu_of_signal
from thinct.structure import enhance, lung_window

# The noise level sqrt(gamma) in (0, 1] is stretched by this before the sinusoids, so that
# their fastest period resolves the levels a sampler visits.
_LEVEL_SCALE = 1000.0
_MAX_PERIOD = 10000.0


def level_sinusoids(noise_level: Tensor, dim: int) -> Tensor:
    """(B,) noise levels as (B, dim) sines and cosines of geometrically spaced frequencies."""
    half = dim // 2
    exponents = torch.arange(half, device=noise_level.device, dtype=torch.float32) / half
    frequencies = torch.exp(-math.log(_MAX_PERIOD) * exponents)
    angles = noise_level.float()[:, None] * _LEVEL_SCALE * frequencies[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def structure_input(condition: Tensor) -> Tensor:
    """The structure stream's input: the structure operator's map of (..., H, W) condition
    planes on the signal scale, read on the lung window as the operator expects."""
    return enhance(lung_window(hu_of_signal(condition)))


class Modulation(nn.Module):
    """A layer's scale and shift from the noise level's embedding: ``x * (1 + scale) +
    shift``, zero at the start so that an untrained stream ignores the level."""

    def __init__(self, embedding_dim: int, channels: int) -> None:
        super().__init__()
        self.project = nn.Linear(embedding_dim, 2 * channels)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        scale, shift = self.project(embedding)[:, :, None, None].chunk(2, dim=1)
        return torch.addcmul(shift, x, 1 + scale)


class REDStream(nn.Module):
    """Valid ``kernel`` convolutions through ``widths`` and transposed ones back to
    ``out_channels`` (the input's size), each transposed output plus the encoder activation of
    its size; with an ``embedding_dim``, every layer is modulated by the noise level."""

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        kernel: int,
        out_channels: int,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        down = (in_channels, *widths)
        up = (*widths[::-1], out_channels)
        self.encoder = nn.ModuleList(
            nn.Conv2d(down[i], down[i + 1], kernel) for i in range(len(widths))
        )
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(up[i], up[i + 1], kernel) for i in range(len(widths))
        )
        self.modulations: nn.ModuleList | None = None
        if embedding_dim is not None:
            self.modulations = nn.ModuleList(
                Modulation(embedding_dim, channels) for channels in (*widths, *up[1:])
            )

    def _modulated(self, x: Tensor, layer: int, embedding: Tensor | None) -> Tensor:
        if self.modulations is not None and embedding is not None:
            x = self.modulations[layer](x, embedding)
        # In place where no gradient needs the input: elementwise passes over full planes
        # are a large part of a small stream's time on a CPU.
        return F.silu(x, inplace=not torch.is_grad_enabled())

    def forward(self, x: Tensor, embedding: Tensor | None = None) -> Tensor:
        # oneDNN's CPU convolutions are faster channels-last (as for ThickGridNet).
        x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for layer, conv in enumerate(self.encoder):
            x = self._modulated(conv(x), layer, embedding)
            skips.append(x)
        skips.pop()  # the deepest activation is the decoder's input itself
        depth = len(self.encoder)
        for layer, conv in enumerate(self.decoder):
            x = conv(x)
            if skips:
                x += skips.pop()  # a convolution's output is not kept for its backward
            x = self._modulated(x, depth + layer, embedding)
        return x


class DSDMDenoiser(nn.Module):
    """``forward(noisy, condition, structure, noise_level) -> (noise, structure_map)``:
    (B, 1, H, W) planes and (B,) noise levels sqrt(gamma) in, the predicted noise and the
    structure map out, each (B, 1, H, W), for any H and W."""

    # The sha256 of the weights, as the model card of the folder they were loaded from records
    # and loading checked (provenance); None for fresh weights.
    weights_sha256: str | None = None

    def __init__(self, config: DSDMConfig | None = None) -> None:
        super().__init__()
        config = config or DSDMConfig()
        self.config = config
        widths, kernel, features = config.widths, config.kernel_size, config.fusion_channels
        dim = config.embedding_dim
        self.embedding = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))
        self.image_stream = REDStream(2, widths, kernel, features, embedding_dim=dim)
        self.structure_stream = REDStream(2, widths, kernel, features)
        self.image_conv = nn.Conv2d(features, features, 3, padding=1)
        self.structure_conv = nn.Conv2d(features, features, 3, padding=1)
        self.structure_block = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(features, 1, 3, padding=1),
        )
        self.fusion_block = nn.Sequential(
            nn.Conv2d(features + 1, features, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(features, 1, 3, padding=1),
        )

    def _padded(self, *planes: Tensor) -> tuple[list[Tensor], tuple[int, int]]:
        """Planes smaller than the valid convolutions allow, replicated at their far edges up
        to that size; and the size to crop the outputs back to."""
        for plane in planes:
            self.config.check_input(plane.shape)
        height, width = planes[0].shape[-2:]
        smallest = self.config.smallest_plane
        extra = (0, max(0, smallest - width), 0, max(0, smallest - height))
        if not any(extra):
            return list(planes), (height, width)
        return [F.pad(plane, extra, mode="replicate") for plane in planes], (height, width)

    def structure_map(self, condition: Tensor, structure: Tensor) -> Tensor:
        """The structure domain's output, from the condition and its operator map alone."""
        (condition, structure), (height, width) = self._padded(condition, structure)
        features = self.structure_stream(torch.cat([structure, condition], dim=1))
        return self.structure_block(self.structure_conv(features))[..., :height, :width]

    def predict_noise(
        self, noisy: Tensor, condition: Tensor, structure_map: Tensor, noise_level: Tensor
    ) -> Tensor:
        """The image domain's output: the noise in ``noisy`` at level sqrt(gamma)."""
        planes, (height, width) = self._padded(noisy, condition, structure_map)
        noisy, condition, structure_map = planes
        levels = noise_level.reshape(-1).expand(noisy.shape[0])
        embedding = self.embedding(level_sinusoids(levels, self.config.embedding_dim))
        features = self.image_stream(torch.cat([noisy, condition], dim=1), embedding)
        fused = torch.cat([self.image_conv(features), structure_map], dim=1)
        return self.fusion_block(fused)[..., :height, :width]

    def forward(
        self, noisy: Tensor, condition: Tensor, structure: Tensor, noise_level: Tensor
    ) -> tuple[Tensor, Tensor]:
        structure_map = self.structure_map(condition, structure)
        return self.predict_noise(noisy, condition, structure_map, noise_level), structure_map
