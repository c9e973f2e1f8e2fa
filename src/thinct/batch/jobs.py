"""Turn the command line's inputs into jobs, and run many jobs so one bad file does not stop
the rest.

One input file (or DICOM series folder) and one output is a single job; its output is written
into a folder, under the input's name, when it names one (`_writes_into`). Several inputs, a
glob pattern, or a folder of scans is a batch: the output is a folder and each output keeps
its input's name (relative path inside an input folder, plain name otherwise).

`thinct.batch.shards` picks the jobs a process runs (``--shard``, torchrun);
`thinct.batch.workers` runs them in several processes with the same `skipped` and `attempt`
as `run_jobs` here.
"""

from __future__ import annotations

import glob
import os
import stat
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from thinct.errors import Cancelled, InputError, ThinctError, ThinctWarning, UsageError
from thinct.io import STAGING_SUFFIX, volume_suffix
from thinct.io.dicom import is_dicom_folder
from thinct.io.formats import READABLE
from thinct.reporting import out_of_memory

_GLOB_CHARACTERS = set("*?[")
# Formats thinct reads but cannot write, and the extension their outputs get instead.
_WRITTEN_AS = {".nhdr": ".nrrd"}


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
    status: str  # "done", "skipped", "failed" or "cancelled" (a Cancel button stopped it)
    message: str = ""
    warnings: tuple[str, ...] = ()  # from a worker process, for the main one to report


def is_scan(path: Path) -> bool:
    """A volume file or a DICOM series folder: what a batch processes, whatever else is there."""
    if path.is_file():
        return volume_suffix(path) is not None
    return is_dicom_folder(path)


def _output_name(relative: Path) -> Path:
    """The output path of an input in a batch: the same, with an extension thinct can write."""
    suffix = volume_suffix(relative)
    if suffix not in _WRITTEN_AS:
        return relative
    return relative.with_name(relative.name[: -len(suffix)] + _WRITTEN_AS[suffix])


def _scans_in_folder(folder: Path, output: Path) -> Iterable[tuple[Path, Path]]:
    """(scan, path relative to folder) for every volume file and DICOM series folder below.

    A folder that cannot be listed is said: the given folder is an `InputError` (not "no
    scans"), a folder below it one warning (its scans are left out; the rest of a large
    archive still runs, as with a ``lost+found`` only its owner may read).
    """

    def unreadable(error: OSError) -> None:
        reason = f"cannot list this folder ({error.strerror or error})"
        if Path(error.filename or folder) == folder:
            raise InputError(f"{folder}: {reason}")
        message = f"{error.filename}: {reason}; its scans are left out"
        warnings.warn(message, ThinctWarning, stacklevel=2)

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        here = Path(root)
        dirs[:] = sorted(
            name
            for name in dirs
            if not name.endswith(STAGING_SUFFIX) and not _inside(here / name, output)
        )
        if here != folder and is_scan(here):
            dirs[:] = []
            yield here, here.relative_to(folder)
            continue
        for name in sorted(files):
            if is_scan(here / name):
                yield here / name, (here / name).relative_to(folder)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _glob_scans(pattern: str, output: Path) -> list[Path]:
    """The scans a glob pattern matches, like a folder scan: other files (notes, the data
    files of detached headers) and plain folders are left out, and so is the output folder,
    which a pattern like 'scans/*' matches when it lies inside scans/."""
    matches = (Path(match) for match in sorted(glob.glob(pattern)))
    return [match for match in matches if is_scan(match) and not _inside(match, output)]


def _refuse_special(path: Path) -> None:
    """Refuse an input that exists but is neither a file nor a folder (``/dev/null``, a named
    pipe): it would otherwise be taken for a batch and get a message about the output."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
    raise UsageError(f"{path}: not a scan file ({kind}); thinct reads {READABLE}")


def _writes_into(output: Path, into_folder: bool) -> bool:
    """Whether a single job's output names a folder to write into, under the input's name: an
    existing folder that is not a DICOM series, or a name written with a trailing slash
    (``into_folder``), made if missing. One rule whether or not the folder exists yet: ``new/``
    and ``existing/`` both receive ``new/scan.nii.gz``. An existing DICOM series folder is the
    output itself (replaced with --overwrite), slash or not; a missing name without a slash or
    an extension is a new DICOM series."""
    if output.is_dir():
        return not is_dicom_folder(output)
    return into_folder


def plan_jobs(inputs: Sequence[str], output: Path, into_folder: bool = False) -> Plan:
    """Expand inputs (files, DICOM folders, folders of scans, glob patterns) into jobs.

    ``into_folder``: the output was written with a trailing slash (`_writes_into`), which a
    `Path` does not keep.
    """
    if not inputs:
        raise UsageError("give at least one input")
    single = len(inputs) == 1 and Path(inputs[0]).exists()
    if single:
        source = Path(inputs[0])
        _refuse_special(source)
        if source.is_file() or is_dicom_folder(source):
            if _writes_into(output, into_folder):
                output = output / _output_name(Path(source.name))
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
            _refuse_special(path)
            pairs.append((path, Path(path.name)))
        elif _GLOB_CHARACTERS & set(pattern):
            matches = _glob_scans(pattern, output)
            if not matches:
                raise UsageError(f"no scans match {pattern}")
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
    jobs = [Job(source, output / _output_name(relative)) for source, relative in pairs]
    targets = [job.target for job in jobs]
    clashes = sorted({str(t) for t in targets if targets.count(t) > 1})
    if clashes:
        raise UsageError(f"several inputs would write the same output: {', '.join(clashes)}")
    return Plan(jobs=jobs, batch=True)


def failure(job: Job, message: str) -> Outcome:
    """A failed job whose message names its input first: in a batch, the line must say which
    of the files failed, even when the error itself is about the output."""
    if str(job.source) not in message:
        message = f"{job.source}: {message}"
    return Outcome(job, "failed", message)


def skipped(job: Job, overwrite: bool) -> Outcome | None:
    """The outcome of a job whose output exists already (unless ``overwrite``): a re-run of a
    batch does only what is missing."""
    if job.target.exists() and not overwrite:
        return Outcome(job, "skipped", "output exists")
    return None


def attempt(job: Job, process: Callable[[Job], None]) -> Outcome:
    """Run one job; its failure is an outcome, not an exception, so the batch goes on.

    A scan too large for the memory fails on its own: the next one may well fit.
    """
    try:
        process(job)
    except Cancelled:
        return Outcome(job, "cancelled", "nothing written")
    except ThinctError as error:
        return failure(job, str(error))
    except MemoryError as error:
        return failure(job, out_of_memory(error))
    return Outcome(job, "done")


def run_jobs(
    jobs: Sequence[Job],
    process: Callable[[Job], None],
    overwrite: bool,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Run every job in this process; existing outputs are skipped unless ``overwrite``;
    failures are collected."""
    outcomes = []
    for job in jobs:
        outcome = skipped(job, overwrite) or attempt(job, process)
        outcomes.append(outcome)
        report(outcome)
    return outcomes
