"""nnU-Net v2 raw datasets as thinct reads them: the dataset folder and its ``dataset.json``,
its cases (channel files and labels), and the grid of each case.

Both directions share this: a conversion reads the thick dataset and writes a thin one with the
same layout, and a restoration finds the thick scan behind each prediction. Everything here is
checked from file names and headers only, so a whole dataset is refused or accepted before the
first voxel is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from thinct.errors import GeometryError, InputError, UsageError
from thinct.geometry import Grid, grid_difference
from thinct.io import Format, output_format
from thinct.io.jsonfile import read_json
from thinct.io.native import first_reason, native_stderr_captured

DATASET_JSON = "dataset.json"
PROVENANCE_KEY = "thinct"
RAW_VARIABLE = "nnUNet_raw"
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")

_DATASET_NAME = re.compile(r"Dataset(\d{3})_([A-Za-z0-9_-]+)")
_CHANNEL_FILE = re.compile(r"(.+)_(\d{4})")


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
        """The id in the folder's name (`dataset_id`)."""
        return dataset_id(self.folder.name)


def dataset_id(name: str) -> int | None:
    """The 3-digit id of a folder name ``DatasetNNN_Name``; None for other names."""
    match = _DATASET_NAME.fullmatch(name)
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


@dataclass(frozen=True)
class DatasetCase:
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


def volume_files(folder: Path, ending: str) -> list[Path]:
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
    for path in volume_files(folder, ending):
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


def _split_cases(dataset: Dataset, split: str) -> list[DatasetCase]:
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
        cases.append(DatasetCase(split, name, images, label if label.is_file() else None))
    _check_stray_labels(labels_folder, ending, set(found))
    return cases


def _check_stray_labels(folder: Path, ending: str, names: set[str]) -> None:
    """A label without images has no grid to be resampled onto."""
    if not folder.is_dir():
        return
    for path in volume_files(folder, ending):
        if path.name[: -len(ending)] not in names:
            raise InputError(f"{path} has no images (no {path.name[: -len(ending)]}_0000{ending})")


def find_cases(dataset: Dataset) -> list[DatasetCase]:
    """Every training and test case, checked for complete channels and training labels."""
    cases = _split_cases(dataset, "Tr") + _split_cases(dataset, "Ts")
    training = sum(case.split == "Tr" for case in cases)
    if training != dataset.meta["numTraining"]:
        raise InputError(
            f"{dataset.folder / DATASET_JSON} says numTraining {dataset.meta['numTraining']}, "
            f"but imagesTr holds {training} case(s)"
        )
    return cases


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
    return Grid.of(reader)


def case_grid(case: DatasetCase) -> Grid:
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
