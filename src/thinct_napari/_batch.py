"""The "Batch thin slices" panel: a folder of thick scans to a folder of thin ones, for the
detectors and pipelines that only accept thin input.

It runs the jobs of ``thinct upsample IN_FOLDER OUT_FOLDER``: `thinct.batch.jobs.plan_jobs` finds
the scans (volume files and DICOM series folders, below the input folder too) and names the
outputs, and each scan goes through `thinct.pipeline.upsample_file`, so outputs are int16 HU
files with the input's geometry, written atomically, and identical to the command line's. One
scan failing does not stop the others; existing outputs are skipped or overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, FileEdit, RadioButtons, Table

from thinct.batch.jobs import Job, Outcome, attempt, plan_jobs, skipped
from thinct.errors import ThinctError, UsageError
from thinct.io import volume_suffix
from thinct.pipeline import upsample_file
from thinct_napari._controls import Ended, Hooks, RunControls
from thinct_napari._settings import EngineSettings, ModelCache, Settings

COLUMNS = ("scan", "status", "message")


@dataclass(frozen=True)
class _Started:
    """Posted when a scan starts: its row shows "running"."""

    row: int


@dataclass(frozen=True)
class _Finished:
    row: int
    outcome: Outcome


class BatchWidget(Container):
    """Input folder, output folder, method and settings; Run converts every scan."""

    def __init__(self) -> None:
        self.input_folder = FileEdit(label="input folder", mode="d")
        self.output_folder = FileEdit(label="output folder", mode="d")
        self.settings = EngineSettings()
        self.existing = RadioButtons(
            label="existing outputs",
            choices=("skip", "overwrite"),
            value="skip",
            orientation="horizontal",
        )
        self.controls = RunControls("Run batch", self.run)
        self.table = Table(columns=COLUMNS)
        header = self.table.native.horizontalHeader()
        header.setStretchLastSection(True)
        super().__init__(
            widgets=[
                self.input_folder,
                self.output_folder,
                *self.settings.widgets,
                self.existing,
                *self.controls.widgets,
                self.table,
            ]
        )
        self._models = ModelCache()
        # The current (or last) run: its jobs, their outcomes so far and its output folder.
        self._jobs: list[Job] = []
        self._outcomes: list[Outcome] = []
        self._output = Path()

    def run(self) -> None:
        """Plan the jobs (a bad folder is a one-line error at once), then run them."""
        try:
            settings = self.settings.snapshot()
            jobs = self._plan()
        except ThinctError as error:
            self.controls.fail(str(error))
            return
        overwrite = self.existing.value == "overwrite"
        self._jobs, self._outcomes = jobs, []
        self._output = Path(self.output_folder.value)
        source = Path(self.input_folder.value)
        self._show_rows([(_relative(job.source, source), "queued", "") for job in jobs])
        self.controls.start(
            lambda hooks: self._convert(jobs, settings, overwrite, hooks),
            self._ended,
            f"{len(jobs)} scans: {settings.made_by}, {settings.grid}...",
            on_post=self._posted,
        )

    def _plan(self) -> list[Job]:
        """The jobs of ``thinct upsample INPUT OUTPUT``; a DICOM series given as the input
        folder is written into the output folder under its own name, like any other scan."""
        source, target = Path(self.input_folder.value), Path(self.output_folder.value)
        if str(self.input_folder.value) in {"", "."} or not source.is_dir():
            raise UsageError("choose an input folder of thick scans")
        if str(self.output_folder.value) in {"", "."}:
            raise UsageError("choose an output folder")
        if volume_suffix(target) is not None and not target.is_dir():
            raise UsageError(f"{target} is a file name; choose an output folder")
        plan = plan_jobs([str(source)], target)
        if plan.batch:
            return plan.jobs
        return [Job(job.source, target / job.source.name) for job in plan.jobs]

    def _convert(self, jobs: list[Job], settings: Settings, overwrite: bool, hooks: Hooks) -> None:
        """The background part: every scan in turn, the model loaded once; each outcome is
        posted to the table as it comes."""
        model = self._models.get(settings)
        model_name = settings.made_by if model is not None else None
        for row, job in enumerate(jobs):
            if hooks.cancelled():
                break
            hooks.post(_Started(row))

            def progress(fraction: float, row: int = row) -> None:
                hooks.progress((row + fraction) / len(jobs))

            def process(job: Job) -> None:
                upsample_file(
                    job.source,
                    job.target,
                    overwrite=overwrite,
                    progress=progress,
                    model=model,
                    model_name=model_name,
                    cancel=hooks.cancelled,
                    **settings.file_options(),
                )

            outcome = skipped(job, overwrite) or attempt(job, process)
            hooks.post(_Finished(row, outcome))

    def _posted(self, message: Any) -> None:
        if isinstance(message, _Started):
            self.table.data[message.row, 1] = "running"
            name = self._jobs[message.row].source.name
            self.controls.report(f"scan {message.row + 1} of {len(self._jobs)}: {name}")
        elif isinstance(message, _Finished):
            self._outcomes.append(message.outcome)
            self.table.data[message.row, 1] = message.outcome.status
            outcome = message.outcome
            target = _relative(outcome.job.target, self._output)
            self.table.data[message.row, 2] = outcome.message or target
            self.table.native.resizeColumnToContents(0)

    def _ended(self, ended: Ended) -> None:
        for row in range(len(self._outcomes), len(self._jobs)):
            self.table.data[row, 1] = "not run"
        if ended.error is not None:
            return  # the model could not load: the status line says why
        counts = {status: 0 for status in ("done", "skipped", "failed", "cancelled")}
        for outcome in self._outcomes:
            counts[outcome.status] += 1
        counts["not run"] = len(self._jobs) - len(self._outcomes)
        summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
        self.controls.report(f"{summary} -> {self._output}")

    def _show_rows(self, rows: list[tuple[str, str, str]]) -> None:
        self.table.value = {
            "data": [list(row) for row in rows],
            "index": list(range(1, len(rows) + 1)),
            "columns": COLUMNS,
        }
        self.table.native.resizeColumnsToContents()


def _relative(path: Path, folder: Path) -> str:
    """A scan or output as the table shows it: its path inside the chosen folder (its name,
    for a DICOM series chosen as the input folder itself)."""
    if path == folder or not path.is_relative_to(folder):
        return path.name
    return path.relative_to(folder).as_posix()
