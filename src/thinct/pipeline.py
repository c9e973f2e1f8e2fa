"""The jobs behind the CLI commands, file in and file out: read, process, write atomically.

Shared by `thinct upsample`, `thinct simulate` and the napari plugin's batch panel, so every
front end gets the same checks: the output never replaces the input, intensities that are not
HU raise a `ThinctWarning`, and nothing is written unless processing succeeded.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import SimpleITK as sitk

from thinct._version import __version__
from thinct.errors import (
    Argument,
    OutputError,
    ThinctError,
    ThinctWarning,
    UsageError,
)
from thinct.geometry import Grid, ThinGrid, asks_in_plane, slice_axis, thin_grid
from thinct.inference.options import CancelCallback, InferenceOptions
from thinct.io import dicom, hounsfield_warning, output_request, read_volume, write_volume
from thinct.io.formats import Format, output_format
from thinct.io.writing import check_fits_int16
from thinct.resample.consistency import check_consistency, enforce_consistency
from thinct.resample.interpolation import ProgressCallback, interpolate, refine_in_plane
from thinct.resample.simulate import simulate_thick
from thinct.volume import Volume

if TYPE_CHECKING:  # torch loads only when a model runs: commands without one start fast
    from torch import nn

# Slices closer than this are thin: a model (made to fill in thick slices) warns on them.
THIN_SLICES_MM = 2.0
# While an output is made and written, about this many float32 copies of it are held at once:
# the result, its copy into the SimpleITK image, and the rounded copy that is written.
_PEAK_COPIES = 3


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


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_output_size(grid: Grid, memory: int | None = None) -> None:
    """Refuse, before any work, an output that cannot fit in ``memory`` bytes (default: this
    machine's memory) while it is made and written; warn when it would take over half of it.

    In-plane refinement multiplies the output by the square of its factor: x4 in-plane of
    1500 slices of 512 x 512 pixels is 2048 x 2048 x 1500 voxels, 25 GiB as float32.
    """
    memory = physical_memory() if memory is None else memory
    if memory is None:
        return
    need = math.prod(grid.size) * 4 * _PEAK_COPIES
    says = (
        f"the {' x '.join(map(str, grid.size))} output needs about {need / 2**30:.1f} GiB of "
        "memory while it is made and written"
    )
    if need > memory:
        raise UsageError(
            f"{says}, more than the {memory / 2**30:.1f} GiB of this machine; ask for fewer "
            "slices or pixels (",
            Argument("spacing"),
            ", ",
            Argument("in_plane"),
            ") or crop the scan",
        )
    if need > memory / 2:
        message = f"{says}, over half of the {memory / 2**30:.1f} GiB of this machine"
        warnings.warn(message, ThinctWarning, stacklevel=3)


def in_plane_method(method: str, model: nn.Module | None) -> str:
    """The interpolation that refines the pixels in-plane: ``method`` itself, or a cubic
    B-spline after a regression model, which predicts its slices on the input's pixels. A
    diffusion model makes the refined pixels itself (`_by_diffusion`) and skips this step."""
    return method if model is None else "bspline"


def _stage(progress: ProgressCallback | None, start: float, end: float) -> ProgressCallback | None:
    """A step's progress (0 to 1) as its share, from ``start`` to ``end``, of the whole job."""
    if progress is None:
        return None
    return lambda fraction: progress(start + (end - start) * fraction)


def refuse_model_with_kept_slices() -> NoReturn:
    """A factor of 1 (or the slices' own spacing) keeps the slices: a model would have
    nothing to predict, and the in-plane step is an interpolation's."""
    raise UsageError(
        "a factor of 1 keeps the slices, which leaves a model nothing to predict; refine the "
        "pixels alone with an interpolation (",
        Argument("method", "bspline"),
        ")",
    )


def _keep_slices(volume: Volume, model: nn.Module | None) -> Volume:
    """The input's own slices, for an in-plane refinement alone."""
    if model is not None:
        refuse_model_with_kept_slices()
    image = sitk.Cast(volume.image, sitk.sitkFloat32)
    return volume.with_image(image, slice_thickness=volume.slice_thickness)


def check_slab(slab: tuple[int, int] | None, count: int | None = None) -> None:
    """Refuse a slab (``start, stop``: thick slices ``start`` to ``stop - 1``, counted from 0)
    that holds fewer than 2 slices, or reaches past the ``count`` slices of the scan."""
    if slab is None:
        return
    start, stop = slab
    if start < 0 or stop - start < 2:
        raise UsageError(
            Argument("slab"),
            f" must be START:STOP with 0 <= START and at least 2 thick slices "
            f"(STOP - START >= 2), got {start}:{stop}",
        )
    if count is not None and stop > count:
        raise UsageError(
            Argument("slab"), f" {start}:{stop} reaches past the scan's {count} thick slices"
        )


def slab_of(volume: Volume, slab: tuple[int, int]) -> Volume:
    """Thick slices ``start`` to ``stop - 1`` of a scan, where they lie: a scan of their own
    (its first and last slices are its ends, for the methods that look past them)."""
    axis = slice_axis(volume.image.GetSpacing())
    check_slab(slab, volume.image.GetSize()[axis])
    index = [slice(None)] * 3
    index[axis] = slice(*slab)
    return volume.with_image(volume.image[tuple(index)], volume.slice_thickness)


def _by_diffusion(
    volume: Volume,
    thin: ThinGrid,
    model: nn.Module,
    options: InferenceOptions | None,
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
    notice: Callable[[str], None] | None,
    consistency: str,
) -> Volume:
    """A diffusion model's result: it makes the output grid itself, refined pixels included
    (`thinct.inference.planes`), so no interpolation refines them afterwards."""
    from thinct.inference.engine import upsample_with_model

    if consistency != "none" and thin.refined is not None:
        raise UsageError(
            Argument("consistency"),
            " works on the input's pixels; a diffusion model that "
            "refines them too makes them in the same pass, so ask for one or the other",
        )
    result = upsample_with_model(volume, thin, model, options, progress, cancel, notice)
    if consistency == "none":
        return result
    return enforce_consistency(result, volume, thin, profile=consistency)


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
    *,
    in_plane: int | None = None,
    in_plane_spacing: float | None = None,
    slab: tuple[int, int] | None = None,
    notice: Callable[[str], None] | None = None,
) -> Volume:
    """Thin-slice version of a thick volume on the grid given by spacing/factor and alignment.

    With a ``model`` the sliding-window engine predicts the thin slices (``method`` is then
    unused); otherwise the classical interpolation ``method`` does. Either way ``cancel`` is
    polled as the work goes on and stops it with `thinct.errors.Cancelled`.
    ``consistency`` (``boxcar`` or ``gaussian``, the thick scan's slice profile) then corrects
    the thin slices so that they average back to the thick ones (`thinct.resample.consistency`).
    ``in_plane`` (a factor) or ``in_plane_spacing`` (mm) refine the pixels of the result last
    (`in_plane_method`), over the same field of view; with one of them a factor of 1 keeps the
    slices. An output too large for the memory is refused first (`check_output_size`).
    ``slab`` (``start, stop``) takes only thick slices ``start`` to ``stop - 1`` (`slab_of`).
    A diffusion model makes the refined pixels itself (`_by_diffusion`); ``notice`` shows its
    estimate of a long CPU run at once (else it is a `ThinctWarning`).
    """
    check_consistency(consistency)
    if slab is not None:
        volume = slab_of(volume, slab)
    thin = thin_grid(Grid.of(volume.image), spacing, factor, align, in_plane, in_plane_spacing)
    check_output_size(thin.output)
    if model is not None and model.config.diffusion:
        return _by_diffusion(volume, thin, model, options, progress, cancel, notice, consistency)
    split = 1.0 if thin.refined is None else 0.5  # of the progress: slices, then pixels
    through = _stage(progress, 0.0, split)
    if thin.keeps_slices:
        result = _keep_slices(volume, model)
    elif model is not None:
        from thinct.inference.engine import upsample_with_model

        result = upsample_with_model(volume, thin, model, options, through, cancel)
    else:
        result = interpolate(volume, thin, method=method, progress=through, cancel=cancel)
    if consistency != "none":
        result = enforce_consistency(result, volume, thin, profile=consistency)
    if thin.refined is None:
        return result
    pixels = _stage(progress, split, 1.0)
    method = in_plane_method(method, model)
    return refine_in_plane(result, thin.refined, thin.axis, method, pixels, cancel)


def thin_input_warning(volume: Volume, name: Path | str) -> str | None:
    """A warning for a model about to run on slices that are thin already, else None.

    Models learn to fill in the slices of thick-slice CT (the shipped ones 5 mm slices): on
    slices closer than `THIN_SLICES_MM` they run outside what they learned, and a plain
    interpolation of such slices is already close to the truth.
    """
    spacing = volume.image.GetSpacing()[slice_axis(volume.image.GetSpacing())]
    if spacing >= THIN_SLICES_MM:
        return None
    return (
        f"{name}: the slices are {spacing:g} mm apart, thin already; models learn to fill in "
        f"thick slices ({THIN_SLICES_MM:g} mm or more apart), and on these an interpolation "
        f"({Argument('method', 'bspline')}) may well do better"
    )


def _say(message: str | None, notice: Callable[[str], None] | None) -> None:
    """A warning shown at once through ``notice`` (the command line's), else a ThinctWarning."""
    if message is None:
        return
    if notice is not None:
        notice(message)
    else:
        warnings.warn(message, ThinctWarning, stacklevel=3)


def check_patient_target(target: Path, patient_id: str | None, patient_name: str | None) -> None:
    """A patient ID or name is only written into DICOM: refuse one for another format rather
    than drop it silently."""
    if patient_id is None and patient_name is None:
        return
    dicom.check_patient(patient_id, patient_name)
    if output_format(target) is not Format.DICOM:
        given = Argument("patient_id") if patient_id is not None else Argument("patient_name")
        raise UsageError(given, f" names the patient of a DICOM output; {target} is not DICOM")


def _read_checked(source: Path, series_uid: str | None) -> Volume:
    volume = read_volume(source, series_uid=series_uid)
    message = hounsfield_warning(volume.image)
    if message:
        warnings.warn(f"{source}: {message}", ThinctWarning, stacklevel=3)
    return volume


def check_job(
    source: Path,
    target: Path,
    overwrite: bool = False,
    dtype: str = "int16",
    patient: tuple[str | None, str | None] = (None, None),
) -> None:
    """Everything about a job's paths that can be refused before its input is read (and, on
    the command line, before a model loads): an output that is the input, exists (without
    ``overwrite``), cannot be written, or cannot hold the patient options."""
    check_output_path(source, target)
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists; use ", Argument("overwrite", True), " to replace it")
    check_target(target, dtype)
    check_patient_target(target, *patient)


def _run(
    source: Path,
    target: Path,
    process: Callable[[Volume], Volume],
    description: str,
    overwrite: bool,
    dtype: str,
    series_uid: str | None,
    patient: tuple[str | None, str | None] = (None, None),
) -> None:
    """Read, process, write. An input that int16 cannot hold is refused before the work
    (`check_fits_int16`); the result is then clipped to int16 only where the processing
    overshot the range (an interpolation next to -32768 padding)."""
    check_job(source, target, overwrite, dtype, patient)
    volume = dicom.with_patient(_read_checked(source, series_uid), *patient)
    if dtype == "int16":
        check_fits_int16(volume.image, source)
    try:
        result = process(volume)
    except ThinctError as error:
        raise type(error)(f"{source}: {error}") from None
    write_volume(
        result, target, overwrite=overwrite, dtype=dtype, description=description, clip=True
    )


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
    in_plane: int | None = None,
    in_plane_spacing: float | None = None,
    slab: tuple[int, int] | None = None,
    notice: Callable[[str], None] | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
) -> None:
    """Read a thick scan, make its thin-slice version and write it.

    ``model_name`` names the model in the output's description (the DICOM series and
    derivation descriptions) so that a reader can tell which method made the slices, and
    which interpolation refined the pixels. ``patient_id`` and ``patient_name`` file a DICOM
    output of a non-DICOM scan under that patient (`thinct.io.dicom.with_patient`).
    """

    def process(volume: Volume) -> Volume:
        if model is not None and factor != 1:  # a factor of 1 keeps the slices
            _say(thin_input_warning(volume, source), notice)
        return upsample_volume(
            volume,
            method,
            spacing,
            factor,
            align,
            progress,
            model,
            options,
            cancel,
            consistency,
            in_plane=in_plane,
            in_plane_spacing=in_plane_spacing,
            slab=slab,
            notice=notice,
        )

    made_by = method if model is None else f"model {model_name or model.config.architecture}"
    if consistency != "none":
        made_by += f", {consistency} consistency"
    description = f"SYNTHETIC thin slices, thinct {__version__} {made_by} ({align})"
    if asks_in_plane(in_plane, in_plane_spacing):
        pixels = f"x{in_plane}" if in_plane_spacing is None else f"{in_plane_spacing:g} mm"
        by = "the model" if model is not None and model.config.diffusion else None
        description += f", in-plane {pixels} by {by or in_plane_method(method, model)}"
    patient = (patient_id, patient_name)
    _run(source, target, process, description, overwrite, dtype, series_uid, patient)


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
    patient_id: str | None = None,
    patient_name: str | None = None,
) -> None:
    """Read a thin scan, simulate its thick-slice reconstruction and write it (the patient
    as in `upsample_file`)."""

    def process(volume: Volume) -> Volume:
        return simulate_thick(volume, thickness, increment, profile, fwhm)

    description = f"SIMULATED {thickness:g} mm {profile} slices, thinct {__version__}"
    patient = (patient_id, patient_name)
    _run(source, target, process, description, overwrite, dtype, series_uid, patient)
