"""Running a command's jobs: plan them from IN... OUT, take this process's share, and run one
in this process or many (in worker processes with --workers), with progress and one line
per problem. `thinct upsample` and `thinct simulate` differ only in the work of one job.

Exit codes: 0 success, 1 a failure while processing (in a batch: at least one file failed),
2 a usage error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from thinct.batch.jobs import Job, Outcome, plan_jobs, run_jobs, skipped
from thinct.batch.shards import Share, finish_torchrun_process
from thinct.batch.workers import Task, run_in_workers, sigterm_as_interrupt
from thinct.cli.boundary import error_boundary
from thinct.errors import UsageError, collected_warnings
from thinct.reporting import Reporter


def _split_output(arguments: list[str]) -> tuple[list[str], Path]:
    if len(arguments) < 2:
        raise UsageError("give an input and an output (IN... OUT)")
    return arguments[:-1], Path(arguments[-1])


@dataclass(frozen=True)
class Scale:
    """How a run spreads: ``workers`` processes for a batch's jobs, each running ``task()``
    (built after ``check_options``, which may load what it names), and the ``--shard``."""

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
    scale: Scale,
    reporter: Reporter,
) -> None:
    """Plan the jobs and run this process's share of them.

    The shard is checked first, then ``check_options`` raises `UsageError` for option values
    that can never work. Both run before any file is read, so a bad option is one usage error
    (exit 2), not the same failure repeated for every file of a batch (exit 1) after reading
    each one.
    """
    with error_boundary(reporter):
        share = Share.of(scale.shard)
        check_options()
        inputs, output = _split_output(arguments)
        plan = plan_jobs(inputs, output)
    jobs = share.select(plan.jobs, output, plan.batch)
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

    with sigterm_as_interrupt():
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
