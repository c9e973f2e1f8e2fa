"""Evaluation: cases x methods, side by side, into a CSV, a markdown summary and figures.

A case is a thick scan and its thin reference on exactly the grid a method must produce
(`thinct.data.cases.Case`): thin scans with the thick scan simulated on the fly by the core
simulator, or real pairs from a dataset folder (`thinct.data.layouts`). A method is a
classical interpolation or a model run by the sliding-window engine. For every case and
method the report has PSNR, SSIM, lung-window PSNR, the Frangi structure score
(`thinct.evaluate.metrics`) and the seconds the method took to make the thin scan.

The report folder holds ``results.csv`` (one row per case and method), ``summary.md`` (means
per method and the difference to B-spline) and ``figures/CASE.png`` (`thinct.evaluate.figures`). Every
file is written under a hidden name and renamed into place, and all of them are rewritten
after each case, so an interrupted run leaves a consistent report of the cases done so far.

torch loads only when a model is evaluated.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from thinct.data.cases import Case, simulated_case
from thinct.data.pairs import slice_range
from thinct.errors import OutputError, ThinctError, ThinctWarning, UsageError
from thinct.evaluate import metrics
from thinct.geometry import slice_axis
from thinct.inference.options import InferenceOptions
from thinct.io import read_volume, volume_suffix
from thinct.io.atomic import write_text
from thinct.resample.consistency import check_consistency, enforce_consistency
from thinct.resample.interpolation import METHODS, interpolate
from thinct.resample.simulate import check_slab_options
from thinct.volume import Volume

if TYPE_CHECKING:
    from thinct.reporting import Reporter

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.md"
FIGURES_FOLDER = "figures"
BASELINE = "bspline"
LAYOUTS = ("rplhr", "cthnet")
# A thin scan may be resampled to the evaluation spacing, but not from slices more than this
# many times further apart: the reference would then be an interpolation itself.
_THIN_ENOUGH = 2.0


@dataclass(frozen=True)
class Method:
    """A way to make a case's thin scan: ``run`` returns it on ``case.grid``."""

    name: str
    run: Callable[[Case], Volume]
    is_model: bool = False


def baseline(name: str) -> Method:
    """A classical interpolation (nearest, linear, bspline, lanczos) as a method."""
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return Method(name, lambda case: interpolate(case.thick, case.grid, method=name))


def model_method(model: Any, name: str, options: InferenceOptions | None = None) -> Method:
    """A model run by the sliding-window engine as a method."""

    def run(case: Case) -> Volume:
        from thinct.inference.engine import upsample_with_model

        return upsample_with_model(case.thick, case.grid, model, options)

    return Method(name, run, is_model=True)


def with_consistency(method: Method, profile: str) -> tuple[Method, Method]:
    """``method`` and, to run right after it on the same case, its output made consistent
    for ``profile`` (named ``METHOD+PROFILE``): what `thinct upsample --consistency PROFILE`
    makes. The second takes the first's output instead of running it again, so its seconds
    are those the projection adds."""
    kept: dict[str, Volume] = {}  # the last case's output, until the projection takes it

    def run_and_keep(case: Case) -> Volume:
        kept.clear()
        kept[case.name] = volume = method.run(case)
        return volume

    def project(case: Case) -> Volume:
        return enforce_consistency(kept.pop(case.name), case.thick, case.grid, profile=profile)

    return (
        Method(method.name, run_and_keep, method.is_model),
        Method(f"{method.name}+{profile}", project, method.is_model),
    )


@dataclass(frozen=True)
class Result:
    """One row of the report: a method on a case. ``frangi`` is lower-is-better; ``seconds``
    is the wall-clock time the method took to make the thin scan from the thick one in
    memory (reading, simulation and scoring not included); ``slices`` is the number of thin
    slices it made."""

    case: str
    method: str
    psnr: float
    ssim: float
    lung_psnr: float
    frangi: float
    lung_hu_bias: float
    laa950_bias: float
    seconds: float
    slices: int


COLUMNS = tuple(f.name for f in fields(Result))
# Decimal places of each number in results.csv.
_DECIMALS = {
    "psnr": 4,
    "ssim": 5,
    "lung_psnr": 4,
    "frangi": 5,
    "lung_hu_bias": 2,
    "laa950_bias": 3,
    "seconds": 3,
}


def _in_plane_mm(case: Case) -> float:
    spacing = case.reference.image.GetSpacing()
    return float(np.mean([spacing[a] for a in range(3) if a != case.grid.axis]))


def _plane_spacing(case: Case) -> tuple[float, float, float]:
    """(slices, rows, columns) spacing of `Case.slices_first` arrays, in mm."""
    spacing = case.grid.grid.spacing
    rows, columns = (a for a in (2, 1, 0) if a != case.grid.axis)
    return (spacing[case.grid.axis], spacing[rows], spacing[columns])


class _Scorer:
    """The metrics of any output of one case; the reference's vesselness is computed once."""

    def __init__(self, case: Case) -> None:
        self.reference = case.reference_array()
        self.pixel_mm = _in_plane_mm(case)
        self.chosen = metrics.frangi_slices(self.reference.shape[0])
        self._reference_vessels: np.ndarray | None = None
        self._lung: np.ndarray | None = None

    def __call__(self, output: np.ndarray) -> dict[str, float]:
        if self._reference_vessels is None:
            self._reference_vessels = metrics.vesselness(self.reference[self.chosen], self.pixel_mm)
        vessels = metrics.vesselness(output[self.chosen], self.pixel_mm)
        if self._lung is None:
            edge = metrics.EDGE_SLICES
            self._lung = metrics.lung_mask(self.reference[edge : self.reference.shape[0] - edge])
        lung_hu_bias, laa950_bias = metrics.lung_density_bias(
            output, self.reference, mask=self._lung
        )
        return {
            "lung_hu_bias": lung_hu_bias,
            "laa950_bias": laa950_bias,
            "psnr": metrics.psnr(output, self.reference),
            "ssim": metrics.ssim(output, self.reference),
            "lung_psnr": metrics.lung_psnr(output, self.reference),
            "frangi": metrics.vessel_difference(vessels, self._reference_vessels),
        }


@dataclass(frozen=True)
class FigureRequest:
    """Where a case's figure goes and in which display window (``lung`` or ``soft-tissue``)."""

    path: Path
    window: str = "lung"


def evaluate_case(
    case: Case,
    methods: Sequence[Method],
    figure: FigureRequest | None = None,
    advance: Callable[[float], None] | None = None,
) -> list[Result]:
    """Run every method on a case and score it; draw the case's figure when asked.

    Only one output is in memory at a time: the figure keeps the planes it shows.
    ``advance`` is called with the number of methods done so far.
    """
    if not methods:
        raise UsageError("give at least one method to evaluate")
    scorer = _Scorer(case)
    reference = scorer.reference
    spacing = _plane_spacing(case)
    # The figure's planes: of the thick input and the reference, and of each method's output.
    box = None
    fixed: dict[str, Any] = {}
    panels: dict[str, Any] = {}
    if figure is not None:
        from thinct.evaluate import figures

        window = figures.WINDOWS[figure.window]
        thick = case.slices_first(interpolate(case.thick, case.grid, method="nearest"))
        box = figures.choose_box(
            thick, reference, spacing, window=window, prefer_lung=figure.window == "lung"
        )
        fixed = {"input": figures.planes(thick, box), "reference": figures.planes(reference, box)}
        del thick
    results = []
    for done, method in enumerate(methods, start=1):
        start = time.perf_counter()
        volume = method.run(case)
        seconds = time.perf_counter() - start
        output = case.slices_first(volume)
        del volume
        if output.shape != reference.shape:
            raise ThinctError(
                f"{method.name} made {output.shape} voxels for a {reference.shape} reference"
            )
        scores = scorer(output)
        results.append(
            Result(case.name, method.name, **scores, seconds=seconds, slices=output.shape[0])
        )
        if box is not None:
            panels[method.name] = figures.planes(output, box)
        del output
        if advance is not None:
            advance(done)
    if figure is not None:
        _draw_case(case, methods, results, fixed, panels, figure, spacing)
    return results


def _draw_case(
    case: Case,
    methods: Sequence[Method],
    results: Sequence[Result],
    fixed: dict[str, Any],
    planes: dict[str, Any],
    figure: FigureRequest,
    spacing: tuple[float, float, float],
) -> None:
    from thinct.evaluate import figures

    by_name = {r.method: r for r in results}
    models = [m.name for m in methods if m.is_model]
    # The error of the first model, or of the best method when there is no model.
    focus = models[0] if models else max(results, key=lambda r: r.psnr).method
    thick_mm = case.thick.image.GetSpacing()[case.grid.axis]
    columns = [figures.Panel(f"{thick_mm:g} mm input", fixed["input"])]
    for method in methods:
        result = by_name[method.name]
        columns.append(
            figures.Panel(
                f"{method.name}\n{result.psnr:.2f} dB, SSIM {result.ssim:.3f}",
                planes[method.name],
            )
        )
    columns.append(figures.Panel(f"reference {case.grid.spacing:g} mm", fixed["reference"]))
    error_planes = figures.Planes(
        *(
            np.abs(a - b)
            for a, b in zip(planes[focus].as_list(), fixed["reference"].as_list(), strict=True)
        )
    )
    error = figures.Panel(
        f"|{focus} - reference|\n0 to {figures.ERROR_RANGE_HU:g} HU", error_planes
    )
    direction = np.asarray(case.grid.grid.direction, dtype=float).reshape(3, 3)[:, case.grid.axis]
    axial = int(np.argmax(np.abs(direction))) == 2
    names = (
        ("axial", "coronal", "sagittal") if axial else ("slices", "across rows", "across columns")
    )
    window = figure.window.replace("-", " ")
    figures.save_case_figure(
        figure.path,
        f"{case.name}: {thick_mm:g} mm to {case.grid.spacing:g} mm ({window} window)",
        columns,
        error,
        spacing,
        window=figures.WINDOWS[figure.window],
        plane_names=names,
        superior_up=axial and direction[2] > 0,
    )


# -- cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseSource:
    """A case to evaluate, loaded when its turn comes (one scan in memory at a time)."""

    name: str
    load: Callable[[], Case]


@dataclass(frozen=True)
class Simulation:
    """How thick scans are simulated from thin ones: slabs of ``thickness`` mm with the
    ``profile``, the reference resampled to ``spacing`` mm, ``slices`` the fraction of each
    scan's slices kept (start, stop)."""

    thickness: float = 5.0
    spacing: float = 1.0
    profile: str = "boxcar"
    fwhm: float | None = None
    slices: tuple[float, float] = (0.0, 1.0)

    @property
    def ratio(self) -> int:
        return round(self.thickness / self.spacing)

    def check(self) -> None:
        check_slab_options(self.thickness, None, self.profile, self.fwhm)
        if not (math.isfinite(self.spacing) and self.spacing > 0):
            raise UsageError(f"--spacing must be a positive number of mm, got {self.spacing:g}")
        ratio = self.thickness / self.spacing
        if ratio < 2 - 1e-6 or abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise UsageError(
                f"--thickness {self.thickness:g} must be a whole multiple (2 or more) of "
                f"--spacing {self.spacing:g}, so that each thick slab covers whole thin slices"
            )
        start, stop = self.slices
        if not 0 <= start < stop <= 1:
            raise UsageError(f"--slices needs 0 <= START < STOP <= 1, got {start:g}:{stop:g}")

    def describe(self) -> str:
        profile = self.profile if self.fwhm is None else f"{self.profile} (FWHM {self.fwhm:g} mm)"
        text = (
            f"thin scans resampled to {self.spacing:g} mm, thick scans of {self.thickness:g} mm "
            f"{profile} slabs simulated from them"
        )
        if self.slices != (0.0, 1.0):
            text += f", slices {self.slices[0]:g} to {self.slices[1]:g} of each scan"
        return text


def parse_slices(text: str | None) -> tuple[float, float]:
    """``START:STOP`` fractions of a scan's slices (either may be left out: ``:0.5``)."""
    if text is None:
        return (0.0, 1.0)
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = float(parts[0]) if parts[0].strip() else 0.0
        stop = float(parts[1]) if parts[1].strip() else 1.0
    except ValueError:
        raise UsageError(
            f"--slices must be START:STOP, fractions of the slices such as 0.25:0.75, got {text!r}"
        ) from None
    if not (math.isfinite(start) and math.isfinite(stop) and 0 <= start < stop <= 1):
        raise UsageError(f"--slices needs 0 <= START < STOP <= 1, got {text!r}")
    return (start, stop)


def _case_name(relative: Path) -> str:
    suffix = volume_suffix(relative)
    text = relative.as_posix()
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def _unique(names: Sequence[str]) -> list[str]:
    """The names, with ``#2``, ``#3`` ... added to repeats."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return result


def thin_scan_cases(
    inputs: Sequence[str], report: Path, simulation: Simulation
) -> list[CaseSource]:
    """Cases from thin scans: files, DICOM series folders, folders of scans (searched below,
    named by their path inside the folder) or quoted glob patterns. The report folder is never
    searched."""
    from thinct.batch.jobs import plan_jobs

    simulation.check()
    sources = []
    for text in dict.fromkeys(inputs):
        plan = plan_jobs([text], report)
        for job in plan.jobs:
            relative = job.target.relative_to(report) if plan.batch else Path(job.source.name)
            sources.append((job.source, _case_name(relative)))
    names = _unique([name for _, name in sources])
    return [
        CaseSource(name, lambda path=path, name=name: _simulated(path, name, simulation))
        for (path, _), name in zip(sources, names, strict=True)
    ]


def _simulated(path: Path, name: str, simulation: Simulation) -> Case:
    volume = read_volume(path)
    spacing = volume.image.GetSpacing()[slice_axis(volume.image.GetSpacing())]
    if spacing > _THIN_ENOUGH * simulation.spacing * (1 + 1e-6):
        raise UsageError(
            f"{path}: slices are {spacing:g} mm apart; evaluation simulates thick slices from "
            f"thin scans (at most {_THIN_ENOUGH * simulation.spacing:g} mm for --spacing "
            f"{simulation.spacing:g}), or takes paired scans with --layout"
        )
    if simulation.slices != (0.0, 1.0):
        volume = slice_range(volume, *simulation.slices)
    return simulated_case(
        volume,
        name,
        ratio=simulation.ratio,
        spacing=simulation.spacing,
        profile=simulation.profile,
        fwhm=simulation.fwhm,
    )


def layout_cases(layout: str, folders: Sequence[str], split: str) -> list[CaseSource]:
    """Cases from paired dataset folders (``rplhr`` or ``cthnet`` layout, one split)."""
    if layout not in LAYOUTS:
        raise UsageError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    from thinct.data.layouts import layout_cases as read_layout

    cases: list[Case] = []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise UsageError(f"{path}: no such folder (--layout takes dataset folders)")
        found = read_layout(layout, path, split)
        if len(folders) > 1:
            found = [_renamed(case, f"{path.name}/{case.name}") for case in found]
        cases.extend(found)
    if not cases:
        raise UsageError(f"no {split} cases in {', '.join(folders)} ({layout} layout)")
    names = _unique([case.name for case in cases])
    return [
        CaseSource(name, lambda case=case, name=name: _renamed(case, name))
        for case, name in zip(cases, names, strict=True)
    ]


def _renamed(case: Case, name: str) -> Case:
    return case if case.name == name else Case(name, case.thick, case.reference, case.grid)


# -- report --------------------------------------------------------------------------------


def _number(value: float, decimals: int) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{decimals}f}"


def results_csv(results: Sequence[Result]) -> str:
    """The rows as CSV text with a header (`COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in results:
        row = []
        for name in COLUMNS:
            value = getattr(result, name)
            row.append(_number(value, _DECIMALS[name]) if name in _DECIMALS else value)
        writer.writerow(row)
    return buffer.getvalue()


def read_results(path: Path) -> list[Result]:
    """Rows back from a ``results.csv``."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return [
        Result(
            case=row["case"],
            method=row["method"],
            slices=int(row["slices"]),
            **{name: float(row[name]) for name in _DECIMALS},
        )
        for row in rows
    ]


@dataclass(frozen=True)
class _Column:
    key: str
    title: str
    decimals: int
    higher_is_better: bool | None  # None: not a quality


_SUMMARY_COLUMNS = (
    _Column("psnr", "PSNR (dB)", 2, True),
    _Column("ssim", "SSIM", 4, True),
    _Column("lung_psnr", "lung PSNR (dB)", 2, True),
    _Column("frangi", "Frangi (lower is better)", 4, False),
    _Column("lung_hu_bias", "lung HU bias", 1, None),
    _Column("laa950_bias", "LAA-950 bias (pp)", 2, None),
    _Column("seconds", "seconds per scan", 2, None),
)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def summary_markdown(
    results: Sequence[Result],
    description: str,
    figures: dict[str, str] | None = None,
    failures: Sequence[str] = (),
) -> str:
    """A markdown report: means per method (best in bold), the mean difference to B-spline
    with how many cases each method beats it on, PSNR per case, and links to the figures."""
    methods = list(dict.fromkeys(r.method for r in results))
    cases = list(dict.fromkeys(r.case for r in results))
    by_method = {m: [r for r in results if r.method == m] for m in methods}
    lines = [
        "# thinct evaluation",
        "",
        f"{len(cases)} case{'s' * (len(cases) != 1)}, {len(methods)} "
        f"method{'s' * (len(methods) != 1)}: {description}.",
        "",
    ]
    means = {
        m: {c.key: _mean([getattr(r, c.key) for r in rows]) for c in _SUMMARY_COLUMNS}
        for m, rows in by_method.items()
    }
    best = {}
    for column in _SUMMARY_COLUMNS:
        values = [means[m][column.key] for m in methods if math.isfinite(means[m][column.key])]
        if column.higher_is_better is not None and len(values) > 1:
            best[column.key] = max(values) if column.higher_is_better else min(values)
    lines += [
        "## Means per method",
        "",
        "| method | cases | " + " | ".join(c.title for c in _SUMMARY_COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(_SUMMARY_COLUMNS),
    ]
    for m in methods:
        cells = []
        for column in _SUMMARY_COLUMNS:
            value = means[m][column.key]
            text = _number(value, column.decimals)
            if column.key in best and value == best[column.key]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {_md(m)} | {len(by_method[m])} | " + " | ".join(cells) + " |")
    lines.append("")
    if BASELINE in by_method and len(methods) > 1:
        reference = {r.case: r for r in by_method[BASELINE]}
        quality = [c for c in _SUMMARY_COLUMNS if c.higher_is_better is not None]
        lines += [
            f"## Difference to {BASELINE}",
            "",
            "Mean over the cases of (method - bspline); the last column counts the cases on "
            "which the method's PSNR is higher.",
            "",
            "| method | " + " | ".join(f"Δ {c.title}" for c in quality) + " | PSNR better on |",
            "|---|" + "---:|" * (len(quality) + 1),
        ]
        for m in methods:
            if m == BASELINE:
                continue
            paired = [(r, reference[r.case]) for r in by_method[m] if r.case in reference]
            cells = [
                _number(
                    _mean([getattr(r, c.key) - getattr(b, c.key) for r, b in paired]),
                    c.decimals,
                )
                for c in quality
            ]
            cells = [c if c.startswith("-") or c == "nan" else f"+{c}" for c in cells]
            wins = sum(r.psnr > b.psnr for r, b in paired)
            lines.append(f"| {_md(m)} | " + " | ".join(cells) + f" | {wins} of {len(paired)} |")
        lines.append("")
    lines += [
        "## PSNR per case (dB)",
        "",
        "| case | " + " | ".join(_md(m) for m in methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    table = {(r.case, r.method): r.psnr for r in results}
    for case in cases:
        cells = [_number(table.get((case, m), float("nan")), 2) for m in methods]
        lines.append(f"| {_md(case)} | " + " | ".join(cells) + " |")
    lines.append("")
    if figures:
        lines += ["## Figures", ""]
        lines += [f"- [{_md(case)}]({path})" for case, path in figures.items()]
        lines.append("")
    if failures:
        lines += ["## Failed cases", ""] + [f"- {_md(f)}" for f in failures] + [""]
    lines += [
        "## Metrics",
        "",
        f"All metrics leave out {metrics.EDGE_SLICES} thin slices at each end of a case. "
        "PSNR: [-1024, 2048] HU mapped to [0, 1], peak 1 (40 dB for identical volumes). "
        "SSIM: per axial slice on the same scale, Gaussian window 11, sigma 1.5. Lung PSNR: "
        "PSNR in the lung window (level -600, width 1500 HU: [-1350, 150] HU). Frangi: "
        "sum |V(method) - V(reference)| / sum V(reference) of the Frangi vesselness V of "
        f"up to {metrics.FRANGI_SLICES} axial slices in the lung window (scales "
        f"{', '.join(f'{s:g}' for s in metrics.FRANGI_SCALES_MM)} mm); 0 is perfect, 1 is "
        "as much wrong vessel signal as the reference holds. Lung HU bias and LAA-950 bias: "
        "in the reference's lung parenchyma (air below -400 HU inside the body, 2 voxels "
        "peeled off), the method's mean HU minus the reference's, and its percentage of "
        "voxels below -950 HU minus the reference's (percentage points); 0 is unbiased, "
        "nan when a case holds too little lung. Seconds: making the thin scan from the "
        "thick one in memory.",
        "",
    ]
    return "\n".join(lines)


def figure_name(case: str) -> str:
    """A case's figure file name: its name with anything but letters, digits, '.', '-' and
    '_' replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case).strip("._") + ".png"


@dataclass
class Report:
    """The report folder: refuses to replace an earlier report without ``overwrite``."""

    folder: Path
    overwrite: bool = False
    figures: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse a folder that cannot hold the report, before anything is read."""
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder} is a file; --out takes a folder for the report")
        for parent in folder.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"cannot write {folder}: {parent} is a file, not a folder")
                if not os.access(parent, os.W_OK | os.X_OK):
                    raise UsageError(f"cannot write {folder}: no permission to write in {parent}")
                break
        if folder.is_dir() and not self.overwrite:
            existing = [
                name
                for name in (RESULTS_FILE, SUMMARY_FILE, FIGURES_FOLDER)
                if (folder / name).exists()
            ]
            if existing:
                raise UsageError(
                    f"{folder} holds a report ({', '.join(existing)}); use --overwrite to "
                    "replace it"
                )

    def start(self) -> None:
        """Make the folder; with ``overwrite``, remove the figures of an earlier report."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            old = self.folder / FIGURES_FOLDER
            if self.overwrite and old.is_dir():
                for path in old.glob("*.png"):
                    path.unlink()
        except OSError as error:
            raise OutputError(f"cannot write {self.folder} ({error.strerror or error})") from None

    def figure_request(self, case: str, window: str) -> FigureRequest:
        taken = set(self.figures.values())
        name = figure_name(case)
        stem, number = name[: -len(".png")], 2
        while f"{FIGURES_FOLDER}/{name}" in taken:
            name, number = f"{stem}-{number}.png", number + 1
        self.figures[case] = f"{FIGURES_FOLDER}/{name}"
        return FigureRequest(self.folder / FIGURES_FOLDER / name, window)

    def write(
        self, results: Sequence[Result], description: str, failures: Sequence[str] = ()
    ) -> None:
        drawn = {
            case: path for case, path in self.figures.items() if (self.folder / path).is_file()
        }
        write_text(self.folder / RESULTS_FILE, results_csv(results))
        write_text(
            self.folder / SUMMARY_FILE,
            summary_markdown(results, description, drawn, failures),
        )


# -- a whole run ---------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Everything a run needs, checked: the cases, the methods and the report."""

    cases: list[CaseSource]
    methods: list[Method]
    report: Report
    description: str
    figures: bool = True
    window: str = "lung"
    notes: list[str] = field(default_factory=list)


def load_models(specs: Sequence[str | None], options: InferenceOptions) -> list[tuple[str, Any]]:
    """(name, model) for each spec, checked against the engine options."""
    from thinct.inference.engine import load_checked_model
    from thinct.models import model_display_name

    return [(model_display_name(spec), load_checked_model(spec, options)) for spec in specs]


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
    from thinct.evaluate.figures import WINDOWS

    options = options or InferenceOptions()
    if not inputs:
        raise UsageError("give at least one scan or folder to evaluate")
    if window not in WINDOWS:
        raise UsageError(f"--window must be one of {', '.join(WINDOWS)}, got {window!r}")
    report = Report(Path(out), overwrite)
    chosen = [baseline(name) for name in dict.fromkeys(methods)]
    notes = []
    if not models and options != InferenceOptions() and methods:
        raise UsageError("--device and --precision apply to models, not to --method")
    if layout is not None:
        if simulation is not None:
            raise UsageError(
                "--thickness, --spacing, --profile, --fwhm and --slices apply to thin scans, "
                "not to --layout pairs"
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
        names = _unique([m.name for m in chosen] + [name for name, _ in loaded])[len(chosen) :]
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
    check_consistency(consistency)
    if consistency != "none":
        chosen = [variant for m in chosen for variant in with_consistency(m, consistency)]
    return Evaluation(cases, chosen, report, description, figures, window, notes)


@contextmanager
def reported_warnings(reporter: Reporter) -> Iterator[None]:
    """Report the `ThinctWarning`s raised inside as one ``warning:`` line each, when the
    block ends (also when it ends with an error)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThinctWarning)
        try:
            yield
        finally:
            for warning in caught:
                if issubclass(warning.category, ThinctWarning):
                    reporter.warning(str(warning.message))


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
                reported_warnings(reporter),
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
            scores = ", ".join(f"{r.method} {r.psnr:.2f} dB" for r in rows)
            reporter.info(f"{label}: {scores}")
        report.write(results, evaluation.description, failures)
    if results:
        reporter.info(
            f"evaluated {len(results) // len(evaluation.methods)} case(s) with {names}; "
            f"report in {report.folder}"
        )
    return results, failures
