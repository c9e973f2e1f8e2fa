"""CTHNet (Yu et al., npj Digital Medicine 2024): a 3D convolution-transformer encoder, then
a through-plane and an in-plane Swin decoder that fill in the thin slots between thick slices.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from thinct.models.blocks import (
    ResidualSwinStage,
    channels_first,
    channels_last,
    init_weights,
    sinusoidal_encoding,
)
from thinct.models.config import CTHNetConfig
from thinct.models.decoders import build_decoders, pointwise_head, with_interpolation


class HybridEncoder3d(nn.Module):
    """Convolution stem, CTH blocks (3D window attention, convolution, norm), convolution;
    a residual around the body keeps the stem's fine detail."""

    def __init__(self, config: CTHNetConfig) -> None:
        super().__init__()
        dim = config.encoder_dim
        self.stem = nn.Conv3d(1, dim, (3, 7, 7), padding=(1, 3, 3))
        self.norm_in = nn.LayerNorm(dim)
        self.stages = nn.ModuleList(
            ResidualSwinStage(
                dim,
                depth,
                config.encoder_heads,
                config.encoder_window,
                masked=False,
                conv=True,
                post_norm=True,
                mlp_ratio=config.mlp_ratio,
            )
            for depth in config.encoder_depths
        )
        self.norm_out = nn.LayerNorm(dim)
        self.conv_out = nn.Conv3d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        stem = self.stem(x)
        y = self.norm_in(channels_last(stem))
        for stage in self.stages:
            y = stage(y)
        return self.conv_out(channels_first(self.norm_out(y))) + stem


class CTHNet(nn.Module):
    """(B, 1, slices, H, W) thick slices in [0, 1] -> (B, 1, out_slots, H, W) thin slots."""

    # The sha256 of the weights, as the model card of the folder they were loaded from records
    # and loading checked (provenance); None for fresh weights or an official checkpoint.
    weights_sha256: str | None = None

    def __init__(self, config: CTHNetConfig | None = None) -> None:
        super().__init__()
        config = config or CTHNetConfig()
        self.config = config
        latent = config.latent_channels
        slots = config.out_slots
        self.encoder = HybridEncoder3d(config)
        self.to_latent = nn.Conv3d(config.encoder_dim, latent, 3, padding=1)
        self.register_buffer(
            "slot_encoding", sinusoidal_encoding(slots, latent).T.contiguous(), persistent=False
        )
        self.through_plane, self.in_plane = build_decoders(config, masked=False, stage_conv=True)
        self.in_plane_conv = nn.Conv2d(latent * slots, latent * slots, 3, padding=1)
        self.head = pointwise_head(config)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        self.config.check_input(x.shape)
        batch, _, _, height, width = x.shape
        latent, slots = self.config.latent_channels, self.config.out_slots
        encoded = self.to_latent(self.encoder(x))
        # Each slot starts as its nearest thick slice plus a code for where it sits.
        slotted = F.interpolate(encoded, size=(slots, height, width), mode="nearest")
        slotted = slotted + self.slot_encoding[None, :, :, None, None]
        if self.config.layout == "official":
            # The published code reads the (channel, slot) memory as (slot, channel) rows.
            rows = slotted.reshape(batch, slots, latent, height, width)
        else:
            rows = slotted.transpose(1, 2)
        through = self.through_plane(rows)
        if self.config.layout == "official":
            through = through.reshape(batch, latent * slots, height, width)
        else:
            through = through.transpose(1, 2).reshape(batch, latent * slots, height, width)
        residual = slotted.reshape(batch, latent * slots, height, width)
        out = self.in_plane_conv(self.in_plane(through)) + residual
        return with_interpolation(
            self.head(out.reshape(batch, latent, slots, height, width)), x, self.config
        )
