"""The report folder of an evaluation: ``results.csv`` (one row per case and method),
``summary.md`` (means per method, the difference to the baseline, PSNR per case, the metric
definitions) and ``figures/CASE.png``.

The folder is checked before any scan is read, so that an earlier report is never replaced by
accident. Every file is written under a hidden name and renamed into place
(`thinct.io.atomic`), and the CSV and summary are rewritten whole after each case, so an
interrupted run leaves a consistent report of the cases done so far. ``read_results`` reads
the CSV back for anyone comparing runs.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thinct.errors import Argument, OutputError, UsageError
from thinct.evaluate import metrics, topology
from thinct.evaluate.methods import BASELINE
from thinct.evaluate.scoring import COLUMNS, FigureRequest, Result
from thinct.io.atomic import write_text

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.md"
FIGURES_FOLDER = "figures"

# Decimal places of each number in results.csv; the other columns are text or whole numbers.
_DECIMALS = {
    "psnr": 4,
    "ssim": 5,
    "lung_psnr": 4,
    "vif": 5,
    "frangi": 5,
    "smse": 5,
    "cldice": 5,
    "lung_hu_bias": 2,
    "laa950_bias": 3,
    "seconds": 3,
}


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
            component_diff=int(row["component_diff"]),
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
    _Column("vif", "VIF", 4, True),
    _Column("frangi", "Frangi (lower is better)", 4, False),
    _Column("smse", "SMSE (lower is better)", 3, False),
    _Column("cldice", "clDice", 4, True),
    _Column("component_diff", "components vs reference", 1, None),
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
        "as much wrong vessel signal as the reference holds. SMSE: "
        f"{metrics.SMSE_SCALE:g} x the mean over all pixels of (V(method) - V(reference))^2, "
        "the same V on the same slices; 0 is perfect. VIF: pixel-domain visual information "
        "fidelity (torchmetrics) of the same axial slices in the lung window scaled to "
        "[0, 255], the mean over slices; 1 for identical slices, lower as detail is lost. "
        "clDice: centreline Dice of the vessel trees of "
        f"{topology.SLAB_SLICES} contiguous slices in the middle of the case (the structure "
        f"operator's map of each axial slice in the lung window above {topology.THRESHOLD:g}, "
        f"3D components of at least {topology.MIN_COMPONENT_MM3:g} mm^3 with "
        "26-connectivity, skeletons by scikit-image); 1 for identical trees. Components vs "
        "reference: the method's number of those components minus the reference's (above 0: "
        "a tree broken into more pieces; 0 is best). Lung HU bias and LAA-950 bias: "
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
class EvaluationReport:
    """The report folder: refuses to replace an earlier report without ``overwrite``."""

    folder: Path
    overwrite: bool = False
    figures: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse a folder that cannot hold the report, before anything is read."""
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise UsageError(
                f"{folder} is a file; ", Argument("out"), " takes a folder for the report"
            )
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
                    f"{folder} holds a report ({', '.join(existing)}); use ",
                    Argument("overwrite", True),
                    " to replace it",
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
