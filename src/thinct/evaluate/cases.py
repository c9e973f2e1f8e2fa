"""The cases an evaluation scores, from either kind of input, each loaded only when its turn
comes so that one scan at a time is in memory.

A case is a thick scan and its thin reference on exactly the grid a method must produce
(`thinct.data.cases.Case`). Thin scans give cases with the thick scan simulated from them by
the core simulator (`Simulation`: slab thickness, profile, evaluation spacing, the part of each
scan kept); paired dataset folders give real thick and thin scans (`thinct.data.layouts`).
Case names come from the inputs' paths and are made unique, since they name report rows and
figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from thinct.data import layouts
from thinct.data.cases import Case, simulated_case
from thinct.data.pairs import slice_range
from thinct.errors import Argument, UsageError
from thinct.geometry import slice_axis
from thinct.io import read_volume, volume_suffix
from thinct.resample.simulate import check_slab_options

# A thin scan may be resampled to the evaluation spacing, but not from slices more than this
# many times further apart: the reference would then be an interpolation itself.
_THIN_ENOUGH = 2.0


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
            raise UsageError(
                Argument("spacing"), f" must be a positive number of mm, got {self.spacing:g}"
            )
        ratio = self.thickness / self.spacing
        if ratio < 2 - 1e-6 or abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise UsageError(
                Argument("thickness", f"{self.thickness:g}"),
                " must be a whole multiple (2 or more) of ",
                Argument("spacing", f"{self.spacing:g}"),
                ", so that each thick slab covers whole thin slices",
            )
        start, stop = self.slices
        if not 0 <= start < stop <= 1:
            raise UsageError(
                Argument("slices"), f" needs 0 <= START < STOP <= 1, got {start:g}:{stop:g}"
            )

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
            Argument("slices"),
            f" must be START:STOP, fractions of the slices such as 0.25:0.75, got {text!r}",
        ) from None
    if not (math.isfinite(start) and math.isfinite(stop) and 0 <= start < stop <= 1):
        raise UsageError(Argument("slices"), f" needs 0 <= START < STOP <= 1, got {text!r}")
    return (start, stop)


def unique(names: Sequence[str]) -> list[str]:
    """The names, with ``#2``, ``#3`` ... added to repeats."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return result


def _case_name(relative: Path) -> str:
    suffix = volume_suffix(relative)
    text = relative.as_posix()
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


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
    names = unique([name for _, name in sources])
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
            f"thin scans (at most {_THIN_ENOUGH * simulation.spacing:g} mm for ",
            Argument("spacing", f"{simulation.spacing:g}"),
            "), or takes paired scans with ",
            Argument("layout"),
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
    if layout not in layouts.LAYOUTS:
        raise UsageError(
            Argument("layout"), f" must be one of {', '.join(layouts.LAYOUTS)}, got {layout!r}"
        )
    cases: list[Case] = []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise UsageError(
                f"{path}: no such folder (", Argument("layout"), " takes dataset folders)"
            )
        found = layouts.layout_cases(layout, path, split)
        if len(folders) > 1:
            found = [_renamed(case, f"{path.name}/{case.name}") for case in found]
        cases.extend(found)
    if not cases:
        raise UsageError(f"no {split} cases in {', '.join(folders)} ({layout} layout)")
    names = unique([case.name for case in cases])
    return [
        CaseSource(name, lambda case=case, name=name: _renamed(case, name))
        for case, name in zip(cases, names, strict=True)
    ]


def _renamed(case: Case, name: str) -> Case:
    return case if case.name == name else Case(name, case.thick, case.reference, case.grid)
