"""ThickGridNet: thin slots from a (2+1)D convolution network that runs on the thick grid.

A thick scan has five times fewer slices than the thin scan made from it, so a network that
computes on the thick slices and only produces thin slots at its very end costs about a fifth
of one that computes on the thin grid. Each residual block is an in-plane 3 x 3 convolution
and a through-plane convolution over 3 thick slices (the (2+1)D factorisation of a 3D
convolution, a third of its cost); the head gives ``ratio`` channels per thick slice, which
are unfolded along z into the thin slots around it (a pixel shuffle along z) and added to the
linear interpolation of the thick slices. The head starts at zero: an untrained model is
linear interpolation.

Activations run channels-last (``torch.channels_last_3d``): oneDNN's CPU convolutions are
about twice as fast in that layout for these shapes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from thinct.models.config import ThickGridConfig
from thinct.models.decoders import with_interpolation

_SLOPE = 0.1


class FactorisedBlock(nn.Module):
    """x + through-plane(act(in-plane(x))): a (2+1)D residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_plane = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1))
        self.through_plane = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        self.act = nn.LeakyReLU(_SLOPE, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.through_plane(self.act(self.in_plane(x)))


class ThickGridNet(nn.Module):
    """(B, 1, slices, H, W) thick slices in [0, 1] -> (B, 1, out_slots, H, W) thin slots."""

    # The sha256 of the weights, as the model card of the folder they were loaded from records
    # and loading checked (provenance); None for fresh weights.
    weights_sha256: str | None = None

    def __init__(self, config: ThickGridConfig | None = None) -> None:
        super().__init__()
        config = config or ThickGridConfig()
        self.config = config
        width = config.channels
        self.stem = nn.Conv3d(1, width, 3, padding=1)
        self.body = nn.Sequential(*(FactorisedBlock(width) for _ in range(config.blocks)))
        self.act = nn.LeakyReLU(_SLOPE)
        self.head = nn.Conv3d(width, config.ratio, (1, 3, 3), padding=(0, 1, 1))
        if config.interpolation_residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        self.config.check_input(x.shape)
        ratio, slots = self.config.ratio, self.config.out_slots
        # A one-channel input is in both layouts, so the stem's output is made channels-last.
        features = self.stem(x).contiguous(memory_format=torch.channels_last_3d)
        features = self.act(self.body(features) + features)
        per_slice = self.head(features)  # (B, ratio, slices, H, W)
        batch, _, slices, height, width = per_slice.shape
        # Channel k of thick slice z is slot ratio * z + k - ratio // 2.
        unfolded = per_slice.transpose(1, 2).reshape(batch, 1, slices * ratio, height, width)
        first = ratio // 2
        return with_interpolation(unfolded[:, :, first : first + slots], x, self.config)
