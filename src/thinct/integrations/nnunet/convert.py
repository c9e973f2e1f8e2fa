"""nnU-Net v2 raw datasets: a thick-slice dataset into a thin-slice one, and predictions made on
the thin slices back onto the thick scans.

Segmentation models trained on thin CT see thick scans as a different kind of image. Converting
a whole raw dataset (``imagesTr``, ``imagesTs``, ``labelsTr``, ``labelsTs``, ``dataset.json``)
lets nnU-Net plan, train and predict on synthetic thin slices; `restore_predictions` then brings
each prediction back onto the thick scan it belongs to, where the radiologist reads it.

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
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from thinct._version import __version__
from thinct.batch.jobs import Job, Outcome, run_jobs
from thinct.errors import GeometryError, InputError, OutputError, ThinctError, UsageError
from thinct.geometry import Grid, ThinGrid, grid_difference, thin_grid
from thinct.inference.options import InferenceOptions
from thinct.io import Format, hounsfield_warning, output_format, read_volume, write_volume
from thinct.io.atomic import write_text
from thinct.io.jsonfile import read_json
from thinct.io.native import first_reason, native_stderr_captured
from thinct.reporting import out_of_memory
from thinct.resample.interpolation import interpolate, resample_labels
from thinct.resample.thicken import thicken
from thinct.volume import Volume

if TYPE_CHECKING:  # torch loads only when a model runs
    from torch import nn

DATASET_JSON = "dataset.json"
JOURNAL = ".thinct-convert.json"
PROVENANCE_KEY = "thinct"
RAW_VARIABLE = "nnUNet_raw"
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
NON_CT_METHOD = "bspline"
LABEL_METHOD = "nearest"

_DATASET_NAME = re.compile(r"Dataset(\d{3})_([A-Za-z0-9_-]+)")
_CHANNEL_FILE = re.compile(r"(.+)_(\d{4})")
_LABEL_RANGE = np.iinfo(np.int16)

Progress = Callable[[float], None]


# --- datasets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """An nnU-Net v2 raw dataset folder and its ``dataset.json``."""

    folder: Path
    meta: dict[str, Any]

    @property
    def file_ending(self) -> str:
        return self.meta["file_ending"]

    @property
    def channels(self) -> list[str]:
        """Channel names in channel order (``_0000`` first)."""
        names = self.meta["channel_names"]
        return [str(names[str(index)]) for index in range(len(names))]

    @property
    def ct_channels(self) -> list[bool]:
        return [name.strip().lower() == "ct" for name in self.channels]

    @property
    def id(self) -> int | None:
        """The 3-digit id of a folder named ``DatasetNNN_Name``; None for other names."""
        match = _DATASET_NAME.fullmatch(self.folder.name)
        return int(match.group(1)) if match else None


def _raw_folder() -> Path | None:
    value = os.environ.get(RAW_VARIABLE)
    return Path(value) if value else None


def _is_bare_name(argument: str) -> bool:
    return argument not in ("", ".", "..") and Path(argument).name == argument


def dataset_folder(argument: str) -> Path:
    """An existing dataset: a path, or else a dataset name in ``$nnUNet_raw`` (as nnU-Net's
    own commands name datasets)."""
    path = Path(argument)
    if path.exists():
        return path
    raw = _raw_folder()
    if _is_bare_name(argument) and raw is not None and (raw / argument).exists():
        return raw / argument
    where = (
        f"nor a dataset in ${RAW_VARIABLE} ({raw})" if raw else f"and ${RAW_VARIABLE} is not set"
    )
    raise UsageError(f"{argument}: no such dataset (not a folder, {where})")


def target_folder(argument: str) -> Path:
    """Where a converted dataset goes: a path, or a bare dataset name inside ``$nnUNet_raw``.

    A bare name with no ``$nnUNet_raw`` is refused rather than written into the working
    folder: nnU-Net would not find it there.
    """
    path = Path(argument)
    if path.exists() or not _is_bare_name(argument):
        return path
    raw = _raw_folder()
    if raw is None:
        raise UsageError(
            f"{argument}: ${RAW_VARIABLE} is not set; set it, or give a path such as ./{argument}"
        )
    return raw / argument


def read_dataset(folder: Path) -> Dataset:
    """The dataset in ``folder``, its ``dataset.json`` checked for what a conversion needs."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give an nnU-Net raw dataset folder")
    path = folder / DATASET_JSON
    if not path.is_file():
        raise UsageError(f"{folder} is not an nnU-Net dataset: it has no {DATASET_JSON}")
    meta = read_json(path)
    _check_meta(meta, path)
    return Dataset(folder, meta)


def _check_meta(meta: Any, path: Path) -> None:
    if not isinstance(meta, dict):
        raise InputError(f"{path} does not hold an nnU-Net dataset description")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)} (nnU-Net v2 needs all of them)")
    if "dataset" in meta:
        raise InputError(
            f"{path} lists its files under 'dataset'; thinct converts the imagesTr/labelsTr "
            "layout only"
        )
    names = meta["channel_names"]
    if not isinstance(names, dict) or sorted(names) != [str(i) for i in range(len(names))]:
        raise InputError(f"{path}: channel_names must map '0', '1', ... to channel names")
    if not names:
        raise InputError(f"{path}: channel_names is empty")
    if not isinstance(meta["numTraining"], int):
        raise InputError(f"{path}: numTraining must be a whole number")
    _check_file_ending(meta["file_ending"], path)


def _check_file_ending(ending: Any, path: Path) -> None:
    """Only 3D formats that thinct both reads and writes can be converted."""
    problem = not isinstance(ending, str) or not ending.startswith(".")
    if not problem:
        try:
            problem = output_format(Path(f"case{ending}")) is Format.DICOM
        except UsageError:
            problem = True
    if problem:
        raise InputError(
            f"{path}: file_ending {ending!r} is not a 3D volume format thinct writes (2D "
            "datasets and TIFF stacks cannot be converted; .nii.gz, .nii, .nrrd, .mha can)"
        )


# --- cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One case of a split: its channel files in channel order, and its label if any."""

    split: str  # "Tr" or "Ts"
    name: str
    images: tuple[Path, ...]
    label: Path | None

    @property
    def key(self) -> str:
        return f"images{self.split}/{self.name}"

    def outputs(self, folder: Path, ending: str) -> list[Path]:
        """The files the case becomes in the dataset ``folder``, channels first."""
        images = [
            folder / f"images{self.split}" / f"{self.name}_{channel:04d}{ending}"
            for channel in range(len(self.images))
        ]
        if self.label is None:
            return images
        return [*images, folder / f"labels{self.split}" / f"{self.name}{ending}"]


def _volume_files(folder: Path, ending: str) -> list[Path]:
    """What nnU-Net takes from a folder: files with the dataset's ending (hidden ones, such as
    macOS's ``._`` files or thinct's staging files, left out)."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.name.endswith(ending) and not path.name.startswith(".")
    )


def _channel_files(folder: Path, ending: str, channels: int) -> dict[str, dict[int, Path]]:
    """Files of an images folder, by case and channel, each name checked against the layout."""
    cases: dict[str, dict[int, Path]] = {}
    for path in _volume_files(folder, ending):
        match = _CHANNEL_FILE.fullmatch(path.name[: -len(ending)])
        if match is None:
            raise InputError(
                f"{path}: no channel suffix; nnU-Net names images CASE_0000{ending}, "
                f"CASE_0001{ending}, ..."
            )
        channel = int(match.group(2))
        if channel >= channels:
            raise InputError(
                f"{path}: channel {channel} but {DATASET_JSON} names {channels} channel(s)"
            )
        cases.setdefault(match.group(1), {})[channel] = path
    return cases


def _split_cases(dataset: Dataset, split: str) -> list[Case]:
    images_folder = dataset.folder / f"images{split}"
    labels_folder = dataset.folder / f"labels{split}"
    if not images_folder.is_dir():
        if split == "Tr":
            raise InputError(f"{dataset.folder} has no imagesTr folder")
        return []
    ending, channels = dataset.file_ending, len(dataset.channels)
    found = _channel_files(images_folder, ending, channels)
    cases = []
    for name, files in sorted(found.items()):
        missing = [c for c in range(channels) if c not in files]
        if missing:
            raise InputError(
                f"{images_folder / f'{name}_{missing[0]:04d}{ending}'} is missing "
                f"({DATASET_JSON} names {channels} channel(s))"
            )
        label = labels_folder / f"{name}{ending}"
        if split == "Tr" and not label.is_file():
            raise InputError(f"{label} is missing: every training case needs its label")
        images = tuple(files[c] for c in range(channels))
        cases.append(Case(split, name, images, label if label.is_file() else None))
    _check_stray_labels(labels_folder, ending, set(found))
    return cases


def _check_stray_labels(folder: Path, ending: str, names: set[str]) -> None:
    """A label without images has no grid to be resampled onto."""
    if not folder.is_dir():
        return
    for path in _volume_files(folder, ending):
        if path.name[: -len(ending)] not in names:
            raise InputError(f"{path} has no images (no {path.name[: -len(ending)]}_0000{ending})")


def find_cases(dataset: Dataset) -> list[Case]:
    """Every training and test case, checked for complete channels and training labels."""
    cases = _split_cases(dataset, "Tr") + _split_cases(dataset, "Ts")
    training = sum(case.split == "Tr" for case in cases)
    if training != dataset.meta["numTraining"]:
        raise InputError(
            f"{dataset.folder / DATASET_JSON} says numTraining {dataset.meta['numTraining']}, "
            f"but imagesTr holds {training} case(s)"
        )
    return cases


# --- grids --------------------------------------------------------------------------------


def header_grid(path: Path) -> Grid:
    """The grid of a volume file from its header alone (cheap: a whole dataset is checked
    before the first case is converted). Refuses 2D images and single slices."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with native_stderr_captured() as native:
        try:
            reader.ReadImageInformation()
            failure = None
        except RuntimeError as error:
            failure = first_reason(native.text) if native.text.strip() else first_reason(str(error))
    if failure is not None:
        raise InputError(f"{path}: cannot read ({failure})")
    size = reader.GetSize()
    if reader.GetDimension() != 3:
        raise InputError(f"{path}: a {reader.GetDimension()}D image; thinct converts 3D datasets")
    if min(size) < 2:
        raise InputError(
            f"{path}: a single slice (size {tuple(size)}), as in 2D datasets; thinct converts "
            "3D datasets"
        )
    return Grid(
        size=tuple(int(v) for v in size),
        spacing=tuple(float(v) for v in reader.GetSpacing()),
        origin=tuple(float(v) for v in reader.GetOrigin()),
        direction=tuple(float(v) for v in reader.GetDirection()),
    )


def case_grid(case: Case) -> Grid:
    """The one grid that every channel and the label of a case share (refused otherwise: the
    thin grid of one would not fit the others)."""
    files = [*case.images, *([case.label] if case.label is not None else [])]
    first = header_grid(files[0])
    for path in files[1:]:
        difference = grid_difference(first, header_grid(path))
        if difference is not None:
            raise GeometryError(
                f"{path}: its {difference} differs from {files[0].name}'s; every channel and "
                "label of a case must share one grid"
            )
    return first


# --- converting ---------------------------------------------------------------------------


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
    cases: tuple[Case, ...]
    recipe: Recipe
    overwrite: bool = False
    done: frozenset[str] = field(default_factory=frozenset)

    def settings(self) -> dict[str, Any]:
        source = {"dataset": self.source.folder.name, "path": str(self.source.folder.resolve())}
        return {"source": source} | self.recipe.settings()

    def provenance(self) -> dict[str, Any]:
        return {"version": __version__} | self.settings()

    def finished(self, case: Case) -> bool:
        """Finished by an earlier run: journalled, and every file still there."""
        outputs = case.outputs(self.target, self.source.file_ending)
        return case.key in self.done and all(path.is_file() for path in outputs)

    def pending(self) -> list[Case]:
        return [case for case in self.cases if not self.finished(case)]


def _check_target_name(target: Path, source: Dataset) -> int:
    match = _DATASET_NAME.fullmatch(target.name)
    if match is None:
        raise UsageError(
            f"{target.name}: nnU-Net dataset names are DatasetNNN_Name (3-digit id; letters, "
            "digits, _ and - in the name), e.g. Dataset502_LungThin"
        )
    number = int(match.group(1))
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
            f"{path} is unreadable ({error}); give --overwrite to start again"
        ) from None
    if not isinstance(journal, dict) or not isinstance(journal.get("done"), list):
        raise InputError(f"{path} is not a thinct journal; give --overwrite to start again")
    return journal


def _earlier_progress(target: Path, settings: dict[str, Any], overwrite: bool) -> frozenset[str]:
    """The cases an interrupted conversion into ``target`` finished; refuses a complete target
    (without ``overwrite``), a foreign folder, and one begun with another recipe or source."""
    if not target.exists() or overwrite:
        return frozenset()
    if (target / DATASET_JSON).exists():
        raise UsageError(f"{target} is a complete dataset; give --overwrite to convert it again")
    journal = _read_journal(target)
    if journal is None:
        if any(target.iterdir()):
            raise UsageError(
                f"{target} exists and holds no thinct conversion to continue; give another "
                "target or --overwrite"
            )
        return frozenset()
    if journal.get("settings") != settings:
        raise UsageError(
            f"{target} was begun with other settings ({_describe(journal.get('settings'))}); "
            "give the same options to continue, or --overwrite to start again"
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


def _about(case: Case, message: str) -> str:
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
    case: Case,
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
        message = hounsfield_warning(volume.image) if is_ct else None
        if message:
            warnings.append(f"{path}: {message}")
        step = _step_progress(progress, channel, len(outputs))
        result = _thin_channel(volume, thin, is_ct, conversion.recipe, model, options, step)
        dtype = "int16" if is_ct else "float32"
        write_volume(result, outputs[channel], overwrite=True, dtype=dtype)
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
    case: Case
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


# --- restoring ----------------------------------------------------------------------------


def thick_dataset(argument: str) -> Dataset:
    """The thick dataset behind ``argument``: itself, or the source a thinct conversion
    recorded (its path, or else its name in ``$nnUNet_raw``)."""
    dataset = read_dataset(dataset_folder(argument))
    provenance = dataset.meta.get(PROVENANCE_KEY)
    if not isinstance(provenance, dict):
        return dataset
    source = provenance.get("source") or {}
    for candidate in (source.get("path"), source.get("dataset")):
        if not isinstance(candidate, str) or not candidate:
            continue
        try:
            return read_dataset(dataset_folder(candidate))
        except UsageError:
            continue
    raise UsageError(
        f"{dataset.folder} was converted from {source.get('dataset')} ({source.get('path')}), "
        "which is not there any more; give the thick dataset with --dataset"
    )


@dataclass(frozen=True)
class Restoration:
    """Predictions on thin grids, each to be written onto its thick scan's grid."""

    jobs: list[Job]
    thick: Dataset


def plan_restore(predictions: Path, out: Path, dataset: str) -> Restoration:
    """One job per prediction ``CASE{file_ending}`` (nnU-Net's other outputs, its json files and
    probabilities, are left out), each checked to have a thick scan before any is read."""
    if not predictions.is_dir():
        raise UsageError(f"{predictions}: no such folder of predictions")
    thick = thick_dataset(dataset)
    ending = thick.file_ending
    files = _volume_files(predictions, ending)
    if not files:
        raise UsageError(f"{predictions}: no predictions (*{ending})")
    here, there = predictions.resolve(), out.resolve()
    if here == there or there.is_relative_to(here):
        raise UsageError(f"{out} is inside {predictions}; give an output folder outside it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder for the restored segmentations")
    for path in files:
        thick_reference(thick, path.name[: -len(ending)])
    return Restoration([Job(path, out / path.name) for path in files], thick)


def thick_reference(thick: Dataset, case: str) -> Path:
    """The thick scan a prediction of ``case`` was made from: its first channel, in imagesTs
    or else imagesTr."""
    name = f"{case}_0000{thick.file_ending}"
    for split in ("Ts", "Tr"):
        path = thick.folder / f"images{split}" / name
        if path.is_file():
            return path
    raise UsageError(f"{case}: {thick.folder} has no imagesTs/{name} nor imagesTr/{name}")


def restore_case(job: Job, thick: Dataset, overwrite: bool = False) -> None:
    """One thin prediction onto its thick scan's grid: a majority vote per thick slab."""
    case = job.source.name[: -len(thick.file_ending)]
    grid = header_grid(thick_reference(thick, case))
    prediction = read_volume(job.source)
    image = thicken(prediction.image, grid, labels=True)
    write_volume(prediction.with_image(image), job.target, overwrite=overwrite)


def restore_predictions(
    restoration: Restoration,
    overwrite: bool = False,
    report: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Restore every prediction; existing outputs are skipped unless ``overwrite``, and a
    failure does not stop the rest."""

    def process(job: Job) -> None:
        restore_case(job, restoration.thick, overwrite)

    return run_jobs(restoration.jobs, process, overwrite, report or (lambda outcome: None))
