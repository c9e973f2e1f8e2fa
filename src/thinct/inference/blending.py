"""Blended model slots back into thin slices: the writing half of the sliding window.

Windows finish in order; each adds its weighted slots, and a slot no later window can touch
is released to the writer, which interpolates the thin slices that lie between slots and
scales them back to HU. The output volume is the only full-size buffer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from thinct.volume import HU_MAX, HU_MIN

# A thin slice closer than this (in slots) to a model slot is that slot.
SLOT_EPS = 1e-4


class SlotWriter:
    """Receives finished model slots in order and writes the thin slices that lie on or
    between them into the output (scaled back to HU)."""

    def __init__(self, positions: np.ndarray, output: np.ndarray, finish: Callable) -> None:
        self.positions = positions  # slot coordinate of each thin slice, increasing
        self.output = output
        self.finish = finish  # (thin index, HU slice) -> final slice
        self.next = 0
        self.previous: tuple[int, np.ndarray] | None = None

    def add(self, slot: int, values: np.ndarray) -> None:
        while self.next < len(self.positions) and self.positions[self.next] <= slot + SLOT_EPS:
            position = self.positions[self.next]
            if abs(position - slot) <= SLOT_EPS or self.previous is None:
                value = values
            else:
                before, earlier = self.previous
                fraction = float((position - before) / (slot - before))  # keeps float32
                value = (1 - fraction) * earlier + fraction * values
            self.output[self.next] = self.finish(self.next, value * (HU_MAX - HU_MIN) + HU_MIN)
            self.next += 1
        self.previous = (slot, values)


class SlotBlender:
    """Accumulates weighted window predictions per slot and releases slots once final."""

    def __init__(self, writer: SlotWriter) -> None:
        self.writer = writer
        self.sums: dict[int, np.ndarray] = {}
        self.weights: dict[int, float] = {}

    def add(self, first_slot: int, values: np.ndarray, weights: np.ndarray) -> None:
        for offset, (plane, weight) in enumerate(zip(values, weights, strict=True)):
            slot = first_slot + offset
            if slot in self.sums:
                self.sums[slot] += weight * plane
                self.weights[slot] += weight
            else:
                self.sums[slot] = weight * plane
                self.weights[slot] = weight

    def release(self, before: int | None = None) -> None:
        """Hand every slot below ``before`` (all when None) to the writer, in order."""
        for slot in sorted(self.sums):
            if before is not None and slot >= before:
                break
            self.writer.add(slot, self.sums.pop(slot) / self.weights.pop(slot))


class Baseline:
    """Linear interpolation of the thick slices at a thin slice's position, in HU: what the
    model cannot reproduce (values outside the intensity window) is taken from it."""

    def __init__(self, thick: np.ndarray, source_index: np.ndarray) -> None:
        self.thick = thick
        self.source_index = np.clip(source_index, 0, thick.shape[0] - 1)

    def restore(self, j: int, predicted: np.ndarray) -> np.ndarray:
        position = self.source_index[j]
        below = int(math.floor(position))
        above = min(below + 1, self.thick.shape[0] - 1)
        fraction = position - below
        baseline = (1 - fraction) * self.thick[below] + fraction * self.thick[above]
        clipped = (baseline < HU_MIN) | (baseline > HU_MAX)
        return np.where(clipped, baseline, predicted)
