"""Running a command's jobs: plan them from IN... OUT, take this process's share, and run one
in this process or many (in worker processes with --workers), with progress and one line
per problem. `thinct upsample` and `thinct simulate` differ only in the work of one job.

Exit codes: 0 success, 1 a failure while processing (in a batch: at least one file failed),
2 a usage error, 130 interrupted (`thinct.cli.boundary`; a batch says first what it finished).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from thinct.batch.jobs import Job, Outcome, plan_jobs, run_jobs, skipped
from thinct.batch.shards import Share, finish_torchrun_process
from thinct.batch.workers import Task, run_in_workers
from thinct.cli.boundary import error_boundary
from thinct.errors import UsageError, collected_warnings
from thinct.reporting import Reporter


def _split_output(arguments: list[str]) -> tuple[list[str], Path, bool]:
    """The inputs, the output, and whether the output was written with a trailing slash (a
    folder to write into, which `Path` would forget)."""
    if len(arguments) < 2:
        raise UsageError("give an input and an output (IN... OUT)")
    if arguments[-1].lower() in ("true", "false") and not Path(arguments[-1]).exists():
        # `--overwrite true`: the flag is set, and "true" would be written as a DICOM folder.
        raise UsageError(
            f"the output would be {arguments[-1]!r}: flags take no value "
            "(--overwrite, not --overwrite true)"
        )
    separators = (os.sep, os.altsep) if os.altsep else (os.sep,)
    return arguments[:-1], Path(arguments[-1]), arguments[-1].endswith(separators)


@dataclass(frozen=True)
class Scale:
    """How a run spreads: ``workers`` processes for a batch's jobs, each running ``task()``
    (built after ``prepare``, which may load what it names), and the ``--shard``."""

    workers: int = 1
    shard: str | None = None
    task: Callable[[], Task] | None = None


def run_command(
    arguments: list[str],
    overwrite: bool,
    quiet: bool,
    verb: str,
    work: Callable[[Job, Callable[[float], None]], None],
    check_options: Callable[[], None],
    scale: Scale = Scale(),
    check_job: Callable[[Job], None] | None = None,
    prepare: Callable[[], None] | None = None,
) -> None:
    """Plan and run jobs with progress and one-line reporting; exit with the right code.

    Before any scan is read, cheapest first: ``check_options`` (option values that can never
    work), the inputs (`plan_jobs`), a single job's output (``check_job``), and then
    ``prepare`` (what takes seconds, such as loading a model): a typo in a path is reported at
    once, not after the model has loaded.

    Under torchrun, each process exits with its own code, but one with failures first waits
    for the others: torchrun would stop them as soon as it exits (`thinct.batch.shards`).
    """
    with Reporter(quiet=quiet) as reporter:
        try:
            checks = (check_options, check_job, prepare)
            _run_share(arguments, overwrite, verb, work, checks, scale, reporter)
        except typer.Exit as stop:
            finish_torchrun_process(stop.exit_code != 0, reporter.info)
            raise
        finish_torchrun_process(False, reporter.info)


def _run_share(
    arguments: list[str],
    overwrite: bool,
    verb: str,
    work: Callable[[Job, Callable[[float], None]], None],
    checks: tuple[Callable[[], None], Callable[[Job], None] | None, Callable[[], None] | None],
    scale: Scale,
    reporter: Reporter,
) -> None:
    """Plan the jobs and run this process's share of them.

    The shard is checked first, then the ``checks`` (`run_command`). All run before any file
    is read, so a bad option is one usage error (exit 2), not the same failure repeated for
    every file of a batch (exit 1) after reading each one.
    """
    check_options, check_job, prepare = checks
    with error_boundary(reporter):
        share = Share.of(scale.shard)
        check_options()
        inputs, output, into_folder = _split_output(arguments)
        with reporter.warnings_reported():  # folders below an input that cannot be listed
            plan = plan_jobs(inputs, output, into_folder)
        jobs = share.select(plan.jobs, output, plan.batch)
        if jobs and not plan.batch and check_job is not None:
            check_job(jobs[0])
        if jobs and prepare is not None:
            prepare()
    if not jobs:
        reporter.info(f"nothing to do for {share}")
        return

    def process(job: Job) -> None:
        # A job's warnings are reported when it succeeds; its error line says what went wrong.
        with (
            collected_warnings() as messages,
            reporter.task(f"{verb} {job.source.name}") as advance,
        ):
            work(job, advance)
        for message in messages:
            reporter.warning(message)

    if plan.batch:
        _run_batch(jobs, output, process, overwrite, reporter, share, scale)
    else:
        _run_single(jobs[0], process, reporter)


def _run_single(job: Job, process: Callable[[Job], None], reporter: Reporter) -> None:
    """One job: its error, usage or processing, decides the exit code. It runs in this
    process whatever --workers says: a worker would only add its start-up."""
    with error_boundary(reporter):
        process(job)
    reporter.info(f"wrote {job.target}")


def _run_batch(
    jobs: list[Job],
    output: Path,
    process: Callable[[Job], None],
    overwrite: bool,
    reporter: Reporter,
    share: Share,
    scale: Scale,
) -> None:
    """Many jobs: each failure is one line and the rest go on; any failure makes exit 1.
    Interrupted, the summary still says what was finished and how many were not done."""
    outcomes: list[Outcome] = []
    with reporter.task("files", total=len(jobs)) as advance_files:

        def report(outcome: Outcome) -> None:
            outcomes.append(outcome)
            advance_files(len(outcomes))
            for message in outcome.warnings:
                reporter.warning(message)
            if outcome.status == "failed":
                reporter.error(outcome.message)
            elif outcome.status == "skipped":
                reporter.info(f"skipped {outcome.job.source}: {outcome.job.target} exists")

        try:
            if scale.task is not None and min(scale.workers, _to_do(jobs, overwrite)) > 1:
                run_in_workers(jobs, scale.task(), scale.workers, overwrite, report)
            else:  # one worker would only add its start-up to one process's work
                run_jobs(jobs, process, overwrite, report)
        except KeyboardInterrupt:
            reporter.info(_summary(outcomes, output, share, not_done=len(jobs) - len(outcomes)))
            raise
    reporter.info(_summary(outcomes, output, share))
    if any(outcome.status == "failed" for outcome in outcomes):
        raise typer.Exit(1)


def _summary(
    outcomes: list[Outcome], output: Path, share: Share, not_done: int | None = None
) -> str:
    """The closing line of a batch; ``not_done`` (jobs neither finished nor skipped) when it
    was interrupted."""
    counts = [
        f"{sum(o.status == status for o in outcomes)} {word}"
        for status, word in (("done", "written"), ("skipped", "skipped"), ("failed", "failed"))
    ]
    if not_done is not None:
        counts.append(f"{not_done} not done")
    where = f"outputs in {output}" + ("" if share.whole else f", {share}")
    return f"{', '.join(counts)} ({where})"


def _to_do(jobs: list[Job], overwrite: bool) -> int:
    """Jobs that will run rather than be skipped."""
    return sum(skipped(job, overwrite) is None for job in jobs)
