"""`thinct upsample`: the main job, thick slices in, synthetic thin slices out.

torch, and the modules that use it, load only when a model runs (not with --method)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

import typer

from thinct.batch.jobs import Job
from thinct.batch.shards import use_local_gpu
from thinct.batch.workers import Task
from thinct.cli.options import (
    Align,
    AlignOption,
    BatchSize,
    Consistency,
    ConsistencyOption,
    Device,
    DeviceOption,
    Dtype,
    Factor,
    InPlane,
    InPlaneSpacing,
    Inputs,
    Method,
    OutputType,
    Overwrite,
    PatientID,
    PatientName,
    Precision,
    PrecisionOption,
    Quiet,
    Series,
    ShardOption,
    Spacing,
    Tile,
    TileOverlap,
    Workers,
    ZOverlap,
    engine_options,
    refuse_engine_options_with_method,
)
from thinct.cli.running import Scale, run_command
from thinct.errors import Argument, UsageError
from thinct.geometry import check_target_options
from thinct.inference.options import InferenceOptions, refuse_diffusion_options
from thinct.io.dicom import check_patient
from thinct.pipeline import check_job, check_slab, refuse_model_with_kept_slices, upsample_file

_DIFFUSION = "Diffusion models (dsdm): "
Steps = Annotated[
    int | None,
    typer.Option(
        "--steps",
        metavar="N",
        help=_DIFFUSION + "denoiser steps per plane (default: the model's; 100 for dsdm).",
        show_default=False,
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        "--seed",
        metavar="S",
        help=_DIFFUSION + "the noise's seed (default 0); the same seed gives the same output.",
        show_default=False,
    ),
]
Sampler = Annotated[
    str | None,
    typer.Option(
        "--sampler",
        metavar="NAME",
        help=_DIFFUSION + "ancestral (the paper's, the default) or ddim (deterministic, for "
        "few steps).",
        show_default=False,
    ),
]
Refine = Annotated[
    float | None,
    typer.Option(
        "--refine",
        metavar="STRENGTH",
        help=_DIFFUSION + "start from the default model's output noised to STRENGTH in (0, 1] "
        "instead of from noise, so that few steps suffice (e.g. --refine 0.3 --steps 5).",
        show_default=False,
    ),
]
Planes = Annotated[
    str | None,
    typer.Option(
        "--planes",
        metavar="SCHEME",
        help=_DIFFUSION + "alternate (one plane orientation per step, in turns; the default) "
        "or average (all of them at every step, averaged; slower).",
        show_default=False,
    ),
]
Slab = Annotated[
    str | None,
    typer.Option(
        "--slab",
        metavar="START:STOP",
        help="Only thick slices START to STOP-1 (counted from 0), as a scan of their own.",
        show_default=False,
    ),
]


def parse_slab(text: str | None) -> tuple[int, int] | None:
    """``START:STOP`` as the pair of thick slice indices, checked."""
    if text is None:
        return None
    start, colon, stop = text.partition(":")
    try:
        slab = (int(start), int(stop))
    except ValueError:
        colon = ""
    if not colon:
        raise UsageError(Argument("slab"), f" must be START:STOP, two whole numbers, got {text!r}")
    check_slab(slab)
    return slab


def _show_at_once(message: str) -> None:
    """A warning that cannot wait for the job's end (the estimate of a long run), printed
    above the progress bar (rich draws what is written to stderr above it)."""
    print(f"warning: {message}", file=sys.stderr)


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
            "models; default: the shipped thickgrid), a model folder (config.json + "
            "model.safetensors), hf://owner/repo\\[@revision] on the Hugging Face Hub, or an "
            "official checkpoint file.",
        ),
    ] = None,
    spacing: Spacing = None,
    factor: Factor = None,
    in_plane: InPlane = None,
    in_plane_spacing: InPlaneSpacing = None,
    align: AlignOption = Align.edges,
    consistency: ConsistencyOption = Consistency.none,
    device: DeviceOption = Device.auto,
    precision: PrecisionOption = Precision.fp32,
    tile: Tile = InferenceOptions.tile,
    tile_overlap: TileOverlap = InferenceOptions.tile_overlap,
    z_overlap: ZOverlap = InferenceOptions.z_overlap,
    batch_size: BatchSize = InferenceOptions.batch_size,
    steps: Steps = None,
    seed: Seed = None,
    sampler: Sampler = None,
    refine: Refine = None,
    planes: Planes = None,
    slab: Slab = None,
    series: Series = None,
    dtype: Dtype = OutputType.int16,
    patient_id: PatientID = None,
    patient_name: PatientName = None,
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
    options = replace(
        options, steps=steps, seed=seed, sampler=sampler, refine=refine, planes=planes
    )
    loaded: dict[str, Any] = {}  # the model and its name, once load_model loads them
    settings = dict(
        method=method.value if method is not None else "bspline",
        spacing=spacing,
        factor=factor,
        in_plane=in_plane,
        in_plane_spacing=in_plane_spacing,
        align=align.value,
        consistency=consistency.value,
        overwrite=overwrite,
        dtype=dtype.value,
        series_uid=series,
        patient_id=patient_id,
        patient_name=patient_name,
        options=options,
        slab=None,  # parsed by check_options
    )

    def work(job: Job, advance: Callable[[float], None]) -> None:
        upsample_file(
            job.source,
            job.target,
            **settings,
            progress=advance,
            model=loaded.get("model"),
            model_name=loaded.get("name"),
            notice=_show_at_once,
        )

    def task() -> Task:
        """The same work in worker processes, each loading the model from its spec."""
        if method is not None:
            return Task(upsample_file, settings)
        from thinct.models import DEFAULT_MODEL

        keywords = {**settings, "model_name": loaded["name"]}
        return Task(upsample_file, keywords, model_spec or DEFAULT_MODEL, device.value)

    def check_options() -> None:
        check_patient(patient_id, patient_name)
        check_target_options(spacing, factor, in_plane, in_plane_spacing)
        settings["slab"] = parse_slab(slab)
        if method is not None:
            refuse_diffusion_options(options, "--method")
            refuse_engine_options_with_method(model_spec, options)

    def check_paths(job: Job) -> None:
        check_job(job.source, job.target, overwrite, dtype.value, (patient_id, patient_name))

    def load_model() -> None:
        """The model, once the options and paths are known to be good (it takes seconds)."""
        if method is not None:
            return
        from thinct.inference.engine import load_checked_model
        from thinct.models import model_display_name

        use_local_gpu(options.device)  # under torchrun, before the model loads
        loaded["model"] = load_checked_model(model_spec, options)
        loaded["name"] = model_display_name(model_spec)
        if factor == 1 and not loaded["model"].config.diffusion:
            refuse_model_with_kept_slices()  # a diffusion model refines the pixels itself

    scale = Scale(workers, shard, task)
    run_command(
        arguments,
        overwrite,
        quiet,
        "upsampling",
        work,
        check_options,
        scale,
        check_job=check_paths,
        prepare=load_model,
    )
