"""`thinct nnunet`: nnU-Net v2 raw datasets to thin slices (`convert`), and segmentations
predicted on the thin slices back onto the thick scans (`restore`).

The options of `convert` are those of `thinct upsample` that make sense for a dataset (no
--dtype: CT is written int16 HU, as nnU-Net expects; no --series: datasets hold files). torch
loads only when a model runs, as in `thinct.cli`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from thinct.batch import Outcome
from thinct.errors import ThinctError, UsageError
from thinct.geometry import ALIGNMENTS, check_target_options
from thinct.inference_options import DEVICES, PRECISIONS, InferenceOptions
from thinct.interpolate import METHODS
from thinct.nnunet import (
    CaseResult,
    Conversion,
    Recipe,
    Restoration,
    model_recipe,
    plan_conversion,
    plan_restore,
    restore_predictions,
    run_conversion,
)
from thinct.reporting import Reporter

if TYPE_CHECKING:
    from torch import nn

app = typer.Typer(
    name="nnunet",
    help="Convert nnU-Net v2 raw datasets to thin slices, and bring predictions back.",
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

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")]


def _fail(reporter: Reporter, error: ThinctError) -> typer.Exit:
    reporter.error(str(error))
    return typer.Exit(error.exit_code)


@app.command()
def convert(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="The thick dataset: a folder, or a dataset name in $nnUNet_raw.",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The thin dataset to write: a path, or a DatasetNNN_Name for $nnUNet_raw "
            "(a new id).",
            show_default=False,
        ),
    ],
    method: Annotated[
        Method | None,
        typer.Option(
            "--method",
            "-m",
            help="Interpolate the CT channels instead of running a model.",
            show_default=False,
        ),
    ] = None,
    model_spec: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="SPEC",
            help="The model for the CT channels, as for `thinct upsample --model` "
            "(default: the shipped cthnet-small).",
        ),
    ] = None,
    spacing: Annotated[
        float | None,
        typer.Option("--spacing", metavar="MM", help="Target slice spacing in mm (default 1.0)."),
    ] = None,
    factor: Annotated[
        int | None,
        typer.Option("--factor", metavar="R", help="R thin slices per thick slice."),
    ] = None,
    align: Annotated[
        Align, typer.Option("--align", help="The thin grid's alignment, as for upsample.")
    ] = Align.edges,
    device: Annotated[
        Device, typer.Option("--device", help="Where a model runs (auto: CUDA, MPS, then CPU).")
    ] = Device.auto,
    precision: Annotated[
        Precision, typer.Option("--precision", help="Model arithmetic.")
    ] = Precision.fp32,
    tile: Annotated[
        int, typer.Option("--tile", metavar="PX", help="In-plane tile size for a model.")
    ] = InferenceOptions.tile,
    tile_overlap: Annotated[
        int, typer.Option("--tile-overlap", metavar="PX", help="Pixels shared by adjacent tiles.")
    ] = InferenceOptions.tile_overlap,
    z_overlap: Annotated[
        int,
        typer.Option(
            "--z-overlap", metavar="N", help="Thick slices shared by consecutive model windows."
        ),
    ] = InferenceOptions.z_overlap,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="N", help="Tiles per model forward pass.")
    ] = InferenceOptions.batch_size,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Convert again into a complete TARGET.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Make a thin-slice copy of an nnU-Net v2 raw dataset, as a new dataset.

    CT channels go through the model (or --method), other channels are B-spline interpolated,
    labels nearest neighbour. An interrupted run continues when run again.

    Example: thinct nnunet convert Dataset501_LungCT Dataset502_LungCT1mm
    """
    options = InferenceOptions(
        z_overlap=z_overlap,
        tile=tile,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        device=device.value,
        precision=precision.value,
    )
    target_options: dict[str, Any] = {
        "spacing": spacing,
        "factor": factor,
        "align": align.value,
    }
    with Reporter(quiet=quiet) as reporter:
        try:
            check_target_options(spacing, factor)
            if method is not None:
                _check_method_options(model_spec, options)
                recipe = Recipe(method=method.value, **target_options)
            else:
                recipe = model_recipe(model_spec, **target_options)
            conversion = plan_conversion(source, target, recipe, overwrite)
            model = None if method is not None else _load_model(model_spec, options)
        except ThinctError as error:
            raise _fail(reporter, error) from None
        _convert(conversion, model, options, reporter)


def _check_method_options(model_spec: str | None, options: InferenceOptions) -> None:
    if model_spec is not None:
        raise UsageError("give either --model or --method, not both")
    if options != InferenceOptions():
        raise UsageError(
            "--device, --precision, --tile, --tile-overlap, --z-overlap and --batch-size "
            "apply to models, not to --method"
        )


def _load_model(spec: str | None, options: InferenceOptions) -> nn.Module:
    """The model, after its options are checked (an unavailable device fails before loading)."""
    from thinct.inference import check_options
    from thinct.models import load_model

    check_options(options)
    model = load_model(spec)
    check_options(options, model.config.slices)
    return model


def _convert(
    conversion: Conversion,
    model: nn.Module | None,
    options: InferenceOptions,
    reporter: Reporter,
) -> None:
    """Run the conversion with progress; each failed case is one error line, and any makes
    exit code 1 (dataset.json is then not written, and running again retries those cases)."""
    pending = conversion.pending()
    earlier = len(conversion.cases) - len(pending)
    if earlier:
        reporter.info(
            f"continuing {conversion.target}: {earlier} of {len(conversion.cases)} "
            "cases were converted before"
        )

    def report(result: CaseResult) -> None:
        for warning in result.warnings:
            reporter.warning(warning)
        if result.status == "failed":
            reporter.error(result.message)

    with reporter.task(f"converting {conversion.source.folder.name}") as advance:
        try:
            results = run_conversion(conversion, model, options, advance, report)
        except ThinctError as error:
            raise _fail(reporter, error) from None
    failed = sum(result.status == "failed" for result in results)
    if failed:
        reporter.info(
            f"{len(results) - failed} converted, {failed} failed; dataset.json not written: "
            "run the same command again to retry the failed cases"
        )
        raise typer.Exit(1)
    reporter.info(f"wrote {conversion.target} ({len(conversion.cases)} cases)")


@app.command()
def restore(
    predictions: Annotated[
        str,
        typer.Argument(
            metavar="PREDICTIONS",
            help="Folder of segmentations predicted on the thin dataset (CASE.nii.gz, ...).",
            show_default=False,
        ),
    ],
    out: Annotated[
        str,
        typer.Argument(
            metavar="OUT",
            help="Folder for the segmentations on the thick grids.",
            show_default=False,
        ),
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            metavar="DATASET",
            help="The thick dataset, or the thin one converted from it (a folder, or a "
            "dataset name in $nnUNet_raw).",
            show_default=False,
        ),
    ],
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Bring segmentations predicted on thin slices back onto the thick scans' grids.

    Each thick voxel takes the label that covers most of its slab.

    Example: thinct nnunet restore predictions_1mm predictions_5mm --dataset Dataset502_LungCT1mm
    """
    with Reporter(quiet=quiet) as reporter:
        try:
            restoration = plan_restore(Path(predictions), Path(out), dataset)
        except ThinctError as error:
            raise _fail(reporter, error) from None
        outcomes = _restore(restoration, overwrite, reporter)
        counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
        reporter.info(
            f"{counts['done']} restored, {counts['skipped']} skipped (output exists), "
            f"{counts['failed']} failed (outputs in {out})"
        )
    if counts["failed"]:
        raise typer.Exit(1)


def _restore(restoration: Restoration, overwrite: bool, reporter: Reporter) -> list[Outcome]:
    """Every prediction with a progress bar; a failure is one error line and the rest go on."""
    with reporter.task("restoring", total=len(restoration.jobs)) as advance:
        finished = 0

        def report(outcome: Outcome) -> None:
            nonlocal finished
            finished += 1
            advance(finished)
            if outcome.status == "failed":
                reporter.error(outcome.message)

        return restore_predictions(restoration, overwrite, report)
