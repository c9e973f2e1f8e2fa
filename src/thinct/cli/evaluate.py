"""`thinct evaluate`: methods compared on thin scans (thick slices simulated) or on paired
scans, as results.csv, summary.md and figures. The work is `thinct.evaluate`'s; this is its
command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinct.cli.boundary import error_boundary
from thinct.cli.options import (
    Consistency,
    Device,
    DeviceOption,
    Layout,
    Method,
    Precision,
    PrecisionOption,
    Profile,
    Quiet,
    Window,
)
from thinct.inference.options import InferenceOptions
from thinct.reporting import Reporter


def evaluate(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="SCAN_OR_FOLDER...",
            help="Thin scans (files, DICOM series folders, folders of scans or quoted glob "
            "patterns) whose thick scans are simulated; with --layout, paired dataset folders.",
            show_default=False,
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            metavar="REPORT_DIR",
            help="Folder for results.csv, summary.md and figures/.",
            show_default=False,
        ),
    ],
    methods: Annotated[
        list[Method] | None,
        typer.Option(
            "--method",
            "-m",
            help="An interpolation to evaluate; repeat for several (default: bspline and the "
            "default model).",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            metavar="SPEC",
            help="A model to evaluate (registered name, folder, hf://owner/repo\\[@revision] or "
            "official checkpoint); repeat for several.",
            show_default=False,
        ),
    ] = None,
    layout: Annotated[
        Layout | None,
        typer.Option("--layout", help="The inputs are paired dataset folders in this layout."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", metavar="NAME", help="The split of --layout folders.")
    ] = "test",
    thickness: Annotated[
        float | None,
        typer.Option(
            "--thickness", "-t", metavar="MM", help="Simulated thick slices (default 5 mm)."
        ),
    ] = None,
    spacing: Annotated[
        float | None,
        typer.Option(
            "--spacing", metavar="MM", help="Thin slice spacing to evaluate on (default 1 mm)."
        ),
    ] = None,
    profile: Annotated[
        Profile | None,
        typer.Option("--profile", help="Slice profile of the simulation (default boxcar)."),
    ] = None,
    fwhm: Annotated[
        float | None,
        typer.Option("--fwhm", metavar="MM", help="FWHM of the gaussian profile."),
    ] = None,
    slices: Annotated[
        str | None,
        typer.Option(
            "--slices",
            metavar="START:STOP",
            help="Keep this fraction of each thin scan's slices, e.g. 0.25:0.75.",
        ),
    ] = None,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="Draw a PNG figure per case.")
    ] = True,
    window: Annotated[
        Window, typer.Option("--window", help="Display window of the figures.")
    ] = Window.lung,
    consistency: Annotated[
        Consistency,
        typer.Option(
            "--consistency",
            help="Also score each method with its thin slices made consistent with the thick "
            "ones for this slice profile (rows named METHOD+PROFILE).",
        ),
    ] = Consistency.none,
    device: DeviceOption = Device.auto,
    precision: PrecisionOption = Precision.fp32,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier report in REPORT_DIR.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Compare methods on thin scans (thick slices simulated) or paired scans: PSNR, SSIM,
    lung PSNR, VIF, Frangi structure score, SMSE, vessel-tree topology (clDice, components),
    lung density bias and time per scan, as CSV, markdown and figures.

    Example: thinct evaluate scans/ --out report --method bspline --model models/mine
    """
    from thinct.evaluate.cases import Simulation, parse_slices
    from thinct.evaluate.run import plan_evaluation, run_evaluation

    with (
        Reporter(quiet=quiet) as reporter,
        reporter.warnings_reported(),
        error_boundary(reporter),
    ):
        simulation = None
        given = (thickness, spacing, profile, fwhm, slices)
        if layout is None or any(value is not None for value in given):
            simulation = Simulation(
                thickness=5.0 if thickness is None else thickness,
                spacing=1.0 if spacing is None else spacing,
                profile=(profile or Profile.boxcar).value,
                fwhm=fwhm,
                slices=parse_slices(slices),
            )
        evaluation = plan_evaluation(
            inputs,
            Path(out),
            methods=[m.value for m in methods or []],
            models=list(models or []),
            layout=layout.value if layout is not None else None,
            split=split,
            simulation=simulation,
            figures=figures,
            window=window.value,
            options=InferenceOptions(device=device.value, precision=precision.value),
            overwrite=overwrite,
            consistency=consistency.value,
        )
        results, failures = run_evaluation(evaluation, reporter)
    if failures:
        raise typer.Exit(1)
