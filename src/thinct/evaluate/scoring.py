"""One case through every method: each output timed, scored against the reference and, when
asked, drawn beside the others in the case's figure.

The scores are those of `thinct.evaluate.metrics` (PSNR, SSIM, lung-window PSNR, the Frangi
structure score, SMSE and the lung density biases), `thinct.evaluate.vif` (VIF) and
`thinct.evaluate.topology` (clDice and the component count of the vessel tree), plus the
seconds a method took to make the thin scan, one `Result` per method. Only one output is
held at a time: the figure keeps just the planes it shows (and the structure map of one),
and what depends on the reference alone is computed once per case.
`thinct.evaluate.figures` (matplotlib, SciPy) loads only when a figure is drawn.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from thinct.data.cases import Case
from thinct.errors import ThinctError, UsageError
from thinct.evaluate import metrics, topology, vif
from thinct.evaluate.methods import EvaluatedMethod
from thinct.resample.interpolation import interpolate
from thinct.windows import WINDOWS


@dataclass(frozen=True)
class Result:
    """One row of the report: a method on a case. ``frangi`` and ``smse`` are
    lower-is-better, ``component_diff`` best at 0 (`thinct.evaluate.topology`); ``seconds``
    is the wall-clock time the method took to make the thin scan from the thick one in
    memory (reading, simulation and scoring not included); ``slices`` is the number of thin
    slices it made."""

    case: str
    method: str
    psnr: float
    ssim: float
    lung_psnr: float
    vif: float
    frangi: float
    smse: float
    cldice: float
    component_diff: int
    lung_hu_bias: float
    laa950_bias: float
    seconds: float
    slices: int


COLUMNS = tuple(f.name for f in fields(Result))


@dataclass(frozen=True)
class FigureRequest:
    """Where a case's figure goes and in which display window (a `thinct.windows` name)."""

    path: Path
    window: str = "lung"


def _in_plane_mm(case: Case) -> float:
    spacing = case.reference.image.GetSpacing()
    return float(np.mean([spacing[a] for a in range(3) if a != case.grid.axis]))


def _plane_spacing(case: Case) -> tuple[float, float, float]:
    """(slices, rows, columns) spacing of `Case.slices_first` arrays, in mm."""
    spacing = case.grid.grid.spacing
    rows, columns = (a for a in (2, 1, 0) if a != case.grid.axis)
    return (spacing[case.grid.axis], spacing[rows], spacing[columns])


class _Scorer:
    """The metrics of any output of one case; what depends on the reference alone (its
    vesselness, lung mask and vessel tree) is computed once."""

    def __init__(self, case: Case) -> None:
        self.reference = case.reference_array()
        self.pixel_mm = _in_plane_mm(case)
        self.voxel_mm3 = float(np.prod(_plane_spacing(case)))
        self.chosen = metrics.frangi_slices(self.reference.shape[0])
        self.slab = topology.topology_slab(self.reference.shape[0])
        self.vif_missing = vif.missing_dependency()
        self._reference_vessels: np.ndarray | None = None
        self._reference_tree: topology.VesselTree | None = None
        self._lung: np.ndarray | None = None

    def __call__(self, output: np.ndarray) -> dict[str, float]:
        if self._reference_vessels is None:
            self._reference_vessels = metrics.vesselness(self.reference[self.chosen], self.pixel_mm)
            self._reference_tree = topology.vessel_tree(
                topology.structure_map(self.reference[self.slab]), self.voxel_mm3
            )
            edge = metrics.EDGE_SLICES
            self._lung = metrics.lung_mask(self.reference[edge : self.reference.shape[0] - edge])
        vessels = metrics.vesselness(output[self.chosen], self.pixel_mm)
        tree = topology.vessel_tree(topology.structure_map(output[self.slab]), self.voxel_mm3)
        lung_hu_bias, laa950_bias = metrics.lung_density_bias(
            output, self.reference, mask=self._lung
        )
        return {
            "lung_hu_bias": lung_hu_bias,
            "laa950_bias": laa950_bias,
            "psnr": metrics.psnr(output, self.reference),
            "ssim": metrics.ssim(output, self.reference),
            "lung_psnr": metrics.lung_psnr(output, self.reference),
            "vif": float("nan")
            if self.vif_missing
            else vif.slice_vif(output[self.chosen], self.reference[self.chosen]),
            "frangi": metrics.vessel_difference(vessels, self._reference_vessels),
            "smse": metrics.structure_mse(vessels, self._reference_vessels),
            "cldice": topology.cldice(tree, self._reference_tree),
            "component_diff": tree.components - self._reference_tree.components,
        }


def evaluate_case(
    case: Case,
    methods: Sequence[EvaluatedMethod],
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

        window = WINDOWS[figure.window].contrast_limits
        thick = case.slices_first(interpolate(case.thick, case.grid, method="nearest"))
        box = figures.choose_box(
            thick, reference, spacing, window=window, prefer_lung=figure.window == "lung"
        )
        fixed = {
            name: figures.Panel("", figures.planes(array, box), figures.structure_plane(array, box))
            for name, array in (("input", thick), ("reference", reference))
        }
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
            panels[method.name] = figures.Panel(
                "", figures.planes(output, box), figures.structure_plane(output, box)
            )
        del output
        if advance is not None:
            advance(done)
    if figure is not None:
        _draw_case(case, methods, results, fixed, panels, figure, spacing)
    return results


def _draw_case(
    case: Case,
    methods: Sequence[EvaluatedMethod],
    results: Sequence[Result],
    fixed: dict[str, Any],
    panels: dict[str, Any],
    figure: FigureRequest,
    spacing: tuple[float, float, float],
) -> None:
    from thinct.evaluate import figures

    by_name = {r.method: r for r in results}
    models = [m.name for m in methods if m.is_model]
    # The error of the first model, or of the best method when there is no model.
    focus = models[0] if models else max(results, key=lambda r: r.psnr).method
    thick_mm = case.thick.image.GetSpacing()[case.grid.axis]
    columns = [replace(fixed["input"], title=f"{thick_mm:g} mm input")]
    for method in methods:
        result = by_name[method.name]
        columns.append(
            replace(
                panels[method.name],
                title=f"{method.name}\n{result.psnr:.2f} dB, SSIM {result.ssim:.3f}",
            )
        )
    reference = fixed["reference"]
    columns.append(replace(reference, title=f"reference {case.grid.spacing:g} mm"))
    error_planes = figures.Planes(
        *(
            np.abs(a - b)
            for a, b in zip(panels[focus].planes.as_list(), reference.planes.as_list(), strict=True)
        )
    )
    error = figures.Panel(
        f"|{focus} - reference|\n0 to {figures.ERROR_RANGE_HU:g} HU",
        error_planes,
        np.abs(panels[focus].structure - reference.structure),
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
        window=WINDOWS[figure.window].contrast_limits,
        plane_names=names,
        superior_up=axial and direction[2] > 0,
    )
