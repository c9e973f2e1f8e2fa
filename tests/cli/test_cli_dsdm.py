"""`thinct upsample` with a diffusion model (DSDM): its options (--steps, --seed, --sampler,
--refine, --planes), their refusal where no diffusion model runs, and --slab for every method.

Rules under test: a small untrained dsdm-small saved as a model folder runs through the CLI
in 2 steps onto the thin grid every other method uses, and the same seed writes the same
file; diffusion options with another model or with --method are usage errors (exit 2) that
name them; --slab takes part of the scan, placed where it lies, for an interpolation and a
diffusion model alike, and a bad slab is a usage error. Runs use the entry point in this
process (test_cli.py's helper).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers.cli import assert_ok, assert_one_error, thinct_in_process

from thinct.models import create_model, save_model

MODEL = "tiny-dsdm"
IN = "in.nii.gz"
FAST = ["--steps", "2", "--batch-size", "64", "--quiet"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_thick: Path) -> Iterator[Path]:
    """``tmp_path`` as the working directory, holding an untrained dsdm-small model folder and
    ``in.nii.gz``, a real 24 x 28 x 6 crop of the example scan with its geometry."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_model(create_model("dsdm-small"), tmp_path / MODEL)
    image = sitk.ReadImage(str(example_thick))
    sitk.WriteImage(image[70:94, 40:68, 4:10], str(tmp_path / IN))
    yield tmp_path


def _read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _same_grid(image: sitk.Image, other: sitk.Image) -> bool:
    return (
        image.GetSize() == other.GetSize()
        and np.allclose(image.GetSpacing(), other.GetSpacing(), atol=1e-6)
        and np.allclose(image.GetOrigin(), other.GetOrigin(), atol=1e-4)
        and np.allclose(image.GetDirection(), other.GetDirection(), atol=1e-6)
    )


def test_a_diffusion_model_writes_the_thin_grid_and_repeats_with_its_seed(workdir, capfd):
    run = ["upsample", IN, "--model", MODEL, *FAST, "--dtype", "float32"]
    assert_ok(thinct_in_process(capfd, *run[:2], "first.nii.gz", *run[2:], "--seed", "5"))
    assert_ok(thinct_in_process(capfd, *run[:2], "again.nii.gz", *run[2:], "--seed", "5"))
    assert_ok(thinct_in_process(capfd, *run[:2], "other.nii.gz", *run[2:], "--seed", "6"))
    linear = ["upsample", IN, "linear.nii.gz", "--method", "linear", "--quiet"]
    assert_ok(thinct_in_process(capfd, *linear))
    first = _read(workdir / "first.nii.gz")
    assert first.GetSize() == (24, 28, 30)  # 6 slices of 5 mm to 1 mm, edges
    assert _same_grid(first, _read(workdir / "linear.nii.gz"))
    values = sitk.GetArrayFromImage(first)
    assert np.array_equal(values, sitk.GetArrayFromImage(_read(workdir / "again.nii.gz")))
    assert not np.allclose(values, sitk.GetArrayFromImage(_read(workdir / "other.nii.gz")))


def test_refinement_and_the_other_sampler_and_scheme_run(workdir, capfd):
    options = ["--refine", "0.2", "--sampler", "ddim", "--planes", "average"]
    run = ["upsample", IN, "refined.nii.gz", "--model", MODEL, *FAST, *options]
    assert_ok(thinct_in_process(capfd, *run))
    assert _read(workdir / "refined.nii.gz").GetSize() == (24, 28, 30)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (
            ["--steps", "3"],
            "--steps applies to diffusion models (dsdm), not to the thickgrid model",
        ),
        (["--seed", "1", "--refine", "0.5"], "--seed, --refine apply to diffusion models"),
        (["--method", "linear", "--sampler", "ddim"], "--sampler applies to diffusion models"),
    ],
)
def test_diffusion_options_where_no_diffusion_model_runs_are_usage_errors(
    workdir, capfd, options, words
):
    result = thinct_in_process(capfd, "upsample", IN, "out.nii.gz", *options)
    assert_one_error(result, 2, words)
    assert not (workdir / "out.nii.gz").exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--steps", "0"], "--steps must be at least 1"),
        (["--refine", "0"], "--refine must be a strength in (0, 1]"),
        (["--planes", "all"], "--planes must be one of alternate, average"),
    ],
)
def test_impossible_diffusion_options_are_usage_errors(workdir, capfd, options, words):
    result = thinct_in_process(capfd, "upsample", IN, "out.nii.gz", "--model", MODEL, *options)
    assert_one_error(result, 2, words)


def test_a_slab_is_the_part_of_the_scan_where_it_lies(workdir, capfd):
    whole = ["upsample", IN, "whole.nii.gz", "--method", "linear", "--quiet"]
    part = ["upsample", IN, "part.nii.gz", "--method", "linear", "--slab", "2:5", "--quiet"]
    assert_ok(thinct_in_process(capfd, *whole))
    assert_ok(thinct_in_process(capfd, *part))
    whole_image, part_image = _read(workdir / "whole.nii.gz"), _read(workdir / "part.nii.gz")
    assert part_image.GetSize() == (24, 28, 15)  # thick slices 2, 3 and 4
    # Its slices are the whole scan's 10 to 24, where they lie; the inner ones are the same.
    assert _same_grid(part_image, whole_image[:, :, 10:25])
    inner = sitk.GetArrayFromImage(part_image)[3:-3]
    np.testing.assert_allclose(inner, sitk.GetArrayFromImage(whole_image)[13:22], atol=1)
    dsdm = ["upsample", IN, "dsdm.nii.gz", "--model", MODEL, *FAST, "--slab", "2:5"]
    assert_ok(thinct_in_process(capfd, *dsdm))
    assert _same_grid(_read(workdir / "dsdm.nii.gz"), part_image)


@pytest.mark.parametrize(
    ("slab", "words"),
    [
        ("3", "--slab must be START:STOP, two whole numbers, got '3'"),
        ("4:5", "at least 2 thick slices"),
        ("2:9", "--slab 2:9 reaches past the scan's 6 thick slices"),
    ],
)
def test_bad_slabs_are_usage_errors(workdir, capfd, slab, words):
    result = thinct_in_process(capfd, "upsample", IN, "out.nii.gz", "-m", "linear", "--slab", slab)
    assert_one_error(result, 2, words)
