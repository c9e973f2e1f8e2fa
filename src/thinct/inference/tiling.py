"""Where the engine's windows and tiles go, and how their overlaps are weighted: the planning
half of the sliding window, numpy only.

Along the slices, windows of ``L`` thick slices start so that every wanted slot lies in a
window's trusted middle, the scan reflected past its ends; their shared slots are
cross-faded by `slot_weights`. In-plane, tiles start on the model's window grid and ramp
over the pixels they share, so the weights of all tiles covering a pixel sum to a known
coverage.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from thinct.volume import HU_MAX, HU_MIN


def plan_windows(low: int, high: int, slices: int, ratio: int, overlap: int) -> list[int]:
    """First thick slices of the windows that cover slots ``low..high`` with their trusted
    middles (they may lie before 0 or past the end: the scan is reflected there).

    A slot counts as covered when it lies at least half a cross-fade (half the slots two
    neighbouring windows share) from both ends of a window.
    """
    slots = (slices - 1) * ratio + 1
    shared = (overlap - 1) * ratio + 1
    margin = shared // 2
    stride = slices - overlap
    start = math.floor((low - margin) / ratio)
    last = math.ceil((high + margin - (slots - 1)) / ratio)
    starts = list(range(start, max(start, last) + 1, stride))
    if starts[-1] < last:
        starts.append(last)  # moved back to end where the scan ends, as the published code does
    return starts


def slot_weights(slots: int, shared: int) -> np.ndarray:
    """Cross-fade weights of one window's slots: ramps over the slots shared with the
    neighbours, so two overlapping windows' weights sum to one. float32, so that weighted
    slots stay float32 (a float64 weight would double the blender's memory)."""
    distance = np.minimum(np.arange(slots), np.arange(slots)[::-1]).astype(np.float64)
    return np.minimum(1.0, (distance + 0.5) / shared).astype(np.float32)


def _tile_starts(size: int, tile: int, overlap: int, grid: int) -> list[int]:
    """Tile starts on multiples of ``grid`` (``size`` and ``tile`` are multiples of it), spread
    evenly, consecutive tiles sharing at least ``overlap`` pixels (rounded up to the grid, but
    never a whole tile)."""
    if size <= tile:
        return [0]
    units, tile_units = size // grid, tile // grid
    shared = min(-(-overlap // grid), tile_units - 1)
    count = math.ceil((units - shared) / (tile_units - shared))
    return [grid * round(i * (units - tile_units) / (count - 1)) for i in range(count)]


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1D tile weights: linear ramps over the pixels shared with the tile before and after."""
    index = np.arange(length, dtype=np.float64)
    weight = np.ones(length)
    if before > 0:
        weight = np.minimum(weight, (index + 0.5) / before)
    if after > 0:
        weight = np.minimum(weight, (length - index - 0.5) / after)
    return weight


def axis_tiles(size: int, tile: int, overlap: int, grid: int) -> list[tuple[int, np.ndarray]]:
    """(start, weights) of the tiles along one in-plane axis."""
    starts = _tile_starts(size, tile, overlap, grid)
    length = min(tile, size)
    tiles = []
    for i, start in enumerate(starts):
        before = starts[i - 1] + length - start if i > 0 else 0
        after = start + length - starts[i + 1] if i + 1 < len(starts) else 0
        tiles.append((start, _ramp(length, before, after)))
    return tiles


def reflected(index: np.ndarray, count: int) -> np.ndarray:
    """Indices reflected into 0..count-1 (mirror about the first and last slice)."""
    if count == 1:
        return np.zeros_like(index)
    period = 2 * (count - 1)
    folded = np.mod(index, period)
    return np.where(folded < count, folded, period - folded)


def in_plane_padding(size: int, multiple: int) -> int:
    return (-size) % multiple


def windows_of_input(
    thick: np.ndarray, starts: list[int], slices: int, padded: tuple[int, int]
) -> Iterator[np.ndarray]:
    """Each window's thick slices, reflected past the ends, windowed to [0, 1] and padded
    in-plane by reflection to ``padded``."""
    count, height, width = thick.shape
    pad = ((0, 0), (0, padded[0] - height), (0, padded[1] - width))
    for start in starts:
        index = reflected(np.arange(start, start + slices), count)
        cube = np.clip(thick[index].astype(np.float32), HU_MIN, HU_MAX)
        cube = (cube - HU_MIN) / (HU_MAX - HU_MIN)
        if any(after for _, after in pad):
            cube = np.pad(cube, pad, mode="reflect" if min(height, width) > 1 else "edge")
        yield cube
