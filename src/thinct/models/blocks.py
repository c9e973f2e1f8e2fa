"""Shifted-window transformer blocks in 2D and 3D, the parts CTHNet and TVSRN share.

One implementation serves both: a window is a tuple of sizes, one per spatial axis, so the
3D Video-Swin layers of CTHNet's encoder and the 2D SwinIR layers of the decoders are the same
code. Windows are formed with reshapes (no Python loop over windows) and attention runs through
`torch.nn.functional.scaled_dot_product_attention`, with the relative position bias (and, for
TVSRN, the shifted-window mask) passed as its additive mask. Tensors inside a stage are
channels-last, ``(B, *spatial, C)``; sizes that are not a multiple of the window are padded
and cropped back, so any tile size works.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The additive mask between tokens that a cyclic shift brought together from opposite sides of
# the image (the value of the Swin papers; official TVSRN weights were trained with it).
SHIFT_MASK_VALUE = -100.0


def relative_position_index(window: Sequence[int]) -> Tensor:
    """Index into the relative position bias table for every pair of tokens of a window.

    Row-major over the per-axis offsets, each shifted to be non-negative: the layout of Swin
    (2D) and Video Swin (3D), which official weights depend on.
    """
    grids = torch.meshgrid(*[torch.arange(size) for size in window], indexing="ij")
    coords = torch.stack(grids).flatten(1)
    offsets = coords[:, :, None] - coords[:, None, :]
    index = torch.zeros_like(offsets[0])
    for axis, size in enumerate(window):
        index = index * (2 * size - 1) + offsets[axis] + size - 1
    return index


def window_partition(x: Tensor, window: Sequence[int]) -> Tensor:
    """(B, *spatial, C) -> (B, windows, tokens per window, C); spatial sizes divisible."""
    batch, *spatial, channels = x.shape
    dims = len(spatial)
    split = [batch]
    for size, win in zip(spatial, window, strict=True):
        split += [size // win, win]
    x = x.reshape(*split, channels)
    order = [0, *range(1, 2 * dims, 2), *range(2, 2 * dims + 1, 2), 2 * dims + 1]
    return x.permute(order).reshape(batch, -1, math.prod(window), channels)


def window_merge(windows: Tensor, window: Sequence[int], spatial: Sequence[int]) -> Tensor:
    """Inverse of `window_partition`: (B, windows, tokens, C) -> (B, *spatial, C)."""
    batch, _, _, channels = windows.shape
    dims = len(spatial)
    counts = [size // win for size, win in zip(spatial, window, strict=True)]
    x = windows.reshape(batch, *counts, *window, channels)
    order = [0]
    for axis in range(dims):
        order += [1 + axis, 1 + dims + axis]
    order.append(2 * dims + 1)
    return x.permute(order).reshape(batch, *spatial, channels)


def shifted_window_mask(
    spatial: Sequence[int], window: Sequence[int], shift: Sequence[int]
) -> Tensor:
    """Additive attention mask (windows, tokens, tokens) for a cyclically shifted grid.

    Tokens of one window that came from different regions of the unshifted grid must not
    attend to each other; within a region the mask is 0.
    """
    labels = torch.zeros(1, *spatial, 1)
    regions = [
        ((0, -win), (-win, -sh), (-sh, None)) if sh else ((0, None),)
        for win, sh in zip(window, shift, strict=True)
    ]
    for label, bounds in enumerate(itertools.product(*regions)):
        labels[(slice(None), *(slice(start, stop) for start, stop in bounds))] = label
    tokens = window_partition(labels, window)[0, :, :, 0]
    different = tokens[:, None, :] != tokens[:, :, None]
    return torch.zeros(different.shape).masked_fill(different, SHIFT_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: Sequence[int]) -> None:
        super().__init__()
        self.heads = heads
        self.window = tuple(window)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(math.prod(2 * size - 1 for size in window), heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> Tensor:
        """(heads, tokens, tokens) bias added to the attention logits."""
        tokens = math.prod(self.window)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(tokens, tokens, self.heads).permute(2, 0, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, windows, tokens, C); mask: (windows, tokens, tokens) or None."""
        batch, windows, tokens, channels = x.shape
        pack = _pack_size(windows, tokens)
        # Packed neighbouring windows form one longer sequence (a pure reshape); the mask
        # keeps each window to itself.
        length = pack * tokens
        qkv = self.qkv(x).reshape(batch * windows // pack, length, 3, self.heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # A 4D mask: PyTorch's fused CPU kernel takes no other shape (3D falls back to the
        # slower reference path).
        bias = self.position_bias()[None]
        if pack > 1:
            bias = _block_diagonal(bias[:, :, None].expand(-1, -1, pack, -1, -1))
        if mask is not None:
            if pack > 1:
                mask = _block_diagonal(mask.reshape(windows // pack, pack, tokens, tokens))
            # One mask per (packed) window, the same for every batch element.
            bias = (bias + mask[:, None]).repeat(batch, 1, 1, 1)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype))
        out = out.transpose(1, 2).reshape(batch, windows, tokens, channels)
        return self.proj(out)


# Attention over windows of a few tokens (the 2 x 2 x 2 windows of CTHNet's encoder) is
# dominated by per-sequence overhead in PyTorch's CPU kernel: attending over packs of windows
# at least this long, with a block-diagonal mask, is more than twice as fast and exact.
_PACKED_LENGTH = 32


def _pack_size(windows: int, tokens: int) -> int:
    """How many neighbouring windows to attend over as one sequence (a divisor of windows)."""
    pack = max(1, _PACKED_LENGTH // tokens)
    while windows % pack:
        pack -= 1
    return pack


def _block_diagonal(blocks: Tensor) -> Tensor:
    """(..., pack, tokens, tokens) -> (..., pack * tokens, pack * tokens): the blocks on the
    diagonal, -inf (no attention) everywhere else."""
    *lead, pack, tokens, _ = blocks.shape
    same = torch.eye(pack, dtype=torch.bool, device=blocks.device)[:, None, :, None]
    full = torch.where(same, blocks[..., :, :, None, :], float("-inf"))
    return full.reshape(*lead, pack * tokens, pack * tokens)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class SwinLayer(nn.Module):
    """Pre-norm (shifted) window attention then MLP, each a residual branch; channels-last."""

    def __init__(
        self,
        dim: int,
        heads: int,
        window: Sequence[int],
        shift: Sequence[int],
        masked: bool,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.window = tuple(window)
        self.shift = tuple(shift)
        self.masked = masked and any(self.shift)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self._windowings: dict[tuple, tuple[Tensor, ...]] = {}

    def _windowing(self, spatial: Sequence[int], device: torch.device) -> tuple[Tensor, ...]:
        """Token gather indices into windows of the shifted grid, their inverse, and the mask.

        Shifting and partitioning as one gather (and merging as another) moves each token
        once, instead of once per rolled axis plus once for the partition.
        """
        key = (tuple(spatial), device)
        if key in self._windowings:
            return self._windowings[key]
        # Never cached as inference tensors: a later training step would fail, since
        # index_select saves its index for the backward pass.
        with torch.inference_mode(False):
            tokens = torch.arange(math.prod(spatial)).reshape(1, *spatial, 1)
            if any(self.shift):
                tokens = torch.roll(
                    tokens, [-s for s in self.shift], tuple(range(1, len(spatial) + 1))
                )
            gather = window_partition(tokens, self.window).flatten()
            mask = shifted_window_mask(spatial, self.window, self.shift) if self.masked else None
            self._windowings[key] = tuple(
                None if t is None else t.to(device) for t in (gather, torch.argsort(gather), mask)
            )
        return self._windowings[key]

    def _attend(self, x: Tensor) -> Tensor:
        batch, *spatial, channels = x.shape
        pads = [(-size) % win for size, win in zip(spatial, self.window, strict=True)]
        if any(pads):
            # F.pad lists (before, after) pairs from the last axis backwards; channels first.
            x = F.pad(x, [0, 0] + [p for pad in reversed(pads) for p in (0, pad)])
        padded = x.shape[1:-1]
        gather, scatter, mask = self._windowing(padded, x.device)
        windows = x.reshape(batch, -1, channels).index_select(1, gather)
        windows = windows.reshape(batch, -1, math.prod(self.window), channels)
        if torch.is_grad_enabled():
            windows = self.attn(windows, mask)
        else:
            windows = self._attend_in_chunks(windows, mask)
        x = windows.reshape(batch, -1, channels).index_select(1, scatter).reshape(x.shape)
        if any(pads):
            x = x[(slice(None), *(slice(0, size) for size in spatial))]
        return x

    def _attend_in_chunks(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        """Attention a few thousand windows at a time (inference): the same result, without
        the full-size query, key, value and attention tensors."""
        batch, count, tokens, channels = windows.shape
        step = _chunk_rows(batch * tokens * 3 * channels, multiple=_PACKED_LENGTH)
        out = torch.empty_like(windows)
        for start in range(0, count, step):
            part = slice(start, start + step)
            out[:, part] = self.attn(windows[:, part], None if mask is None else mask[part])
        return out

    def _mlp(self, x: Tensor) -> Tensor:
        """x + MLP(norm(x)); at inference in chunks of tokens, which never holds the 4x wider
        hidden activations of the whole tile at once."""
        if torch.is_grad_enabled():
            return x + self.drop_path(self.mlp(self.norm2(x)))
        flat = x.reshape(-1, x.shape[-1])
        out = torch.empty_like(flat)
        step = _chunk_rows(self.mlp.fc1.out_features)
        for start in range(0, flat.shape[0], step):
            part = flat[start : start + step]
            out[start : start + step] = part + self.mlp(self.norm2(part))
        return out.reshape(x.shape)

    def forward(self, x: Tensor) -> Tensor:
        return self._mlp(x + self.drop_path(self._attend(self.norm1(x))))


# Inference processes tokens in chunks whose widest activation stays under this many bytes: a
# size glibc keeps in its heap for reuse (its mmap threshold tops out at 32 MB), so chunks cost
# no page faults, and the peak memory no longer grows with the tile area times the MLP width.
_CHUNK_BYTES = 16 * 2**20


def _chunk_rows(row_elements: int, multiple: int = 1) -> int:
    """Rows per chunk for rows of ``row_elements`` float32 values (a multiple of ``multiple``)."""
    rows = max(1, _CHUNK_BYTES // (4 * row_elements))
    return max(multiple, rows - rows % multiple)


def channels_last(x: Tensor) -> Tensor:
    return x.movedim(1, -1)


def channels_first(x: Tensor) -> Tensor:
    return x.movedim(-1, 1)


class ResidualSwinStage(nn.Module):
    """Swin layers (shifted on every second one), an optional convolution and norm, plus the
    stage input. With a 3D window it is CTHNet's CTH block; in 2D, SwinIR's residual group."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        window: Sequence[int],
        masked: bool,
        conv: bool,
        post_norm: bool = False,
        mlp_ratio: float = 4.0,
        drop_path: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        rates = list(drop_path) if drop_path is not None else [0.0] * depth
        shift = tuple(size // 2 for size in window)
        no_shift = (0,) * len(window)
        self.layers = nn.ModuleList(
            SwinLayer(dim, heads, window, shift if i % 2 else no_shift, masked, mlp_ratio, rates[i])
            for i in range(depth)
        )
        conv_class = nn.Conv3d if len(window) == 3 else nn.Conv2d
        self.conv = conv_class(dim, dim, 3, padding=1) if conv else None
        self.norm = nn.LayerNorm(dim) if post_norm else None

    def forward(self, x: Tensor) -> Tensor:
        y = x
        for layer in self.layers:
            y = layer(y)
        if self.conv is not None:
            y = channels_last(self.conv(channels_first(y)))
        if self.norm is not None:
            y = self.norm(y)
        return x + y


class SwinBackbone2d(nn.Module):
    """SwinIR's feature body: norm, residual Swin stages, norm; (B, C, H, W) in and out."""

    def __init__(
        self,
        dim: int,
        depths: Sequence[int],
        heads: int,
        window: int,
        masked: bool,
        stage_conv: bool,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.norm_in = nn.LayerNorm(dim)
        self.stages = nn.ModuleList(
            ResidualSwinStage(
                dim,
                depth,
                heads,
                (window, window),
                masked,
                conv=stage_conv,
                mlp_ratio=mlp_ratio,
                drop_path=rates[start : start + depth],
            )
            for depth, start in zip(depths, starts, strict=True)
        )
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm_in(channels_last(x))
        for stage in self.stages:
            y = stage(y)
        return channels_first(self.norm_out(y))


def sinusoidal_encoding(positions: int, channels: int) -> Tensor:
    """Fixed (positions, channels) encoding: sin on even channels, cos on odd ones (channels
    even)."""
    position = torch.arange(positions, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (torch.arange(0, channels, 2, dtype=torch.float64) / channels)
    encoding = torch.zeros(positions, channels, dtype=torch.float64)
    encoding[:, 0::2] = torch.sin(position / frequency)
    encoding[:, 1::2] = torch.cos(position / frequency)
    return encoding.float()


def init_weights(module: nn.Module) -> None:
    """Transformer initialisation: Linear truncated normal (std 0.02), LayerNorm identity."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
