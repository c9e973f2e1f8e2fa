"""`thinct nnunet`: nnU-Net v2 raw datasets to thin slices (`convert`), and segmentations
predicted on the thin slices back onto the thick scans (`restore`).

The options of `convert` are those of `thinct upsample` that make sense for a dataset (no
--dtype: CT is written int16 HU, as nnU-Net expects; no --series: datasets hold files). torch
loads only when a model runs, as in `thinct.cli.app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from thinct.batch.jobs import Outcome
from thinct.cli.boundary import error_boundary
from thinct.cli.options import (
    Align,
    AlignOption,
    BatchSize,
    Device,
    DeviceOption,
    Factor,
    Method,
    Overwrite,
    Precision,
    PrecisionOption,
    Quiet,
    Spacing,
    Tile,
    TileOverlap,
    ZOverlap,
    command_group,
    engine_options,
    refuse_engine_options_with_method,
)
from thinct.geometry import check_target_options
from thinct.inference.options import InferenceOptions
from thinct.integrations.nnunet.convert import (
    CaseResult,
    Conversion,
    Recipe,
    model_recipe,
    plan_conversion,
    run_conversion,
)
from thinct.integrations.nnunet.restore import Restoration, plan_restore, restore_predictions
from thinct.reporting import Reporter

if TYPE_CHECKING:
    from torch import nn

app = command_group(
    "nnunet", "Convert nnU-Net v2 raw datasets to thin slices, and bring predictions back."
)


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
            "(default: the shipped thickgrid).",
        ),
    ] = None,
    spacing: Spacing = None,
    factor: Factor = None,
    align: AlignOption = Align.edges,
    device: DeviceOption = Device.auto,
    precision: PrecisionOption = Precision.fp32,
    tile: Tile = InferenceOptions.tile,
    tile_overlap: TileOverlap = InferenceOptions.tile_overlap,
    z_overlap: ZOverlap = InferenceOptions.z_overlap,
    batch_size: BatchSize = InferenceOptions.batch_size,
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
    options = engine_options(device, precision, tile, tile_overlap, z_overlap, batch_size)
    target_options: dict[str, Any] = {
        "spacing": spacing,
        "factor": factor,
        "align": align.value,
    }
    with Reporter(quiet=quiet) as reporter:
        with error_boundary(reporter):
            check_target_options(spacing, factor)
            model = None
            if method is not None:
                refuse_engine_options_with_method(model_spec, options)
                recipe = Recipe(method=method.value, **target_options)
            else:
                from thinct.inference.engine import load_checked_model  # torch, only for a model

                model = load_checked_model(model_spec, options)
                recipe = model_recipe(model_spec, model, **target_options)
            conversion = plan_conversion(source, target, recipe, overwrite)
        _convert(conversion, model, options, reporter)


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
        with error_boundary(reporter):
            results = run_conversion(conversion, model, options, advance, report)
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
        with error_boundary(reporter):
            restoration = plan_restore(Path(predictions), Path(out), dataset)
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
