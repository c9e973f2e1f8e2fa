"""The engine's options, apart from the engine: the command line builds its options (and
their defaults) from these without importing torch, so commands that run no model start fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "cuda", "mps")
# Lower-precision arithmetic through torch.autocast, for inference and for training.
AUTOCAST_PRECISIONS: tuple[str, ...] = ("bf16", "fp16")
PRECISIONS: tuple[str, ...] = ("fp32", *AUTOCAST_PRECISIONS)

CancelCallback = Callable[[], bool]


@dataclass(frozen=True)
class InferenceOptions:
    """How the engine covers a scan; the defaults suit a 512 x 512 chest scan on a CPU.

    ``z_overlap``: thick slices shared by consecutive windows (1 to L - 1; more is smoother
    and slower). ``tile``: in-plane tile size, rounded down to the model's window grid (8
    pixels for the published models); 512 covers a usual scan in one tile, smaller tiles bound
    the memory. ``tile_overlap``: pixels shared by neighbouring tiles (at least; tiles start on
    the grid). ``batch_size``: windows or tiles per forward pass.
    ``precision``: ``bf16``/``fp16`` run the model under autocast (see docs/benchmarks.md for the
    error they add). ``restore_clipped``: take values outside [-1024, 2048] HU from linear
    interpolation.
    """

    z_overlap: int = 2
    tile: int = 512
    tile_overlap: int = 32
    batch_size: int = 1
    device: str = "auto"
    precision: str = "fp32"
    restore_clipped: bool = True
