"""The `thinct` command line.

Exit codes: 0 success, 1 a failure while processing (in a batch: at least one file failed),
2 a usage error. User mistakes are reported as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from thinct._version import __version__
from thinct.batch.jobs import Job, Outcome, plan_jobs, run_jobs, skipped
from thinct.batch.shards import Share, finish_torchrun_process, use_local_gpu
from thinct.batch.workers import Task, run_in_workers, sigterm_as_interrupt
from thinct.cli.hub import models, push
from thinct.cli.nnunet import app as nnunet_app
from thinct.cli.options import (
    Align,
    AlignOption,
    BatchSize,
    Consistency,
    ConsistencyOption,
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
    engine_options,
    refuse_engine_options_with_method,
)
from thinct.cli.summary import format_summary, scan_summary
from thinct.errors import ThinctError, ThinctWarning, UsageError
from thinct.geometry import check_target_options
from thinct.inference.options import InferenceOptions
from thinct.io import read_volume
from thinct.pipeline import simulate_file, upsample_file
from thinct.reporting import Reporter, os_failure, out_of_memory
from thinct.resample.simulate import check_slab_options

# torch, and the modules that use it, load inside the commands that run a model (upsample
# without --method, convert, train): every other command, and --help, starts in a fraction
# of a second.

app = typer.Typer(
    name="thinct",
    help="Turn thick-slice CT into synthetic thin-slice CT, with exact geometry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Profile(str, Enum):
    boxcar = "boxcar"
    gaussian = "gaussian"


class OutputType(str, Enum):
    int16 = "int16"
    float32 = "float32"


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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thinct {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Turn thick-slice CT into synthetic thin-slice CT, with exact geometry."""


def _split_output(arguments: list[str]) -> tuple[list[str], Path]:
    if len(arguments) < 2:
        raise UsageError("give an input and an output (IN... OUT)")
    return arguments[:-1], Path(arguments[-1])


@dataclass(frozen=True)
class _Scale:
    """How a run spreads: ``workers`` processes for a batch's jobs, each running ``task()``
    (built after ``check_options``, which may load what it names), and the ``--shard``."""

    workers: int = 1
    shard: str | None = None
    task: Callable[[], Task] | None = None


def _run_command(
    arguments: list[str],
    overwrite: bool,
    quiet: bool,
    verb: str,
    work: Callable[[Job, Callable[[float], None]], None],
    check_options: Callable[[], None],
    scale: _Scale = _Scale(),
) -> None:
    """Plan and run jobs with progress and one-line reporting; exit with the right code.

    Under torchrun, each process exits with its own code, but one with failures first waits
    for the others: torchrun would stop them as soon as it exits (`thinct.batch.shards`).
    """
    with Reporter(quiet=quiet) as reporter:
        try:
            _run_share(arguments, overwrite, verb, work, check_options, scale, reporter)
        except typer.Exit as stop:
            finish_torchrun_process(stop.exit_code != 0, reporter.info)
            raise
        finish_torchrun_process(False, reporter.info)


def _run_share(
    arguments: list[str],
    overwrite: bool,
    verb: str,
    work: Callable[[Job, Callable[[float], None]], None],
    check_options: Callable[[], None],
    scale: _Scale,
    reporter: Reporter,
) -> None:
    """Plan the jobs and run this process's share of them.

    The shard is checked first, then ``check_options`` raises `UsageError` for option values
    that can never work. Both run before any file is read, so a bad option is one usage error
    (exit 2), not the same failure repeated for every file of a batch (exit 1) after reading
    each one.
    """
    try:
        share = Share.of(scale.shard)
        check_options()
        inputs, output = _split_output(arguments)
        plan = plan_jobs(inputs, output)
    except ThinctError as error:
        reporter.error(str(error))
        raise typer.Exit(error.exit_code) from None
    jobs = share.select(plan.jobs, output, plan.batch)
    if not jobs:
        reporter.info(f"nothing to do for {share}")
        return

    def process(job: Job) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThinctWarning)
            with reporter.task(f"{verb} {job.source.name}") as advance:
                work(job, advance)
        for warning in caught:
            if issubclass(warning.category, ThinctWarning):
                reporter.warning(str(warning.message))

    with sigterm_as_interrupt():
        if plan.batch:
            _run_batch(jobs, output, process, overwrite, reporter, share, scale)
        else:
            _run_single(jobs[0], process, reporter)


def _run_single(job: Job, process: Callable[[Job], None], reporter: Reporter) -> None:
    """One job: its error, usage or processing, decides the exit code. It runs in this
    process whatever --workers says: a worker would only add its start-up."""
    try:
        process(job)
    except ThinctError as error:
        reporter.error(str(error))
        raise typer.Exit(error.exit_code) from None
    reporter.info(f"wrote {job.target}")


def _run_batch(
    jobs: list[Job],
    output: Path,
    process: Callable[[Job], None],
    overwrite: bool,
    reporter: Reporter,
    share: Share,
    scale: _Scale,
) -> None:
    """Many jobs: each failure is one line and the rest go on; any failure makes exit 1."""
    with reporter.task("files", total=len(jobs)) as advance_files:
        done = 0

        def report(outcome: Outcome) -> None:
            nonlocal done
            done += 1
            advance_files(done)
            for message in outcome.warnings:
                reporter.warning(message)
            if outcome.status == "failed":
                reporter.error(outcome.message)
            elif outcome.status == "skipped":
                reporter.info(f"skipped {outcome.job.source}: {outcome.job.target} exists")

        if scale.task is not None and min(scale.workers, _to_do(jobs, overwrite)) > 1:
            outcomes = run_in_workers(jobs, scale.task(), scale.workers, overwrite, report)
        else:  # one worker would only add its start-up to one process's work
            outcomes = run_jobs(jobs, process, overwrite, report)
    counts = {
        status: sum(o.status == status for o in outcomes)
        for status in ("done", "skipped", "failed")
    }
    where = f"outputs in {output}" + ("" if share.whole else f", {share}")
    reporter.info(
        f"{counts['done']} written, {counts['skipped']} skipped, {counts['failed']} failed "
        f"({where})"
    )
    if counts["failed"]:
        raise typer.Exit(1)


def _to_do(jobs: list[Job], overwrite: bool) -> int:
    """Jobs that will run rather than be skipped."""
    return sum(skipped(job, overwrite) is None for job in jobs)


@app.command()
def upsample(
    arguments: Inputs,
    method: Annotated[
        Method | None,
        typer.Option(
            "--method",
            "-m",
            help="Interpolate instead of running a model (bspline is the paper's BIS baseline).",
            show_default=False,
        ),
    ] = None,
    model_spec: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="SPEC",
            help="The model that predicts the thin slices: a registered name (see thinct "
            "models; default: the shipped cthnet-small), a model folder (config.json + "
            "model.safetensors), hf://owner/repo[@revision] on the Hugging Face Hub, or an "
            "official checkpoint file.",
        ),
    ] = None,
    spacing: Spacing = None,
    factor: Factor = None,
    align: AlignOption = Align.edges,
    consistency: ConsistencyOption = Consistency.none,
    device: DeviceOption = Device.auto,
    precision: PrecisionOption = Precision.fp32,
    tile: Tile = InferenceOptions.tile,
    tile_overlap: TileOverlap = InferenceOptions.tile_overlap,
    z_overlap: ZOverlap = InferenceOptions.z_overlap,
    batch_size: BatchSize = InferenceOptions.batch_size,
    series: Series = None,
    dtype: Dtype = OutputType.int16,
    overwrite: Overwrite = False,
    workers: Workers = 1,
    shard: ShardOption = None,
    quiet: Quiet = False,
) -> None:
    """Make synthetic thin slices from thick-slice CT (IN... OUT) with the default model,
    another model (--model) or an interpolation (--method).

    Example: thinct upsample thick.nii.gz thin.nii.gz --spacing 1.0
    """
    options = engine_options(device, precision, tile, tile_overlap, z_overlap, batch_size)
    loaded: dict[str, Any] = {}  # the model and its name, once check_options loads them
    settings = dict(
        method=method.value if method is not None else "bspline",
        spacing=spacing,
        factor=factor,
        align=align.value,
        consistency=consistency.value,
        overwrite=overwrite,
        dtype=dtype.value,
        series_uid=series,
        options=options,
    )

    def work(job: Job, advance: Callable[[float], None]) -> None:
        upsample_file(
            job.source,
            job.target,
            **settings,
            progress=advance,
            model=loaded.get("model"),
            model_name=loaded.get("name"),
        )

    def task() -> Task:
        """The same work in worker processes, each loading the model from its spec."""
        if method is not None:
            return Task(upsample_file, settings)
        from thinct.models import DEFAULT_MODEL

        keywords = {**settings, "model_name": loaded["name"]}
        return Task(upsample_file, keywords, model_spec or DEFAULT_MODEL, device.value)

    def check_options() -> None:
        check_target_options(spacing, factor)
        if method is not None:
            refuse_engine_options_with_method(model_spec, options)
            return
        from thinct.inference.engine import load_checked_model
        from thinct.models import model_display_name

        use_local_gpu(options.device)  # under torchrun, before the model loads
        loaded["model"] = load_checked_model(model_spec, options)
        loaded["name"] = model_display_name(model_spec)

    scale = _Scale(workers, shard, task)
    _run_command(arguments, overwrite, quiet, "upsampling", work, check_options, scale)


@app.command()
def simulate(
    arguments: Inputs,
    thickness: Annotated[
        float, typer.Option("--thickness", "-t", metavar="MM", help="Thick slice thickness in mm.")
    ] = 5.0,
    increment: Annotated[
        float | None,
        typer.Option(
            "--increment",
            metavar="MM",
            help="Distance between thick slice centres (smaller than the thickness for "
            "overlapping reconstructions) (default: the thickness).",
        ),
    ] = None,
    profile: Annotated[
        Profile, typer.Option("--profile", help="Slice sensitivity profile.")
    ] = Profile.boxcar,
    fwhm: Annotated[
        float | None,
        typer.Option(
            "--fwhm", metavar="MM", help="FWHM of the gaussian profile (default: the thickness)."
        ),
    ] = None,
    series: Series = None,
    dtype: Dtype = OutputType.int16,
    overwrite: Overwrite = False,
    workers: Workers = 1,
    shard: ShardOption = None,
    quiet: Quiet = False,
) -> None:
    """Simulate the thick-slice scan a scanner would reconstruct from thin CT (IN... OUT).

    Example: thinct simulate thin.nii.gz thick5mm.nii.gz --thickness 5
    """

    settings = dict(
        thickness=thickness,
        increment=increment,
        profile=profile.value,
        fwhm=fwhm,
        overwrite=overwrite,
        dtype=dtype.value,
        series_uid=series,
    )

    def work(job: Job, advance: Callable[[float], None]) -> None:
        simulate_file(job.source, job.target, **settings)
        advance(1.0)

    def check_options() -> None:
        check_slab_options(thickness, increment, profile.value, fwhm)

    scale = _Scale(workers, shard, lambda: Task(simulate_file, settings))
    _run_command(arguments, overwrite, quiet, "simulating", work, check_options, scale)


@app.command()
def info(
    path: Annotated[
        str, typer.Argument(metavar="FILE", help="A scan file or DICOM series folder.")
    ],
    series: Series = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show a scan's geometry, HU statistics and whether it looks thick."""
    with Reporter(quiet=True) as reporter:
        try:
            if not Path(path).exists():
                raise UsageError(f"{path}: no such file or folder")
            summary = scan_summary(read_volume(path, series_uid=series))
        except ThinctError as error:
            reporter.error(str(error))
            raise typer.Exit(error.exit_code) from None
    typer.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@app.command()
def convert(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="OFFICIAL", help="An official CTHNet or TVSRN checkpoint (.pkl, .pth, ...)."
        ),
    ],
    folder: Annotated[
        str, typer.Argument(metavar="FOLDER", help="The thinct model folder to write.")
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing FOLDER.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Convert an official checkpoint into a thinct model folder, running none of its code.

    Example: thinct convert CTHNet_best.pkl models/cthnet-official
    """
    with Reporter(quiet=quiet) as reporter:
        try:
            _convert_checkpoint(Path(checkpoint), Path(folder), overwrite)
        except ThinctError as error:
            reporter.error(str(error))
            raise typer.Exit(error.exit_code) from None
        reporter.info(f"wrote {folder}")


def _convert_checkpoint(source: Path, folder: Path, overwrite: bool) -> None:
    """Check both paths before reading anything, then write the folder with a card saying
    where its weights come from (the source's sha256 ties the folder to that exact file)."""

    if not source.exists():
        raise UsageError(f"{source}: no such file")
    if not source.is_file():
        raise UsageError(f"{source} is not a file; give an official checkpoint file")
    if folder.exists() and not overwrite:
        raise UsageError(f"{folder} exists; give --overwrite to replace it")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder")
    from thinct.models import save_model
    from thinct.models.official import official_model
    from thinct.models.safe_unpickle import read_official_checkpoint
    from thinct.models.storage import sha256_of

    checkpoint = read_official_checkpoint(source)
    model = official_model(checkpoint, source)
    details = {
        "source": source.name,
        "source_sha256": sha256_of(source),
        "conversion": "converted from the official checkpoint",
        "architecture": model.config.architecture,
        "layout": "official",
    }
    if checkpoint.config:
        details["official_config_dict"] = json.dumps(checkpoint.config)
    save_model(model, folder, details=details)


class Layout(str, Enum):
    rplhr = "rplhr"
    cthnet = "cthnet"


class Window(str, Enum):
    lung = "lung"
    soft_tissue = "soft-tissue"


@app.command()
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
            help="A model to evaluate (registered name, folder, hf://owner/repo[@revision] or "
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
    lung PSNR, Frangi structure score, lung density bias and time per scan, as CSV, markdown
    and figures.

    Example: thinct evaluate scans/ --out report --method bspline --model models/mine
    """
    from thinct.evaluate.run import (
        Simulation,
        parse_slices,
        plan_evaluation,
        reported_warnings,
        run_evaluation,
    )

    with Reporter(quiet=quiet) as reporter, reported_warnings(reporter):
        try:
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
        except ThinctError as error:
            reporter.error(str(error))
            raise typer.Exit(error.exit_code) from None
    if failures:
        raise typer.Exit(1)


@app.command()
def train(
    config: Annotated[
        str, typer.Option("--config", "-c", metavar="FILE.yaml", help="The training recipe.")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in the config's output folder.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Train a model on the recipe in a YAML file; the best weights go to OUTPUT/best.

    Example: thinct train --config configs/default.yaml
    Several processes: torchrun --nproc_per_node 2 -m thinct train --config FILE.yaml
    """
    with Reporter(quiet=quiet) as reporter:
        try:
            from thinct.train.config import load_train_config
            from thinct.train.loop import train as run_training

            result = run_training(load_train_config(config), resume=resume, report=reporter.info)
        except ThinctError as error:
            reporter.error(str(error))
            raise typer.Exit(error.exit_code) from None
        if os.environ.get("RANK", "0") != "0":
            return  # under torchrun, the first process speaks for all
        scores = (
            f"validation PSNR {result.best_psnr:.2f} dB, SSIM {result.best_ssim:.4f}"
            if result.best_psnr == result.best_psnr  # not NaN: there was validation data
            else "no validation data: the last weights"
        )
        reporter.info(
            f"trained {result.steps} steps in {result.seconds / 60:.1f} min; best step "
            f"{result.best_step} ({scores}) in {result.folder / 'best'}"
        )


app.command()(models)
app.command()(push)


app.add_typer(nnunet_app, name="nnunet")


def _exit_with_error(message: str, code: int) -> NoReturn:
    """The last resort of `main`, after the reporter has closed: still one ``error:`` line."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main(args: list[str] | None = None) -> None:
    """Console-script entry point.

    Runs the app outside click's standalone mode so that command-line mistakes caught by the
    parser (an unknown option, a bad choice, a missing argument) are reported like every other
    usage error: one ``error:`` line naming the help command, and exit code 2.

    A scan too large for the memory, or a path the system refuses (a folder the user may not
    enter, a name too long), is no bug in thinct either: one line and exit code 1.
    """
    try:
        code = app(args=args, standalone_mode=False)
    except KeyboardInterrupt:
        _exit_with_error("interrupted", 130)
    except MemoryError as error:
        _exit_with_error(out_of_memory(error), 1)
    except OSError as error:
        _exit_with_error(os_failure(error), 1)
    except Exception as error:
        # typer vendors click, so its parser errors are recognised by their interface.
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        context = getattr(error, "ctx", None)
        command = context.command_path if context is not None else "thinct"
        if type(error).__name__ != "NoArgsIsHelpError":  # that one has shown the help already
            print(f"error: {error.format_message()} (see '{command} --help')", file=sys.stderr)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
