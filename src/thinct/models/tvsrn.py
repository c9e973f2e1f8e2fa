"""TVSRN (Yu et al., RPLHR-CT, MICCAI 2022): the transformer baseline CTHNet grew from.

A 2D Swin encoder sees the thick slices folded into channels; empty slots are inserted
between them (zeros, the "mask tokens"), and the same through-plane and in-plane decoders as
CTHNet's fill them in.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from thinct.models.blocks import SwinBackbone2d, init_weights, sinusoidal_encoding
from thinct.models.config import TVSRNConfig
from thinct.models.decoders import build_decoders, pointwise_head, with_interpolation


class TVSRN(nn.Module):
    """(B, 1, slices, H, W) thick slices in [0, 1] -> (B, 1, out_slots, H, W) thin slots."""

    # The sha256 of the weights, as the model card of the folder they were loaded from records
    # and loading checked (provenance); None for fresh weights or an official checkpoint.
    weights_sha256: str | None = None

    def __init__(self, config: TVSRNConfig | None = None) -> None:
        super().__init__()
        config = config or TVSRNConfig()
        self.config = config
        latent, slots, patch = config.latent_channels, config.out_slots, config.patch
        encoder_dim = config.slices * latent
        # Each patch x patch block of all slices becomes one token, lifted to the encoder's
        # channels for every pixel of the block (a 1 x 1 convolution between pixel shuffles).
        self.lift = nn.Conv2d(config.slices * patch**2, encoder_dim * patch**2, 1)
        self.encoder = SwinBackbone2d(
            encoder_dim,
            config.encoder_depths,
            config.encoder_heads,
            config.encoder_window,
            masked=True,
            stage_conv=False,
            mlp_ratio=config.mlp_ratio,
        )
        self.register_buffer("slot_encoding", sinusoidal_encoding(slots, latent), persistent=False)
        self.through_plane, self.in_plane = build_decoders(config, masked=True, stage_conv=False)
        self.head = pointwise_head(config)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        self.config.check_input(x.shape)
        batch, _, thick, height, width = x.shape
        config = self.config
        latent, slots = config.latent_channels, config.out_slots
        lifted = F.pixel_shuffle(self.lift(F.pixel_unshuffle(x[:, 0], config.patch)), config.patch)
        encoded = self.encoder(lifted) + lifted
        rows = encoded.new_zeros(batch, slots, latent, height, width)
        rows[:, :: config.ratio] = encoded.reshape(batch, thick, latent, height, width)
        rows = rows + self.slot_encoding[None, :, :, None, None]
        through = (self.through_plane(rows) + rows).reshape(batch, slots * latent, height, width)
        out = self.in_plane(through) + through + rows.reshape(batch, slots * latent, height, width)
        if config.layout == "official":
            # The published code reads the (slot, channel) memory as (channel, slot).
            out = out.reshape(batch, latent, slots, height, width)
        else:
            out = out.reshape(batch, slots, latent, height, width).transpose(1, 2)
        return with_interpolation(self.head(out), x, config)


__all__ = ["TVSRN"]
