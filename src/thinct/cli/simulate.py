"""`thinct simulate`: the thick-slice scan a scanner would reconstruct from thin CT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from thinct.batch.jobs import Job
from thinct.batch.workers import Task
from thinct.cli.options import (
    Dtype,
    Inputs,
    OutputType,
    Overwrite,
    PatientID,
    PatientName,
    Profile,
    Quiet,
    Series,
    ShardOption,
    Workers,
)
from thinct.cli.running import Scale, run_command
from thinct.io.dicom import check_patient
from thinct.pipeline import check_job, simulate_file
from thinct.resample.simulate import check_slab_options


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
    patient_id: PatientID = None,
    patient_name: PatientName = None,
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
        patient_id=patient_id,
        patient_name=patient_name,
    )

    def work(job: Job, advance: Callable[[float], None]) -> None:
        simulate_file(job.source, job.target, **settings)
        advance(1.0)

    def check_options() -> None:
        check_patient(patient_id, patient_name)
        check_slab_options(thickness, increment, profile.value, fwhm)

    def check_paths(job: Job) -> None:
        check_job(job.source, job.target, overwrite, dtype.value, (patient_id, patient_name))

    scale = Scale(workers, shard, lambda: Task(simulate_file, settings))
    run_command(arguments, overwrite, quiet, "simulating", work, check_options, scale, check_paths)
