"""Run a batch's jobs in several worker processes at once (``--workers N``).

Workers are started with ``spawn``, never ``fork``: torch is not fork-safe. A worker gets a
`Task` (a module-level function, its settings and the spec of the model it needs; a model is
never pickled across processes), sets its thread counts, loads the model once and then runs
the jobs the main process sends it, one at a time. The main process keeps all the reporting:
a worker sends back each job's outcome and the warnings it raised.

Stopping: a worker ignores Ctrl-C, which reaches every process of the terminal's group; the
main process ends its workers with SIGTERM, which a worker turns into `SystemExit`, so the
atomic writer removes its staging folder and no partial output is left. A worker that dies
(the kernel's out-of-memory killer) fails its job alone, its staging folder is removed (it
names the dead worker: `thinct.io.staging`), and a new worker takes its place.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from typing import Any, NoReturn

from thinct.batch.jobs import Job, Outcome, attempt, failure, skipped
from thinct.batch.shards import use_local_gpu
from thinct.errors import (
    Argument,
    ThinctError,
    arguments_as_options,
    collected_warnings,
    option_names,
)
from thinct.io.staging import remove_abandoned

# How long stopped workers may take to leave the C++ call they are in (a model's forward pass,
# an ITK resampling) before they are killed outright.
_STOP_SECONDS = 5.0


@dataclass(frozen=True)
class Task:
    """A command's work on each job, as a worker receives it: ``function(source, target,
    **keywords)`` with a module-level function and picklable keywords, plus ``model=`` the
    model loaded from ``model`` (a spec) when it is not None. ``device`` is the model's
    ``--device`` (under torchrun, ``auto``/``cuda`` means the process's own GPU)."""

    function: Callable[..., None]
    keywords: Mapping[str, Any]
    model: str | None = None
    device: str = "auto"


def available_cores() -> int:
    """Cores this process may run on (a batch system's CPU set, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def threads_per_worker(workers: int, environ: Mapping[str, str] = os.environ) -> int:
    """Threads for each worker's torch and ITK: the cores divided among the workers, so that
    they do not fight over cores (N workers x all cores threads is slower than either alone).
    ``OMP_NUM_THREADS``, when the user sets it, is the count instead."""
    given = environ.get("OMP_NUM_THREADS", "").strip()
    if given.isascii() and given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, available_cores() // workers)


def run_in_workers(
    jobs: Sequence[Job],
    task: Task,
    workers: int,
    overwrite: bool,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Run every job in up to ``workers`` processes; existing outputs are skipped (unless
    ``overwrite``) and reported first, then each outcome as it arrives."""
    outcomes = []
    pending = []
    for job in jobs:
        outcome = skipped(job, overwrite)
        if outcome is None:
            pending.append(job)
        else:
            outcomes.append(outcome)
            report(outcome)
    if pending:
        with _Pool(task, min(workers, len(pending))) as pool:
            for outcome in pool.run(pending):
                outcomes.append(outcome)
                report(outcome)
    return outcomes


def _ignored(signum: int) -> AbstractContextManager[None]:
    return _handled(signum, signal.SIG_IGN)


@contextmanager
def _handled(signum: int, handler: Any) -> Iterator[None]:
    """``handler`` for the signal inside the block. Only the main thread may handle signals;
    elsewhere (a test runner's thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


# --- the main process's side ---------------------------------------------------------------


@dataclass
class _Worker:
    process: SpawnProcess
    connection: Connection
    job: Job | None = None


@dataclass
class _Pool:
    """Worker processes fed one job at a time, so the main process always knows which job
    each one holds (and can fail just that one when a worker dies). Leaving the ``with``
    block ends every worker still running."""

    task: Task
    size: int
    workers: list[_Worker] = field(default_factory=list)

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def run(self, jobs: Sequence[Job]) -> Iterator[Outcome]:
        queue = deque(jobs)
        threads = threads_per_worker(self.size)
        for _ in range(self.size):
            self._give(self._start(threads), queue)
        while busy := [worker for worker in self.workers if worker.job is not None]:
            ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.connection not in ready and worker.process.sentinel not in ready:
                    continue
                outcome = self._collect(worker)
                if outcome is None:  # the worker died: its job failed; a new one goes on
                    outcome = failure(worker.job, _died(worker.process.exitcode))
                    remove_abandoned(worker.job.target.parent)
                    self.workers.remove(worker)
                    worker.connection.close()
                    worker = self._start(threads) if queue else None
                if worker is not None:
                    self._give(worker, queue)
                yield outcome
        for worker in self.workers:
            worker.process.join()

    def _start(self, threads: int) -> _Worker:
        """A new worker. Ctrl-C is ignored while it starts, and so from its first instruction
        on (an ignored signal stays ignored in the new program): pressed while the worker
        imports its modules, it would print a traceback instead of leaving the stopping to the
        main process."""
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(theirs, self.task, threads, option_names()), daemon=True
        )
        with _ignored(signal.SIGINT):
            process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self.workers.append(worker)
        return worker

    @staticmethod
    def _give(worker: _Worker, queue: deque[Job]) -> None:
        """The next job, or None (the worker exits) when there is none left. A worker that
        died meanwhile keeps the job; the next wait sees it gone and fails the job."""
        worker.job = queue.popleft() if queue else None
        if worker.process.is_alive():
            worker.connection.send(worker.job)

    @staticmethod
    def _collect(worker: _Worker) -> Outcome | None:
        """The outcome a worker sent, or None when it died before sending one."""
        try:
            return worker.connection.recv()
        except (EOFError, OSError):
            worker.process.join()
            return None

    def _stop(self) -> None:
        """End the workers still running (after Ctrl-C or an error in the main process).

        SIGTERM first: a worker leaves its job through `SystemExit`, and the atomic writer
        removes its staging folder (or, in the middle of replacing an output, puts the old
        one back). Python handles the signal only between C++ calls, though, and one call can
        take minutes: a worker still running after a few seconds is killed, and the staging
        folder of the job it held is removed here (its work was not near the final renames,
        which take milliseconds).
        """
        running = [worker for worker in self.workers if worker.process.is_alive()]
        for worker in running:
            worker.process.terminate()
        deadline = time.monotonic() + _STOP_SECONDS
        for worker in running:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
                if worker.job is not None:
                    remove_abandoned(worker.job.target.parent)
        for worker in self.workers:
            worker.connection.close()


def _died(code: int | None) -> str:
    """Why a worker ended in the middle of a job. Killed by a signal, it was most likely the
    out-of-memory killer; with an exit code, a bug whose traceback the worker printed."""
    if code is not None and code < 0:
        return (
            f"the worker process was killed ({signal.Signals(-code).name}); if the memory ran "
            f"out, use fewer {Argument('workers')}"
        )
    return f"the worker process ended (exit {code}), see the traceback above"


# --- a worker's side -------------------------------------------------------------------------


def _serve(
    connection: Connection, task: Task, threads: int, names: Mapping[str, str] | None
) -> None:
    """A worker's life: set up once, then run jobs until the main process sends None. Its
    messages name arguments as the main process does (``names``: `thinct.errors.Argument`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
    with arguments_as_options(names):
        process = _prepare(task, threads)
        try:
            while (job := connection.recv()) is not None:
                connection.send(_attempt_recording_warnings(job, process))
        except EOFError:  # the main process is gone
            return


def _exit_quietly(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def _prepare(task: Task, threads: int) -> Callable[[Job], None]:
    """Thread counts, the GPU and the model, once. A model that fails to load (it loaded in
    the main process, so this is rare) fails each job with its message."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    keywords = dict(task.keywords)
    if task.model is not None:
        import torch

        torch.set_num_threads(threads)
        use_local_gpu(task.device)
        from thinct.models import load_model

        try:
            keywords["model"] = load_model(task.model)
        except ThinctError as error:
            return _failing(error)
    return lambda job: task.function(job.source, job.target, **keywords)


def _failing(error: ThinctError) -> Callable[[Job], None]:
    def process(job: Job) -> None:
        raise error

    return process


def _attempt_recording_warnings(job: Job, process: Callable[[Job], None]) -> Outcome:
    """The job's outcome with the thinct warnings it raised, which only the main process may
    print (between its progress bar's redraws)."""
    with collected_warnings() as messages:
        outcome = attempt(job, process)
    return replace(outcome, warnings=tuple(messages))
