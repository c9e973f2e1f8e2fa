"""Turn the ``data`` section of a training config into pairs and validation cases.

A source path is a scan file, a DICOM series folder, a folder of scan files, or (with a
``layout``) a paired dataset folder. Scans are read once; every requested axis and slice
profile of a scan becomes its own `Pair` (each with its own copy of the stacks).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from thinct.data.cases import Case, simulated_case
from thinct.data.pairs import Pair, simulated_pairs, slice_range
from thinct.errors import UsageError
from thinct.geometry import slice_axis
from thinct.io import read_volume, volume_suffix
from thinct.io.dicom import is_dicom_folder
from thinct.train.config import DataSection, Source
from thinct.volume import Volume


def scan_paths(path: Path) -> list[Path]:
    """The scans a source path names: itself, or the scan files / series folders inside."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_file() or is_dicom_folder(path):
        return [path]
    found = sorted(
        p
        for p in path.iterdir()
        if (p.is_file() and volume_suffix(p)) or (p.is_dir() and is_dicom_folder(p))
    )
    if not found:
        raise UsageError(f"{path}: holds no scans")
    return found


def _scans(data: DataSection, source: Source) -> Iterator[tuple[str, Volume]]:
    for path in scan_paths(data.resolve(source)):
        volume = read_volume(path)
        name = path.name
        if source.slices != (0.0, 1.0):
            volume = slice_range(volume, *source.slices)
            name = f"{name}[{source.slices[0]:g}:{source.slices[1]:g}]"
        yield name, volume


def training_pairs(data: DataSection, ratio: int) -> list[Pair]:
    """Every training pair the config asks for, in the order of its sources."""
    pairs: list[Pair] = []
    for source in data.train:
        if source.layout is not None:
            from thinct.data.layouts import layout_pairs

            pairs.extend(layout_pairs(source.layout, data.resolve(source), source.split, ratio))
            continue
        for name, volume in _scans(data, source):
            slices = slice_axis(volume.image.GetSpacing())
            in_plane = [a for a in (0, 1, 2) if a != slices]
            profiles = [(d.profile, d.fwhm) for d in data.degradations]
            for axis_name in source.axes:
                axis = slices if axis_name == "z" else in_plane["xy".index(axis_name)]
                pairs.extend(
                    simulated_pairs(
                        volume,
                        ratio=ratio,
                        spacing=data.spacing,
                        profiles=profiles,
                        phases=data.phases,
                        axis=axis,
                        name=name,
                    )
                )
    return pairs


def validation_cases(data: DataSection, ratio: int) -> list[Case]:
    """Whole held-out scans to validate on, thick slices simulated with the first profile."""
    cases: list[Case] = []
    first = data.degradations[0]
    for source in data.validation:
        if source.layout is not None:
            from thinct.data.layouts import layout_cases

            cases.extend(layout_cases(source.layout, data.resolve(source), source.split))
            continue
        for name, volume in _scans(data, source):
            cases.append(
                simulated_case(volume, name, ratio, data.spacing, first.profile, first.fwhm)
            )
    return cases
