"""A thick-slice nnU-Net v2 raw dataset into a thin-slice one that nnU-Net can plan, train and
predict on.

What each file becomes: CT channels (channel name "CT", any case) go through the model or the
interpolation of the `Recipe` and are written int16 HU; other channels are B-spline
interpolated onto the same thin grid and written float32 (thinct's models know only CT);
labels are resampled by nearest neighbour onto that grid and written int16, so their values
stay exactly the same.

Long conversions can be interrupted: every file is written whole or not at all, a journal in
the target (`JOURNAL`) records the recipe and the cases finished, and ``dataset.json`` is
written last, so a target without it is a conversion in progress that the same call continues.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from thinct._version import __version__
from thinct.errors import Argument, InputError, OutputError, ThinctError, UsageError
from thinct.geometry import Grid, ThinGrid, thin_grid
from thinct.inference.options import InferenceOptions
from thinct.integrations.nnunet.dataset import (
    DATASET_JSON,
    PROVENANCE_KEY,
    Dataset,
    DatasetCase,
    case_grid,
    dataset_folder,
    dataset_id,
    find_cases,
    header_grid,
    read_dataset,
    target_folder,
)
from thinct.io import hounsfield_warning, read_volume, write_volume
from thinct.io.atomic import write_text
from thinct.io.writing import check_fits_int16
from thinct.reporting import out_of_memory
from thinct.resample.interpolation import interpolate, resample_labels
from thinct.volume import Volume

if TYPE_CHECKING:  # torch loads only when a model runs
    from torch import nn

JOURNAL = ".thinct-convert.json"
NON_CT_METHOD = "bspline"
LABEL_METHOD = "nearest"

_LABEL_RANGE = np.iinfo(np.int16)

Progress = Callable[[float], None]


@dataclass(frozen=True)
class Recipe:
    """How the CT channels become thin: a model (``model`` names it) or an interpolation
    ``method``; the target spacing or factor and the alignment, as for `thinct upsample`."""

    method: str | None = None
    model: str | None = None
    weights_sha256: str | None = None
    spacing: float | None = None
    factor: int | None = None
    align: str = "edges"

    def thin(self, grid: Grid) -> ThinGrid:
        return thin_grid(grid, spacing=self.spacing, factor=self.factor, align=self.align)

    def settings(self) -> dict[str, Any]:
        """The recipe as recorded in the provenance, and compared when a conversion resumes."""
        made_by: dict[str, Any] = (
            {"method": self.method}
            if self.method is not None
            else {"model": self.model}
            | ({"weights_sha256": self.weights_sha256} if self.weights_sha256 else {})
        )
        target = {"factor": self.factor} if self.factor else {"spacing": self.spacing or 1.0}
        rest = {"align": self.align, "other_channels": NON_CT_METHOD, "labels": LABEL_METHOD}
        return made_by | target | rest


def model_recipe(spec: str | None, model: nn.Module, **target: Any) -> Recipe:
    """A recipe for ``model``, loaded from ``spec`` (None: the default model), with the sha256
    of the very weights loaded when their card records one: a Hub branch that moves on
    cannot make the provenance name other weights than those that ran."""
    from thinct.models import DEFAULT_MODEL

    name = DEFAULT_MODEL if spec is None else spec
    return Recipe(model=name, weights_sha256=model.weights_sha256, **target)


@dataclass(frozen=True)
class Conversion:
    """A planned conversion: every case checked, and the cases a run before already finished."""

    source: Dataset
    target: Path
    cases: tuple[DatasetCase, ...]
    recipe: Recipe
    overwrite: bool = False
    done: frozenset[str] = field(default_factory=frozenset)

    def settings(self) -> dict[str, Any]:
        source = {"dataset": self.source.folder.name, "path": str(self.source.folder.resolve())}
        return {"source": source} | self.recipe.settings()

    def provenance(self) -> dict[str, Any]:
        return {"version": __version__} | self.settings()

    def finished(self, case: DatasetCase) -> bool:
        """Finished by an earlier run: journalled, and every file still there."""
        outputs = case.outputs(self.target, self.source.file_ending)
        return case.key in self.done and all(path.is_file() for path in outputs)

    def pending(self) -> list[DatasetCase]:
        return [case for case in self.cases if not self.finished(case)]


def _check_target_name(target: Path, source: Dataset) -> int:
    number = dataset_id(target.name)
    if number is None:
        raise UsageError(
            f"{target.name}: nnU-Net dataset names are DatasetNNN_Name (3-digit id; letters, "
            "digits, _ and - in the name), e.g. Dataset502_LungThin"
        )
    if number == source.id:
        raise UsageError(
            f"{target.name} has the id {number:03d} of its source {source.folder.name}; nnU-Net "
            "needs a new id"
        )
    return number


def _check_target_place(target: Path, number: int, source: Dataset) -> None:
    """No overlap with the source, and no other dataset with the same id beside the target
    (nnU-Net refuses an id that two folders share)."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is a file; give a dataset folder")
    here, there = source.folder.resolve(), target.resolve()
    if here == there or here.is_relative_to(there) or there.is_relative_to(here):
        raise UsageError(
            f"{target} overlaps the source {source.folder}; the source is never written"
        )
    if target.parent.is_dir():
        for other in sorted(target.parent.glob(f"Dataset{number:03d}_*")):
            if other.name != target.name and other.is_dir():
                raise UsageError(
                    f"{other} already has the id {number:03d}; give {target.name} another"
                )


def _read_journal(target: Path) -> dict[str, Any] | None:
    path = target / JOURNAL
    if not path.is_file():
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:  # JSON and Unicode errors are ValueErrors
        raise InputError(
            f"{path} is unreadable ({error}); give ", Argument("overwrite", True), " to start again"
        ) from None
    if not isinstance(journal, dict) or not isinstance(journal.get("done"), list):
        raise InputError(
            f"{path} is not a thinct journal; give ", Argument("overwrite", True), " to start again"
        )
    return journal


def _earlier_progress(target: Path, settings: dict[str, Any], overwrite: bool) -> frozenset[str]:
    """The cases an interrupted conversion into ``target`` finished; refuses a complete target
    (without ``overwrite``), a foreign folder, and one begun with another recipe or source."""
    if not target.exists() or overwrite:
        return frozenset()
    if (target / DATASET_JSON).exists():
        raise UsageError(
            f"{target} is a complete dataset; give ",
            Argument("overwrite", True),
            " to convert it again",
        )
    journal = _read_journal(target)
    if journal is None:
        if any(target.iterdir()):
            raise UsageError(
                f"{target} exists and holds no thinct conversion to continue; give another "
                "target or ",
                Argument("overwrite", True),
            )
        return frozenset()
    if journal.get("settings") != settings:
        raise UsageError(
            f"{target} was begun with other settings ({_describe(journal.get('settings'))}); "
            "give the same options to continue, or ",
            Argument("overwrite", True),
            " to start again",
        )
    return frozenset(str(key) for key in journal["done"])


def _describe(settings: Any) -> str:
    if not isinstance(settings, dict):
        return "unknown"
    keys = ("method", "model", "spacing", "factor", "align")
    described = [f"{key} {settings[key]}" for key in keys if key in settings]
    source = settings.get("source")
    if isinstance(source, dict) and "dataset" in source:
        described.append(f"from {source['dataset']}")
    return ", ".join(described)


def plan_conversion(
    source: str, target: str, recipe: Recipe, overwrite: bool = False
) -> Conversion:
    """Check everything a conversion needs before any case is converted: the datasets, every
    case's files and grids (headers only), the thin grid of each, and earlier progress."""
    dataset = read_dataset(dataset_folder(source))
    folder = target_folder(target)
    number = _check_target_name(folder, dataset)
    _check_target_place(folder, number, dataset)
    if not any(dataset.ct_channels):
        raise InputError(
            f"{dataset.folder / DATASET_JSON} names no CT channel (channel_names "
            f"{dataset.meta['channel_names']}); thinct converts CT datasets"
        )
    cases = find_cases(dataset)
    for case in cases:
        try:
            recipe.thin(case_grid(case))
        except ThinctError as error:
            raise type(error)(_about(case, str(error))) from None
    conversion = Conversion(dataset, folder, tuple(cases), recipe, overwrite)
    return replace(conversion, done=_earlier_progress(folder, conversion.settings(), overwrite))


def _about(case: DatasetCase, message: str) -> str:
    """A message that names its case (errors about one file name that file already)."""
    return message if case.name in message else f"{case.key}: {message}"


def _write_journal(conversion: Conversion, done: set[str]) -> None:
    journal = {"settings": conversion.settings(), "done": sorted(done)}
    write_text(conversion.target / JOURNAL, json.dumps(journal, indent=2) + "\n")


def _check_label_values(image: sitk.Image, path: Path) -> None:
    """Labels are written int16; refuse values that int16 would change."""
    values = sitk.GetArrayViewFromImage(image)
    low, high = float(values.min()), float(values.max())
    whole = not np.issubdtype(values.dtype, np.floating) or all(
        np.array_equal(plane, np.rint(plane)) for plane in values
    )
    if not whole or low < _LABEL_RANGE.min or high > _LABEL_RANGE.max:
        raise InputError(
            f"{path}: label values must be whole numbers from {_LABEL_RANGE.min} to "
            f"{_LABEL_RANGE.max} (found {low:g} to {high:g})"
        )


def _thin_channel(
    volume: Volume,
    thin: ThinGrid,
    is_ct: bool,
    recipe: Recipe,
    model: nn.Module | None,
    options: InferenceOptions | None,
    progress: Progress | None,
) -> Volume:
    if not is_ct:
        return interpolate(volume, thin, NON_CT_METHOD, progress)
    if model is None:
        return interpolate(volume, thin, str(recipe.method), progress)
    from thinct.inference.engine import upsample_with_model

    return upsample_with_model(volume, thin, model, options, progress)


def _check_runner(recipe: Recipe, model: nn.Module | None) -> None:
    """A model recipe needs the loaded model, a method recipe none (a library mistake that
    would otherwise convert with something other than what the provenance records)."""
    if (model is None) == (recipe.method is None):
        raise UsageError("a conversion runs the recipe's model or its method; give exactly one")


def convert_case(
    conversion: Conversion,
    case: DatasetCase,
    model: nn.Module | None = None,
    options: InferenceOptions | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """Write one case's thin files (channels, then the label); returns its warnings.

    Channels are read one at a time, so a case needs the memory of one channel and its thin
    version; every output is replaced whole (it may be left from an interrupted run).
    """
    _check_runner(conversion.recipe, model)
    outputs = case.outputs(conversion.target, conversion.source.file_ending)
    thin = conversion.recipe.thin(header_grid(case.images[0]))
    warnings: list[str] = []
    for channel, (path, is_ct) in enumerate(
        zip(case.images, conversion.source.ct_channels, strict=True)
    ):
        volume = read_volume(path)
        if is_ct:
            # CT is written as int16: a channel that does not fit is refused before the work;
            # one that does may still overshoot by interpolation next to its padding (clipped).
            check_fits_int16(volume.image, path)
        message = hounsfield_warning(volume.image) if is_ct else None
        if message:
            warnings.append(f"{path}: {message}")
        step = _step_progress(progress, channel, len(outputs))
        result = _thin_channel(volume, thin, is_ct, conversion.recipe, model, options, step)
        dtype = "int16" if is_ct else "float32"
        write_volume(result, outputs[channel], overwrite=True, dtype=dtype, clip=is_ct)
    if case.label is not None:
        label = read_volume(case.label)
        _check_label_values(label.image, case.label)
        write_volume(
            label.with_image(resample_labels(label.image, thin.grid)), outputs[-1], overwrite=True
        )
    if progress is not None:
        progress(1.0)
    return warnings


def _step_progress(progress: Progress | None, step: int, steps: int) -> Progress | None:
    if progress is None:
        return None
    return lambda fraction: progress((step + fraction) / steps)


@dataclass(frozen=True)
class CaseResult:
    case: DatasetCase
    status: str  # "done" or "failed"
    message: str = ""
    warnings: tuple[str, ...] = ()


def _output_json(conversion: Conversion) -> str:
    """The source's dataset.json plus thinct's provenance; ASCII only, because nnU-Net reads
    it in the locale's encoding."""
    meta = {**conversion.source.meta, PROVENANCE_KEY: conversion.provenance()}
    return json.dumps(meta, indent=4) + "\n"


def run_conversion(
    conversion: Conversion,
    model: nn.Module | None = None,
    options: InferenceOptions | None = None,
    progress: Progress | None = None,
    report: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Convert every pending case (a failed one does not stop the rest), then write
    ``dataset.json`` if none failed. ``progress`` gets the fraction of pending cases done."""
    _check_runner(conversion.recipe, model)
    pending = conversion.pending()
    done = {case.key for case in conversion.cases if conversion.finished(case)}
    if conversion.overwrite:
        _unlink(conversion.target / DATASET_JSON)
    _write_journal(conversion, done)
    results = []
    for index, case in enumerate(pending):
        step = _step_progress(progress, index, len(pending))
        try:
            warnings = convert_case(conversion, case, model, options, step)
        except ThinctError as error:
            result = CaseResult(case, "failed", _about(case, str(error)))
        except MemoryError as error:
            result = CaseResult(case, "failed", _about(case, out_of_memory(error)))
        else:
            done.add(case.key)
            _write_journal(conversion, done)
            result = CaseResult(case, "done", warnings=tuple(warnings))
        results.append(result)
        if report is not None:
            report(result)
    if all(result.status == "done" for result in results):
        write_text(conversion.target / DATASET_JSON, _output_json(conversion))
    return results


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"cannot remove {path} ({error.strerror or error})") from None
