"""The jobs behind the CLI commands, file in and file out: read, process, write atomically.

Shared by `thinct upsample`, `thinct simulate` and the napari plugin's batch panel, so every
front end gets the same checks: the output never replaces the input, intensities that are not
HU raise a `ThinctWarning`, and nothing is written unless processing succeeded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from thinct._version import __version__
from thinct.errors import (
    Argument,
    OutputError,
    ThinctError,
    ThinctWarning,
    UsageError,
)
from thinct.geometry import Grid, thin_grid
from thinct.inference.options import CancelCallback, InferenceOptions
from thinct.io import hounsfield_warning, output_request, read_volume, write_volume
from thinct.resample.consistency import check_consistency, enforce_consistency
from thinct.resample.interpolation import ProgressCallback, interpolate
from thinct.resample.simulate import simulate_thick
from thinct.volume import Volume

if TYPE_CHECKING:  # torch loads only when a model runs: commands without one start fast
    from torch import nn


def same_path(first: Path, second: Path) -> bool:
    """True when two paths name the same file or folder (links and relative paths resolved)."""
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def check_output_path(source: Path, target: Path) -> None:
    """Refuse an output that would replace the input, whatever --overwrite says.

    That includes a folder that holds the input (an existing DICOM output folder given again
    as the output): replacing the folder would delete the input with it.
    """
    if same_path(source, target):
        raise UsageError(f"{target} is the input; thinct never overwrites its input")
    if source.resolve().is_relative_to(target.resolve()):
        raise UsageError(f"{target} holds the input {source}; thinct never overwrites its input")


def check_target(target: Path, dtype: str = "int16") -> None:
    """Refuse an output that could never be written before the input is read and processed.

    Reading and interpolating a full scan takes a while; a typo in the output's extension, a
    path through a regular file or a folder the user may not write in should fail at once, with
    a message that says what is wrong (creating the folder would only report "File exists").
    """
    output_request(target, dtype)
    for folder in target.parents:  # nearest first; the first that exists decides
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"cannot write {target}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(f"cannot write {target}: no permission to write in {folder}")
            return


def upsample_volume(
    volume: Volume,
    method: str = "bspline",
    spacing: float | None = None,
    factor: int | None = None,
    align: str = "edges",
    progress: ProgressCallback | None = None,
    model: nn.Module | None = None,
    options: InferenceOptions | None = None,
    cancel: CancelCallback | None = None,
    consistency: str = "none",
) -> Volume:
    """Thin-slice version of a thick volume on the grid given by spacing/factor and alignment.

    With a ``model`` the sliding-window engine predicts the thin slices (``method`` is then
    unused); otherwise the classical interpolation ``method`` does. Either way ``cancel`` is
    polled as the work goes on and stops it with `thinct.errors.Cancelled`.
    ``consistency`` (``boxcar`` or ``gaussian``, the thick scan's slice profile) then corrects
    the thin slices so that they average back to the thick ones (`thinct.resample.consistency`).
    """
    check_consistency(consistency)
    thin = thin_grid(Grid.of(volume.image), spacing=spacing, factor=factor, align=align)
    if model is not None:
        from thinct.inference.engine import upsample_with_model

        result = upsample_with_model(volume, thin, model, options, progress, cancel)
    else:
        result = interpolate(volume, thin, method=method, progress=progress, cancel=cancel)
    if consistency == "none":
        return result
    return enforce_consistency(result, volume, thin, profile=consistency)


def _read_checked(source: Path, series_uid: str | None) -> Volume:
    volume = read_volume(source, series_uid=series_uid)
    message = hounsfield_warning(volume.image)
    if message:
        warnings.warn(f"{source}: {message}", ThinctWarning, stacklevel=3)
    return volume


def _run(
    source: Path,
    target: Path,
    process: Callable[[Volume], Volume],
    description: str,
    overwrite: bool,
    dtype: str,
    series_uid: str | None,
) -> None:
    check_output_path(source, target)
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists; use ", Argument("overwrite", True), " to replace it")
    check_target(target, dtype)
    volume = _read_checked(source, series_uid)
    try:
        result = process(volume)
    except ThinctError as error:
        raise type(error)(f"{source}: {error}") from None
    write_volume(result, target, overwrite=overwrite, dtype=dtype, description=description)


def upsample_file(
    source: Path,
    target: Path,
    *,
    method: str = "bspline",
    spacing: float | None = None,
    factor: int | None = None,
    align: str = "edges",
    overwrite: bool = False,
    dtype: str = "int16",
    series_uid: str | None = None,
    progress: ProgressCallback | None = None,
    model: nn.Module | None = None,
    model_name: str | None = None,
    options: InferenceOptions | None = None,
    cancel: CancelCallback | None = None,
    consistency: str = "none",
) -> None:
    """Read a thick scan, make its thin-slice version and write it.

    ``model_name`` names the model in the output's description (the DICOM series and
    derivation descriptions) so that a reader can tell which method made the slices.
    """

    def process(volume: Volume) -> Volume:
        return upsample_volume(
            volume, method, spacing, factor, align, progress, model, options, cancel, consistency
        )

    made_by = method if model is None else f"model {model_name or model.config.architecture}"
    if consistency != "none":
        made_by += f", {consistency} consistency"
    description = f"SYNTHETIC thin slices, thinct {__version__} {made_by} ({align})"
    _run(source, target, process, description, overwrite, dtype, series_uid)


def simulate_file(
    source: Path,
    target: Path,
    *,
    thickness: float = 5.0,
    increment: float | None = None,
    profile: str = "boxcar",
    fwhm: float | None = None,
    overwrite: bool = False,
    dtype: str = "int16",
    series_uid: str | None = None,
) -> None:
    """Read a thin scan, simulate its thick-slice reconstruction and write it."""

    def process(volume: Volume) -> Volume:
        return simulate_thick(volume, thickness, increment, profile, fwhm)

    description = f"SIMULATED {thickness:g} mm {profile} slices, thinct {__version__}"
    _run(source, target, process, description, overwrite, dtype, series_uid)
