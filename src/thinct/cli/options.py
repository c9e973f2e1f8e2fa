"""Command-line options that several commands share, declared once.

`thinct upsample`, `thinct evaluate` and `thinct nnunet convert` all run the interpolation
baselines or the sliding-window engine; `upsample` and `simulate` read the same inputs and
write the same outputs. Every list of choices is made from the tuple its owner in the library
checks against, and each option carries the same name, default and help everywhere.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from thinct.data.layouts import LAYOUTS
from thinct.errors import UsageError
from thinct.geometry import ALIGNMENTS
from thinct.inference.options import DEVICES, PRECISIONS, InferenceOptions
from thinct.io import OUTPUT_TYPES
from thinct.resample.consistency import CONSISTENCY_CHOICES
from thinct.resample.interpolation import METHODS
from thinct.resample.profiles import PROFILES
from thinct.windows import WINDOWS


class _HelpFixes:
    """Two corrections to typer's help, for commands and groups alike.

    A flag shows no value type: typer's help lists ``--overwrite <bool>``, which reads as an
    option that takes a value, and ``--overwrite true`` then takes ``true`` for the output.
    An argument with a metavar appears in the usage line as written (``IN... OUT``), not in
    typer's braces (``{IN... OUT}...``).
    """

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # typer's help shows a metavar, when set, as the type
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        as_written = {
            piece: param.metavar
            for param in self.get_params(ctx)
            if param.param_type_name == "argument" and param.metavar
            for piece in param.get_usage_pieces(ctx)
        }
        pieces = super().collect_usage_pieces(ctx)  # type: ignore[misc]
        return [as_written.get(piece, piece) for piece in pieces]


class _Command(_HelpFixes, typer.core.TyperCommand):
    pass


class _Group(_HelpFixes, typer.core.TyperGroup):
    pass


class _Typer(typer.Typer):
    """A Typer app whose commands are `_Command`s unless a command asks for another class."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _Command, **kwargs)


def command_group(name: str, help: str) -> typer.Typer:
    """A Typer app with thinct's settings: -h as well as --help, help when called bare, no
    shell-completion options, plain tracebacks for bugs (user mistakes never reach one), and
    help that shows flags as flags (`_HelpFixes`)."""
    return _Typer(
        name=name,
        help=help,
        cls=_Group,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _choices(name: str, values: tuple[str, ...]) -> Any:
    """An option's choices, made from the tuple the library checks against (one list)."""
    return Enum(name, {value: value for value in values}, type=str)


Method = _choices("Method", METHODS)
Align = _choices("Align", ALIGNMENTS)
Device = _choices("Device", DEVICES)
Precision = _choices("Precision", PRECISIONS)
Consistency = _choices("Consistency", CONSISTENCY_CHOICES)
Profile = _choices("Profile", PROFILES)
OutputType = _choices("OutputType", OUTPUT_TYPES)
Layout = _choices("Layout", LAYOUTS)
Window = _choices("Window", tuple(WINDOWS))

Inputs = Annotated[
    list[str],
    typer.Argument(
        metavar="IN... OUT",
        help="Input scan(s): files, DICOM series folders, folders of scans or quoted glob "
        "patterns; the last argument is the output file, or the output folder for several inputs.",
        show_default=False,
    ),
]
Series = Annotated[
    str | None,
    typer.Option(
        "--series", metavar="UID", help="Series Instance UID in a multi-series DICOM folder."
    ),
]
PatientID = Annotated[
    str | None,
    typer.Option(
        "--patient-id",
        metavar="ID",
        help="Patient ID of a DICOM output made from a non-DICOM scan (default: an anonymous "
        "ID of the new study's own).",
        show_default=False,
    ),
]
PatientName = Annotated[
    str | None,
    typer.Option(
        "--patient-name",
        metavar="NAME",
        help="Patient name (DICOM form FAMILY^GIVEN) of a DICOM output made from a non-DICOM "
        "scan (default: ANONYMOUS^PATIENT).",
        show_default=False,
    ),
]
Dtype = Annotated[
    OutputType, typer.Option("--dtype", help="Output voxel type (DICOM output is always int16).")
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        metavar="N",
        min=1,
        help="Process N files of a batch at once, in separate processes (see docs/scale.md).",
    ),
]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="Process only share I of N (counted from 1) of the files, so that N machines split "
        "the same inputs (under torchrun: each process its part of it).",
        show_default=False,
    ),
]

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
InPlane = Annotated[
    int | None,
    typer.Option(
        "--in-plane",
        metavar="F",
        help="Also refine the pixels F times along each in-plane axis, over the same field of "
        "view (F from 1 to 8; after a regression model, by B-spline). With --factor 1 the "
        "slices stay.",
        show_default=False,
    ),
]
InPlaneSpacing = Annotated[
    float | None,
    typer.Option(
        "--in-plane-spacing",
        metavar="MM",
        help="Refine the pixels to this in-plane spacing in mm instead of --in-plane.",
        show_default=False,
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
    "command_group",
    "Align",
    "AlignOption",
    "BatchSize",
    "Consistency",
    "ConsistencyOption",
    "Device",
    "DeviceOption",
    "Dtype",
    "Factor",
    "InPlane",
    "InPlaneSpacing",
    "Inputs",
    "Layout",
    "Method",
    "OutputType",
    "Overwrite",
    "Precision",
    "PrecisionOption",
    "Profile",
    "Quiet",
    "Series",
    "ShardOption",
    "Spacing",
    "Tile",
    "TileOverlap",
    "Window",
    "Workers",
    "ZOverlap",
    "engine_options",
    "refuse_engine_options_with_method",
]
