"""The through-plane decoder shared by CTHNet and TVSRN.

The thin slots are stacked as image rows so that 2D Swin attention mixes information along z:
in the sagittal view, groups of ``fold`` neighbouring columns are folded into channels and
each group is a (slots x H) image; the coronal view does the same over rows. Both views go
through one shared backbone and are unfolded back and summed.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from thinct.models.blocks import SwinBackbone2d


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
