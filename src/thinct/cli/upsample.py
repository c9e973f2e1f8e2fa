"""`thinct upsample`: the main job, thick slices in, synthetic thin slices out.

torch, and the modules that use it, load only when a model runs (not with --method)."""

from __future__ import annotations

from collections.abc import Callable
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
    Inputs,
    Method,
    OutputType,
    Overwrite,
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
from thinct.geometry import check_target_options
from thinct.inference.options import InferenceOptions
from thinct.pipeline import upsample_file


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

    scale = Scale(workers, shard, task)
    run_command(arguments, overwrite, quiet, "upsampling", work, check_options, scale)
