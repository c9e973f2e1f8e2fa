"""Segmentations that nnU-Net predicted on a converted (thin-slice) dataset, brought back onto
the thick scans they belong to, where the radiologist reads them.

A converted dataset records its thick source in its provenance, so the thin dataset's name is
enough to find the thick grid of each prediction; each label is then a majority vote over the
thin slices of its thick slab.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from thinct.batch.jobs import Job, Outcome, run_jobs
from thinct.errors import Argument, UsageError
from thinct.integrations.nnunet.dataset import (
    PROVENANCE_KEY,
    Dataset,
    dataset_folder,
    header_grid,
    read_dataset,
    volume_files,
)
from thinct.io import read_volume, write_volume
from thinct.resample.thicken import thicken


def thick_dataset(argument: str) -> Dataset:
    """The thick dataset behind ``argument``: itself, or the source a thinct conversion
    recorded (its path, or else its name in ``$nnUNet_raw``)."""
    dataset = read_dataset(dataset_folder(argument))
    provenance = dataset.meta.get(PROVENANCE_KEY)
    if not isinstance(provenance, dict):
        return dataset
    source = provenance.get("source") or {}
    for candidate in (source.get("path"), source.get("dataset")):
        if not isinstance(candidate, str) or not candidate:
            continue
        try:
            return read_dataset(dataset_folder(candidate))
        except UsageError:
            continue
    raise UsageError(
        f"{dataset.folder} was converted from {source.get('dataset')} ({source.get('path')}), "
        "which is not there any more; give the thick dataset with ",
        Argument("dataset"),
    )


@dataclass(frozen=True)
class Restoration:
    """Predictions on thin grids, each to be written onto its thick scan's grid."""

    jobs: list[Job]
    thick: Dataset


def plan_restore(predictions: Path, out: Path, dataset: str) -> Restoration:
    """One job per prediction ``CASE{file_ending}`` (nnU-Net's other outputs, its json files and
    probabilities, are left out), each checked to have a thick scan before any is read."""
    if not predictions.is_dir():
        raise UsageError(f"{predictions}: no such folder of predictions")
    thick = thick_dataset(dataset)
    ending = thick.file_ending
    files = volume_files(predictions, ending)
    if not files:
        raise UsageError(f"{predictions}: no predictions (*{ending})")
    here, there = predictions.resolve(), out.resolve()
    if here == there or there.is_relative_to(here):
        raise UsageError(f"{out} is inside {predictions}; give an output folder outside it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder for the restored segmentations")
    for path in files:
        thick_reference(thick, path.name[: -len(ending)])
    return Restoration([Job(path, out / path.name) for path in files], thick)


def thick_reference(thick: Dataset, case: str) -> Path:
    """The thick scan a prediction of ``case`` was made from: its first channel, in imagesTs
    or else imagesTr."""
    name = f"{case}_0000{thick.file_ending}"
    for split in ("Ts", "Tr"):
        path = thick.folder / f"images{split}" / name
        if path.is_file():
            return path
    raise UsageError(f"{case}: {thick.folder} has no imagesTs/{name} nor imagesTr/{name}")


def restore_case(job: Job, thick: Dataset, overwrite: bool = False) -> None:
    """One thin prediction onto its thick scan's grid: a majority vote per thick slab."""
    case = job.source.name[: -len(thick.file_ending)]
    grid = header_grid(thick_reference(thick, case))
    prediction = read_volume(job.source)
    image = thicken(prediction.image, grid, labels=True)
    write_volume(prediction.with_image(image), job.target, overwrite=overwrite)


def restore_predictions(
    restoration: Restoration,
    overwrite: bool = False,
    report: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Restore every prediction; existing outputs are skipped unless ``overwrite``, and a
    failure does not stop the rest."""

    def process(job: Job) -> None:
        restore_case(job, restoration.thick, overwrite)

    return run_jobs(restoration.jobs, process, overwrite, report or (lambda outcome: None))
