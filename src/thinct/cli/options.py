"""Command-line options that several commands share, declared once.

`thinct upsample`, `thinct evaluate` and `thinct nnunet convert` all run the interpolation
baselines or the sliding-window engine: their choices are made from the tuples the library
checks against, and the engine options carry the same names, defaults and help everywhere.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from thinct.errors import UsageError
from thinct.geometry import ALIGNMENTS
from thinct.inference.options import DEVICES, PRECISIONS, InferenceOptions
from thinct.resample.consistency import CONSISTENCY_CHOICES
from thinct.resample.interpolation import METHODS


def _choices(name: str, values: tuple[str, ...]) -> Any:
    """An option's choices, made from the tuple the library checks against (one list)."""
    return Enum(name, {value: value for value in values}, type=str)


Method = _choices("Method", METHODS)
Align = _choices("Align", ALIGNMENTS)
Device = _choices("Device", DEVICES)
Precision = _choices("Precision", PRECISIONS)
Consistency = _choices("Consistency", CONSISTENCY_CHOICES)

Spacing = Annotated[
    float | None,
    typer.Option("--spacing", metavar="MM", help="Target slice spacing in mm (default 1.0)."),
]
Factor = Annotated[
    int | None,
    typer.Option(
        "--factor", metavar="R", help="Make R thin slices per thick slice (instead of --spacing)."
    ),
]
AlignOption = Annotated[
    Align,
    typer.Option(
        "--align",
        help="edges: cover the whole extent of the thick slabs (n*r slices); "
        "centers: first to last thick-slice centre ((n-1)*r+1 slices).",
    ),
]
ConsistencyOption = Annotated[
    Consistency,
    typer.Option(
        "--consistency",
        help="Correct the thin slices so that they average back to the thick ones, for this "
        "slice profile of the thick scan (none: leave them as made).",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")]
DeviceOption = Annotated[
    Device, typer.Option("--device", help="Where a model runs (auto: CUDA, MPS, then CPU).")
]
PrecisionOption = Annotated[
    Precision, typer.Option("--precision", help="Model arithmetic; bf16/fp16 are faster on GPUs.")
]
Tile = Annotated[int, typer.Option("--tile", metavar="PX", help="In-plane tile size for a model.")]
TileOverlap = Annotated[
    int, typer.Option("--tile-overlap", metavar="PX", help="Pixels shared by adjacent tiles.")
]
ZOverlap = Annotated[
    int,
    typer.Option(
        "--z-overlap", metavar="N", help="Thick slices shared by consecutive model windows."
    ),
]
BatchSize = Annotated[
    int, typer.Option("--batch-size", metavar="N", help="Tiles per model forward pass.")
]


def engine_options(
    device: Any, precision: Any, tile: int, tile_overlap: int, z_overlap: int, batch_size: int
) -> InferenceOptions:
    """The engine's options from the command line's (``device`` and ``precision`` as the
    `Device` and `Precision` choices)."""
    return InferenceOptions(
        z_overlap=z_overlap,
        tile=tile,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        device=device.value,
        precision=precision.value,
    )


def refuse_engine_options_with_method(model_spec: str | None, options: InferenceOptions) -> None:
    """With ``--method`` nothing runs a model: a model or engine option given beside it would
    be silently ignored, so it is a usage error."""
    if model_spec is not None:
        raise UsageError("give either --model or --method, not both")
    if options != InferenceOptions():
        raise UsageError(
            "--device, --precision, --tile, --tile-overlap, --z-overlap and --batch-size "
            "apply to models, not to --method"
        )


__all__ = [
    "Align",
    "AlignOption",
    "BatchSize",
    "Consistency",
    "ConsistencyOption",
    "Device",
    "DeviceOption",
    "Factor",
    "Method",
    "Overwrite",
    "Precision",
    "PrecisionOption",
    "Quiet",
    "Spacing",
    "Tile",
    "TileOverlap",
    "ZOverlap",
    "engine_options",
    "refuse_engine_options_with_method",
]
