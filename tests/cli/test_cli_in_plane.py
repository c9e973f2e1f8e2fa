"""`thinct upsample --in-plane F` / `--in-plane-spacing MM`: the pixels refined over the same
field of view, alone (`--factor 1`) or with thinner slices (the paper's 3D task), by an
interpolation or after a model, in every output format.

Rules under test: the outer edges of the corner voxels of every output (NIfTI, NRRD,
MetaImage, DICOM series) are the input's, spacing and size are refined, an oblique direction
is kept; DICOM files carry the refined Rows, Columns, PixelSpacing and ImagePositionPatient and
name the in-plane interpolation; the example scan goes through with and without the default
model; bad values are one error line with exit code 2 (1 for what only the scan can refuse),
and nothing is written. Runs use the entry point in this process (`thinct_in_process`), and one
real process shows the whole path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from helpers.cli import (
    assert_ok,
    assert_one_error,
    read,
    show,
    snapshot,
    thinct,
    thinct_in_process,
    write_scan,
)
from helpers.volumes import rotation

from thinct import read_volume, upsample_volume
from thinct.models import DEFAULT_MODEL, load_model

OBLIQUE = rotation(20, -15, 30)
IN, OUT = "thick.nii.gz", "thin.nii.gz"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding a small oblique thick scan (28 x 24 pixels of 0.7 mm, 8 slices of
    5 mm), the working directory of the runs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    write_scan(tmp_path / IN, direction=OBLIQUE)
    return tmp_path


def outer_corners(image: sitk.Image) -> np.ndarray:
    """World positions (8, 3) of the outer corners of the corner voxels, by hand from origin +
    direction @ (spacing * index) at index -0.5 and n - 0.5."""
    matrix = np.reshape(image.GetDirection(), (3, 3))
    spacing = np.asarray(image.GetSpacing())
    corners = []
    for high in np.ndindex(2, 2, 2):
        index = np.array(
            [n - 0.5 if h else -0.5 for n, h in zip(image.GetSize(), high, strict=True)]
        )
        corners.append(np.asarray(image.GetOrigin()) + matrix @ (spacing * index))
    return np.array(corners)


def run(capfd, *args: object) -> None:
    assert_ok(thinct_in_process(capfd, "upsample", *args, "--quiet"))


# --- every output format ----------------------------------------------------------------

OUTPUTS = {"nifti": "thin.nii.gz", "nrrd": "thin.nrrd", "metaimage": "thin.mha", "dicom": "thin"}
REQUESTS = {
    "slices-and-pixels": (["--factor", "5", "--in-plane", "2"], (56, 48, 40), (0.35, 0.35, 1.0)),
    "pixels-alone": (["--factor", "1", "--in-plane", "3"], (84, 72, 8), (0.7 / 3, 0.7 / 3, 5.0)),
}


@pytest.mark.parametrize("request_name", REQUESTS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_every_format_keeps_the_field_of_view(workdir: Path, capfd, output: str, request_name):
    options, size, spacing = REQUESTS[request_name]
    run(capfd, IN, OUTPUTS[output], "--method", "linear", *options)
    thick, thin = read(workdir / IN), read(workdir / OUTPUTS[output])
    assert thin.GetSize() == size
    np.testing.assert_allclose(thin.GetSpacing(), spacing, rtol=1e-6)
    np.testing.assert_allclose(thin.GetDirection(), OBLIQUE, atol=1e-6)
    np.testing.assert_allclose(outer_corners(thin), outer_corners(thick), atol=1e-3)


def test_dicom_files_carry_the_refined_pixels(workdir: Path, capfd):
    run(capfd, IN, "series", "--method", "bspline", "--spacing", "1", "--in-plane-spacing", "0.5")
    files = sorted((workdir / "series").iterdir())
    assert len(files) == 40
    # 28 x 0.7 mm = 19.6 mm hold 39 pixels of 0.5 mm (0.05 mm to spare at each side); 24 x
    # 0.7 mm = 16.8 mm hold 33 (0.15 mm at each side).
    thick = read(workdir / IN)
    matrix = np.reshape(thick.GetDirection(), (3, 3))
    first_edge = np.asarray(thick.GetOrigin()) + matrix @ [-0.35, -0.35, -2.5]
    for k in (0, 39):
        dataset = pydicom.dcmread(files[k])
        assert (dataset.Rows, dataset.Columns) == (33, 39)
        assert [float(v) for v in dataset.PixelSpacing] == [0.5, 0.5]
        centre = first_edge + matrix @ [0.05 + 0.25, 0.15 + 0.25, 0.5 + k]
        np.testing.assert_allclose(
            [float(v) for v in dataset.ImagePositionPatient], centre, atol=1e-4
        )
        orientation = [float(v) for v in dataset.ImageOrientationPatient]
        np.testing.assert_allclose(orientation, [*matrix[:, 0], *matrix[:, 1]], atol=1e-6)
    assert dataset.DerivationDescription.endswith("bspline (edges), in-plane 0.5 mm by bspline")


# --- the example scan -------------------------------------------------------------------


def test_the_example_with_an_interpolation(capfd, example_thick: Path, tmp_path: Path):
    run(capfd, example_thick, tmp_path / OUT, "--method", "linear", "--in-plane", "2")
    thick, thin = sitk.ReadImage(str(example_thick)), read(tmp_path / OUT)
    assert thin.GetSize() == (384, 384, 80)
    np.testing.assert_allclose(thin.GetSpacing(), (*np.divide(thick.GetSpacing()[:2], 2), 1.0))
    np.testing.assert_allclose(outer_corners(thin), outer_corners(thick), atol=1e-3)


def test_the_example_crop_with_the_default_model_slices_and_pixels(capfd, example_thick, tmp_path):
    """The paper's 3D task in small: 5 mm to 1 mm and x2 pixels at once; the written voxels
    are what `upsample_volume` makes (the model's slices, then B-spline), rounded to int16,
    and the DICOM series says so."""
    crop = tmp_path / "crop.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(example_thick))[0:37, 80:122, 4:9], str(crop))
    run(capfd, crop, tmp_path / OUT, "--spacing", "1", "--in-plane", "2")
    written = sitk.ReadImage(str(tmp_path / OUT))
    expected = upsample_volume(read_volume(crop), model=load_model(None), in_plane=2).image
    assert written.GetSize() == expected.GetSize() == (74, 84, 25)
    np.testing.assert_allclose(outer_corners(written), outer_corners(sitk.ReadImage(str(crop))))
    values = np.clip(np.rint(sitk.GetArrayFromImage(expected)), -32768, 32767)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), values)
    run(capfd, crop, tmp_path / "series", "--model", DEFAULT_MODEL, "--in-plane", "2")
    first = pydicom.dcmread(sorted((tmp_path / "series").iterdir())[0])
    assert first.DerivationDescription.endswith(
        f"model {DEFAULT_MODEL} (edges), in-plane x2 by bspline"
    )
    assert (first.Rows, first.Columns) == (84, 74)


def test_a_real_process_refines_the_pixels_alone(example_thick: Path, tmp_path: Path):
    args = [example_thick, OUT, "--method", "bspline", "--factor", "1", "--in-plane", "2"]
    result = thinct("upsample", *args, cwd=tmp_path)
    assert_ok(result)
    assert f"wrote {OUT}" in result.stderr, show(result)
    thin = sitk.ReadImage(str(tmp_path / OUT))
    assert thin.GetSize() == (384, 384, 16)
    assert thin.GetSpacing()[2] == pytest.approx(5.0)


# --- mistakes ---------------------------------------------------------------------------

LINEAR = ["--method", "linear"]
MISTAKES = {
    "factor-zero": (
        ["--in-plane", "0", *LINEAR],
        2,
        "--in-plane must be a whole number from 1 to 8, got 0",
    ),
    "factor-nine": (
        ["--in-plane", "9", *LINEAR],
        2,
        "--in-plane must be a whole number from 1 to 8, got 9",
    ),
    "both": (
        ["--in-plane", "2", "--in-plane-spacing", "0.3", *LINEAR],
        2,
        "give either --in-plane or --in-plane-spacing, not both",
    ),
    "negative-spacing": (
        ["--in-plane-spacing", "-1", *LINEAR],
        2,
        "--in-plane-spacing must be a positive number of mm, got -1",
    ),
    "spacing-over-the-limit": (
        ["--in-plane-spacing", "0.05", *LINEAR],
        2,
        "the most is 8 (--in-plane-spacing 0.0875 or more)",
    ),
    "coarser-spacing": (["--in-plane-spacing", "2", *LINEAR], 1, "pixels are already 0.7 mm"),
    "slices-kept-alone": (
        ["--factor", "1", *LINEAR],
        2,
        "--factor must be a whole number from 2 to 100, got 1; 1 (the slices kept) needs "
        "--in-plane",
    ),
    "nothing-to-refine": (
        ["--factor", "1", "--in-plane-spacing", "0.7", *LINEAR],
        1,
        "not thinner, and the pixels are already that fine",
    ),
    "slices-kept-for-a-model": (
        ["--factor", "1", "--in-plane", "2"],
        2,
        "leaves a model nothing to predict; refine the pixels alone with an interpolation "
        "(--method bspline)",
    ),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_bad_values_are_one_line_and_write_nothing(workdir: Path, capfd, name: str):
    options, code, says = MISTAKES[name]
    before = snapshot(workdir)
    assert_one_error(thinct_in_process(capfd, "upsample", IN, OUT, *options), code, says)
    assert snapshot(workdir) == before
