"""The decoders and the head that CTHNet and TVSRN share, and the interpolation every
residual model adds its output to.

The through-plane decoder:
The thin slots are stacked as image rows so that 2D Swin attention mixes information along z:
in the sagittal view, groups of ``fold`` neighbouring columns are folded into channels and
each group is a (slots x H) image; the coronal view does the same over rows. Both views go
through one shared backbone and are unfolded back and summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from thinct.models.blocks import SwinBackbone2d
from thinct.models.config import ModelConfig, SwinDecoderConfig


class ThroughPlaneDecoder(nn.Module):
    def __init__(self, backbone: SwinBackbone2d, fold: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fold = fold

    def forward(self, rows: Tensor) -> Tensor:
        """rows: (B, slots, C, H, W) -> the sum of both views, same shape."""
        batch = rows.shape[0]
        sagittal = rearrange(rows, "b s c h (g f) -> (b g) (c f) s h", f=self.fold)
        sagittal = rearrange(
            self.backbone(sagittal), "(b g) (c f) s h -> b s c h (g f)", b=batch, f=self.fold
        )
        coronal = rearrange(rows, "b s c (g f) w -> (b g) (c f) s w", f=self.fold)
        coronal = rearrange(
            self.backbone(coronal), "(b g) (c f) s w -> b s c (g f) w", b=batch, f=self.fold
        )
        return sagittal + coronal


def build_decoders(
    config: SwinDecoderConfig, masked: bool, stage_conv: bool
) -> tuple[ThroughPlaneDecoder, SwinBackbone2d]:
    """The through-plane decoder and the in-plane backbone (over all latent planes of all
    slots as channels). TVSRN masks its shifted windows; CTHNet ends each stage with a conv."""
    latent = config.latent_channels

    def backbone(dim: int, depths: tuple[int, ...], heads: int, window: int) -> SwinBackbone2d:
        return SwinBackbone2d(
            dim,
            depths,
            heads,
            window,
            masked=masked,
            stage_conv=stage_conv,
            mlp_ratio=config.mlp_ratio,
            drop_path_rate=config.drop_path_rate,
        )

    through = backbone(
        latent * config.fold, config.through_depths, config.through_heads, config.through_window
    )
    in_plane = backbone(
        latent * config.out_slots,
        config.in_plane_depths,
        config.in_plane_heads,
        config.in_plane_window,
    )
    return ThroughPlaneDecoder(through, config.fold), in_plane


class PointwiseHead(nn.Sequential):
    """Per voxel and slot, the latent channels to one intensity: 1 x 1 x 1 convolution,
    LeakyReLU, 1 x 1 x 1 convolution (a Sequential, so its weights keep the published names).

    At inference it runs slot by slot as small matrix products: CPU 1 x 1 x 1 convolutions
    over a few channels of a whole tile are memory-bound, and this is about 3 times faster.
    """

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        first, act, last = self
        w1, b1 = first.weight.flatten(1), first.bias[:, None]
        w2, b2 = last.weight.flatten(1), last.bias[:, None]
        batch, channels, slots, height, width = x.shape
        out = None  # allocated with the first slot's dtype, which autocast decides
        for slot in range(slots):
            plane = x[:, :, slot].reshape(batch, channels, height * width)
            hidden = act(torch.baddbmm(b1, w1.expand(batch, -1, -1), plane))
            value = torch.baddbmm(b2, w2.expand(batch, -1, -1), hidden)
            if out is None:
                out = value.new_empty(batch, 1, slots, height, width)
            out[:, 0, slot] = value.reshape(batch, height, width)
        return out


def pointwise_head(config: SwinDecoderConfig) -> PointwiseHead:
    """The head; a residual head starts at zero, so an untrained model is exactly linear
    interpolation."""
    head = PointwiseHead(
        nn.Conv3d(config.latent_channels, config.head_channels, 1),
        nn.LeakyReLU(0.01),
        nn.Conv3d(config.head_channels, 1, 1),
    )
    if config.interpolation_residual:
        nn.init.zeros_(head[-1].weight)
        nn.init.zeros_(head[-1].bias)
    return head


def with_interpolation(out: Tensor, thick: Tensor, config: ModelConfig) -> Tensor:
    """With ``interpolation_residual``, the head's output is a correction to the linear
    interpolation of the thick slices (align_corners puts thick slice z on slot ratio * z)."""
    if not config.interpolation_residual:
        return out
    return out + F.interpolate(thick, size=out.shape[2:], mode="trilinear", align_corners=True)
