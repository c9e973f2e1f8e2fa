"""A whole evaluation: the request checked and its cases and methods gathered
(`plan_evaluation`), then the cases run one after the other into the report
(`run_evaluation`).

Every mistake in a request is refused before any scan is read. During the run a case that
fails is reported and skipped, the others go on, and the report is rewritten after each case.
The pieces live beside this module: the cases in `thinct.evaluate.cases`, the methods in
`thinct.evaluate.methods`, scoring a case in `thinct.evaluate.scoring` and the report folder
in `thinct.evaluate.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from thinct.errors import Argument, ThinctError, UsageError
from thinct.evaluate.cases import CaseSource, Simulation, layout_cases, thin_scan_cases, unique
from thinct.evaluate.methods import (
    BASELINE,
    EvaluatedMethod,
    baseline,
    load_models,
    model_method,
    with_consistency,
)
from thinct.evaluate.report import EvaluationReport
from thinct.evaluate.scoring import Result, evaluate_case
from thinct.evaluate.vif import missing_dependency
from thinct.inference.options import InferenceOptions
from thinct.resample.consistency import check_consistency
from thinct.windows import WINDOWS

if TYPE_CHECKING:
    from thinct.reporting import Reporter


@dataclass
class Evaluation:
    """Everything a run needs, checked: the cases, the methods and the report."""

    cases: list[CaseSource]
    methods: list[EvaluatedMethod]
    report: EvaluationReport
    description: str
    figures: bool = True
    window: str = "lung"
    notes: list[str] = field(default_factory=list)


def plan_evaluation(
    inputs: Sequence[str],
    out: Path,
    methods: Sequence[str] = (),
    models: Sequence[str] = (),
    layout: str | None = None,
    split: str = "test",
    simulation: Simulation | None = None,
    figures: bool = True,
    window: str = "lung",
    options: InferenceOptions | None = None,
    overwrite: bool = False,
    consistency: str = "none",
) -> Evaluation:
    """Check a request and gather its cases and methods. Thin scans are only listed here
    (each is read when its turn comes); paired layouts are read and lined up here, by
    `thinct.data.layouts`.

    Without ``methods`` and ``models``: B-spline and the default model, or B-spline and
    linear interpolation when the default model cannot be loaded. ``simulation`` applies to
    thin scans; with a ``layout`` the inputs are paired dataset folders and it must be None.
    ``consistency`` (a slice profile) adds each method once more, its thin slices made
    consistent with the thick ones (`with_consistency`).
    """
    options = options or InferenceOptions()
    if not inputs:
        raise UsageError("give at least one scan or folder to evaluate")
    if window not in WINDOWS:
        raise UsageError(
            Argument("window"), f" must be one of {', '.join(WINDOWS)}, got {window!r}"
        )
    report = EvaluationReport(Path(out), overwrite)
    chosen = [baseline(name) for name in dict.fromkeys(methods)]
    notes = []
    if not models and options != InferenceOptions() and methods:
        raise UsageError(
            Argument("device"),
            " and ",
            Argument("precision"),
            " apply to models, not to ",
            Argument("method"),
        )
    if layout is not None:
        if simulation is not None:
            raise UsageError(
                Argument("thickness"),
                ", ",
                Argument("spacing"),
                ", ",
                Argument("profile"),
                ", ",
                Argument("fwhm"),
                " and ",
                Argument("slices"),
                " apply to thin scans, not to ",
                Argument("layout"),
                " pairs",
            )
        description = f"paired scans, {layout} layout, {split} split"
    else:
        simulation = simulation or Simulation()
        simulation.check()
        description = simulation.describe()
    report.check()
    if layout is not None:
        cases = layout_cases(layout, inputs, split)
    else:
        cases = thin_scan_cases(inputs, report.folder, simulation)
    if models:
        loaded = load_models(list(models), options)
        names = unique([m.name for m in chosen] + [name for name, _ in loaded])[len(chosen) :]
        chosen += [
            model_method(model, name, options)
            for name, (_, model) in zip(names, loaded, strict=True)
        ]
    elif not methods:
        chosen = [baseline(BASELINE)]
        try:
            chosen += [
                model_method(model, name, options) for name, model in load_models([None], options)
            ]
        except ThinctError as error:
            chosen.append(baseline("linear"))
            notes.append(f"no default model ({error}); evaluating bspline and linear")
    missing = missing_dependency()
    if missing is not None:
        notes.append(missing)
    check_consistency(consistency)
    if consistency != "none":
        chosen = [variant for m in chosen for variant in with_consistency(m, consistency)]
    return Evaluation(cases, chosen, report, description, figures, window, notes)


def run_evaluation(evaluation: Evaluation, reporter: Reporter) -> tuple[list[Result], list[str]]:
    """Evaluate case after case, rewriting the report after each; a case that fails is
    reported and the rest go on. Returns the results and the failures (one line each)."""
    for note in evaluation.notes:
        reporter.info(note)
    report = evaluation.report
    report.start()
    results: list[Result] = []
    failures: list[str] = []
    names = ", ".join(m.name for m in evaluation.methods)
    for number, source in enumerate(evaluation.cases, start=1):
        label = f"{source.name} ({number}/{len(evaluation.cases)})"
        figure = (
            report.figure_request(source.name, evaluation.window) if evaluation.figures else None
        )
        try:
            with (
                reporter.warnings_reported(),
                reporter.task(f"evaluating {label}", total=len(evaluation.methods)) as advance,
            ):
                case = source.load()
                rows = evaluate_case(case, evaluation.methods, figure, advance)
                del case
        except ThinctError as error:
            message = str(error)
            failures.append(message if source.name in message else f"{source.name}: {message}")
            reporter.error(failures[-1])
            report.figures.pop(source.name, None)
        else:
            results.extend(rows)
            scores = "; ".join(
                f"{r.method} {r.psnr:.2f} dB, VIF {r.vif:.3f}, clDice {r.cldice:.3f}" for r in rows
            )
            reporter.info(f"{label}: {scores}")
        report.write(results, evaluation.description, failures)
    if results:
        reporter.info(
            f"evaluated {len(results) // len(evaluation.methods)} case(s) with {names}; "
            f"report in {report.folder}"
        )
    return results, failures
