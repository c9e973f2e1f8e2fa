"""Random training crops: ``slices`` thick slices of a ``tile`` x ``tile`` patch and the thin
slots between them, from a list of `Pair` s held in memory.

Crops are drawn forever (an iterable dataset), so a training run is counted in steps, not
epochs, and a worker process never runs dry. Pairs are picked in proportion to how many
crop positions they have, so a large scan is not under-sampled next to a small crop. Crops
that are almost all air (outside the body) teach nothing and are redrawn a few times.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from thinct.data.pairs import Pair, normalise
from thinct.errors import UsageError

# Voxels above this are tissue; a crop with less than `min_tissue` of them is redrawn.
_TISSUE_HU = -900.0
_REDRAWS = 10


@dataclass(frozen=True)
class CropOptions:
    """What a crop looks like and how it is augmented.

    ``flip`` is the probability of flipping each in-plane axis, ``transpose`` that of
    swapping them (both keep the slice alignment); ``intensity`` scales and shifts the HU of
    input and target together by up to that fraction of the window (0 turns it off);
    ``noise`` adds Gaussian noise of a standard deviation drawn from 0 to that many HU to the
    thick input only, so the model meets thick slices noisier than slab averages and learns
    not to reproduce their noise.
    """

    slices: int = 8
    ratio: int = 5
    tile: int = 64
    flip: float = 0.5
    transpose: float = 0.5
    intensity: float = 0.0
    noise: float = 0.0
    min_tissue: float = 0.1

    @property
    def slots(self) -> int:
        return (self.slices - 1) * self.ratio + 1


class CropSampler(IterableDataset):
    """Endless random (thick, thin) crops as float32 tensors on the [0, 1] scale:
    thick (1, slices, tile, tile), thin (1, slots, tile, tile)."""

    def __init__(
        self, pairs: Sequence[Pair], options: CropOptions, seed: int = 0, stream: int = 0
    ) -> None:
        """``stream`` starts a different sequence for the same seed (a resumed run passes
        its step, so it does not replay the crops it has already seen). Each process of a
        distributed run (its rank, read here: loader workers may not share the process
        group) and each loader worker draws its own sequence."""
        super().__init__()
        self.options = options
        self.seed = seed
        self.stream = stream
        self.rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.pairs = [pair for pair in pairs if self._positions(pair) > 0]
        if not self.pairs:
            raise UsageError(
                f"no training pair holds a crop of {options.slices} thick slices of "
                f"{options.tile} x {options.tile}"
            )
        for pair in self.pairs:
            if pair.ratio != options.ratio:
                raise UsageError(f"{pair.name}: ratio {pair.ratio}, the model's is {options.ratio}")
        counts = np.array([self._positions(p) for p in self.pairs], dtype=float)
        self.weights = counts / counts.sum()

    def _positions(self, pair: Pair) -> int:
        tile = self.options.tile
        rows, columns = pair.thick.shape[1:]
        if rows < tile or columns < tile:
            return 0
        return pair.window_starts(self.options.slices) * (rows - tile + 1) * (columns - tile + 1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([self.seed, self.stream, self.rank, worker])
        while True:
            yield self.draw(rng)

    def draw(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One crop; the generator decides everything, so a seed reproduces the stream."""
        options = self.options
        for _ in range(_REDRAWS):
            pair = self.pairs[rng.choice(len(self.pairs), p=self.weights)]
            thick, thin = self._cut(pair, rng)
            if np.mean(thick > _TISSUE_HU) >= options.min_tissue:
                break
        if options.noise > 0:
            sigma = rng.uniform(0, options.noise)
            thick = thick + rng.normal(0, sigma, thick.shape).astype(np.float32)
        thick, thin = normalise(thick), normalise(thin)
        if options.intensity > 0:
            scale = 1 + rng.uniform(-options.intensity, options.intensity)
            shift = rng.uniform(-options.intensity, options.intensity)
            thick, thin = thick * scale + shift, thin * scale + shift
        for axis in (1, 2):
            if rng.random() < options.flip:
                thick, thin = np.flip(thick, axis), np.flip(thin, axis)
        if rng.random() < options.transpose:
            thick, thin = thick.transpose(0, 2, 1), thin.transpose(0, 2, 1)
        return _as_tensor(thick), _as_tensor(thin)

    def _cut(self, pair: Pair, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        options = self.options
        tile = options.tile
        z = int(rng.integers(pair.window_starts(options.slices)))
        y = int(rng.integers(pair.thick.shape[1] - tile + 1))
        x = int(rng.integers(pair.thick.shape[2] - tile + 1))
        first = options.ratio * z + pair.offset
        thick = pair.thick[z : z + options.slices, y : y + tile, x : x + tile]
        thin = pair.thin[first : first + options.slots, y : y + tile, x : x + tile]
        return thick, thin


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A (1, slices, rows, columns) float32 tensor in contiguous memory."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
