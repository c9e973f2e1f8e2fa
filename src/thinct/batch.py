"""Turn the command line's inputs into jobs, and run many jobs so one bad file does not stop
the rest.

One input file (or DICOM series folder) and one output is a single job. Several inputs, a
glob pattern, or a folder of scans is a batch: the output is a folder and each output keeps
its input's name (relative path inside an input folder, plain name otherwise).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from thinct.errors import ThinctError, UsageError
from thinct.io import volume_suffix
from thinct.io.dicom import list_series
from thinct.pipeline import check_output_path

_GLOB_CHARACTERS = set("*?[")
_STAGING_SUFFIX = ".thinct-tmp"


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass(frozen=True)
class Plan:
    jobs: list[Job]
    batch: bool


@dataclass(frozen=True)
class Outcome:
    job: Job
    status: str  # "done", "skipped" or "failed"
    message: str = ""


def is_dicom_folder(folder: Path) -> bool:
    return folder.is_dir() and bool(list_series(folder))


def _scans_in_folder(folder: Path, output: Path) -> Iterable[tuple[Path, Path]]:
    """(scan, path relative to folder) for every volume file and DICOM series folder below."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            name
            for name in dirs
            if not name.endswith(_STAGING_SUFFIX) and not _inside(here / name, output)
        )
        if here != folder and is_dicom_folder(here):
            dirs[:] = []
            yield here, here.relative_to(folder)
            continue
        for name in sorted(files):
            if volume_suffix(name) is not None:
                yield here / name, (here / name).relative_to(folder)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def plan_jobs(inputs: Sequence[str], output: Path) -> Plan:
    """Expand inputs (files, DICOM folders, folders of scans, glob patterns) into jobs."""
    if not inputs:
        raise UsageError("give at least one input")
    single = len(inputs) == 1 and Path(inputs[0]).exists()
    if single:
        source = Path(inputs[0])
        if source.is_file() or is_dicom_folder(source):
            if output.is_dir() and not is_dicom_folder(output):
                output = output / source.name  # an existing plain folder: write into it
            return Plan(jobs=[Job(source, output)], batch=False)
    pairs: list[tuple[Path, Path]] = []
    for pattern in inputs:
        path = Path(pattern)
        if path.is_dir() and not is_dicom_folder(path):
            if path.resolve() == output.resolve():
                # Every output would be its own input: all "skipped", or all refused.
                raise UsageError(f"{output} is the input folder; give another output folder")
            found = list(_scans_in_folder(path, output))
            if not found:
                raise UsageError(f"{path}: no scans in this folder")
            pairs.extend(found)
        elif path.exists():
            pairs.append((path, Path(path.name)))
        elif _GLOB_CHARACTERS & set(pattern):
            # A pattern like 'scans/*' also matches an output folder inside scans/.
            matches = [Path(m) for m in sorted(glob.glob(pattern)) if not _inside(Path(m), output)]
            if not matches:
                raise UsageError(f"no files match {pattern}")
            pairs.extend((match, Path(match.name)) for match in matches)
        else:
            raise UsageError(f"{path}: no such file or folder")
    # Checked after the inputs, so a mistyped single input is reported as missing rather
    # than as a batch with a bad output.
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} is a file; with several inputs the output must be a folder")
    if volume_suffix(output) is not None and not output.is_dir():
        # A batch writes a folder; `thinct upsample scans/ thin.nii.gz` is a mistake, not a
        # request for a folder named thin.nii.gz.
        raise UsageError(
            f"{output} is a file name; with several inputs or a folder the output must be a folder"
        )
    jobs = [Job(source, output / relative) for source, relative in pairs]
    targets = [job.target for job in jobs]
    clashes = sorted({str(t) for t in targets if targets.count(t) > 1})
    if clashes:
        raise UsageError(f"several inputs would write the same output: {', '.join(clashes)}")
    return Plan(jobs=jobs, batch=True)


def run_jobs(
    jobs: Sequence[Job],
    process: Callable[[Job], None],
    overwrite: bool,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Run every job; existing outputs are skipped unless ``overwrite``; failures are collected."""
    outcomes = []
    for job in jobs:
        if job.target.exists() and not overwrite:
            outcome = Outcome(job, "skipped", "output exists")
        else:
            try:
                check_output_path(job.source, job.target)
                process(job)
                outcome = Outcome(job, "done")
            except ThinctError as error:
                outcome = Outcome(job, "failed", str(error))
        outcomes.append(outcome)
        report(outcome)
    return outcomes
