"""The engine's options, apart from the engine: the command line builds its options (and
their defaults) from these without importing torch, so commands that run no model start fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from thinct.errors import Argument, UsageError

DEVICES = ("auto", "cpu", "cuda", "mps")
# Lower-precision arithmetic through torch.autocast, for inference and for training.
AUTOCAST_PRECISIONS: tuple[str, ...] = ("bf16", "fp16")
PRECISIONS: tuple[str, ...] = ("fp32", *AUTOCAST_PRECISIONS)
# How a diffusion model steps from noise to an image (`thinct.models.diffusion`): the
# ancestral sampler of DDPM and SR3 (fresh noise at every step), or DDIM's deterministic one.
SAMPLERS: tuple[str, ...] = ("ancestral", "ddim")
# How a diffusion model's 2D planes make one 3D volume (`thinct.inference.planes`): one
# orientation per step, taking turns, or every orientation at every step, their noise
# predictions averaged (twice the cost of alternating for through-plane work).
PLANE_SCHEMES: tuple[str, ...] = ("alternate", "average")

CancelCallback = Callable[[], bool]


@dataclass(frozen=True)
class InferenceOptions:
    """How the engine covers a scan; the defaults suit a 512 x 512 chest scan on a CPU.

    ``z_overlap``: thick slices shared by consecutive windows (1 to L - 1; more is smoother
    and slower). ``tile``: in-plane tile size, rounded down to the model's window grid (8
    pixels for the published models); 512 covers a usual scan in one tile, smaller tiles bound
    the memory. ``tile_overlap``: pixels shared by neighbouring tiles (at least; tiles start on
    the grid). ``batch_size``: windows or tiles per forward pass (for a diffusion model, planes
    of 512 x 512 pixels, or as many smaller ones as make their pixels). ``precision``:
    ``bf16``/``fp16`` run the model under autocast (see docs/benchmarks.md for the error they
    add). ``restore_clipped``: take values outside [-1024, 2048] HU from linear interpolation
    (from the condition, for a diffusion model).

    The rest apply to diffusion models only (docs/dsdm.md) and are refused for the others;
    None is the model's own default. ``steps``: denoiser calls per plane. ``seed``: the
    noise's seed (default 0, so a run repeats). ``sampler``: one of `SAMPLERS`.
    ``refine``: start from the default model's output noised to this strength in (0, 1]
    instead of from noise, so that a few steps suffice. ``planes``: one of `PLANE_SCHEMES`.
    """

    z_overlap: int = 2
    tile: int = 512
    tile_overlap: int = 32
    batch_size: int = 1
    device: str = "auto"
    precision: str = "fp32"
    restore_clipped: bool = True
    steps: int | None = None
    seed: int | None = None
    sampler: str | None = None
    refine: float | None = None
    planes: str | None = None


# The options that only a diffusion model reads.
DIFFUSION_OPTIONS: tuple[str, ...] = ("steps", "seed", "sampler", "refine", "planes")


def refuse_diffusion_options(options: InferenceOptions, running: str) -> None:
    """Refuse diffusion options given where no diffusion model runs (``running`` says what
    runs instead): they would be silently ignored."""
    names: list[object] = []
    for name in DIFFUSION_OPTIONS:
        if getattr(options, name) is not None:
            names += [", ", Argument(name)] if names else [Argument(name)]
    if names:
        verb = "applies" if len(names) == 1 else "apply"
        raise UsageError(*names, f" {verb} to diffusion models (dsdm), not to {running}")
