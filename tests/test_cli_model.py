"""`thinct upsample --model`: a model folder saved with `thinct.models.save_model` predicts the
thin slices, with the engine's options taken from the command line.

Rules under test: the output lies on the thin grid and holds exactly what the engine makes
with the same options; DICOM outputs name the model; a batch shares one model; `--model`
with `--method`, a model that does not exist, impossible engine options and an unavailable
device are usage errors (exit 2) caught before any input is read; a corrupt model is one
error line (exit 1). Runs use the entry point in this process, as test_cli.py does for runs
that need no process of their own, and one real subprocess shows the whole path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from cli_helpers import (
    assert_ok,
    assert_one_error,
    show,
    snapshot,
    staging_left,
    thinct,
    thinct_in_process,
)

from thinct.geometry import Grid, thin_grid
from thinct.inference import InferenceOptions, upsample_with_model
from thinct.io import read_volume
from thinct.models import create_model, load_model, save_model
from thinct.models.storage import WEIGHTS_FILE

MODEL = "tiny-cthnet"  # the model folder's name, which outputs name as their method
IN, OUT = "in.nii.gz", "out.nii.gz"
# Small tiles so that the options visibly matter on the 37 x 42 crop.
ENGINE = ["--tile", "24", "--tile-overlap", "8", "--z-overlap", "2", "--batch-size", "3"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained CTHNet (4 thick slices, ratio 5) saved as a model folder."""
    torch.manual_seed(0)
    model = create_model(
        "cthnet",
        slices=4,
        ratio=5,
        encoder_dim=4,
        encoder_heads=1,
        encoder_depths=(1,),
        latent_channels=2,
        fold=4,
        through_depths=(1,),
        through_heads=4,
        in_plane_depths=(1,),
        in_plane_heads=4,
        head_channels=2,
    )
    return save_model(model, tmp_path_factory.mktemp("models") / MODEL)


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_thick: Path, model_folder: Path
) -> Iterator[Path]:
    """``tmp_path`` as the working directory, holding the model folder and ``in.nii.gz``, a
    real 37 x 42 x 5 crop of the example scan with its geometry."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    (tmp_path / MODEL).mkdir()
    for file in model_folder.iterdir():
        (tmp_path / MODEL / file.name).write_bytes(file.read_bytes())
    write_crop(example_thick, tmp_path / IN, x=100)
    yield tmp_path
    assert staging_left(tmp_path) == []


def write_crop(source: Path, target: Path, x: int) -> None:
    image = sitk.ReadImage(str(source))
    sitk.WriteImage(image[x : x + 37, 80:122, 4:9], str(target))


def engine_result(source: Path, model_folder: Path, **options) -> sitk.Image:
    """What the engine itself makes of a scan with a model folder, 5 mm -> 1 mm (edges)."""
    volume = read_volume(source)
    thin = thin_grid(Grid.of(volume.image), spacing=1.0, align="edges")
    options = InferenceOptions(device="cpu", **options)
    return upsample_with_model(volume, thin, load_model(model_folder), options).image


def test_a_model_folder_makes_the_thin_slices_with_the_given_options(workdir: Path, capfd):
    args = ["upsample", IN, OUT, "--model", MODEL, *ENGINE, "--device", "cpu", "--quiet"]
    assert_ok(thinct_in_process(capfd, *args, "--dtype", "float32"))
    written = sitk.ReadImage(str(workdir / OUT))
    thin = thin_grid(Grid.of(sitk.ReadImage(str(workdir / IN))), spacing=1.0, align="edges")
    assert Grid.of(written).size == thin.grid.size == (37, 42, 25)
    np.testing.assert_allclose(Grid.of(written).spacing, thin.grid.spacing, rtol=1e-6)
    np.testing.assert_allclose(Grid.of(written).origin, thin.grid.origin, atol=1e-4)
    np.testing.assert_allclose(Grid.of(written).direction, thin.grid.direction, atol=1e-6)
    voxels = sitk.GetArrayFromImage(written)
    # Exactly the engine's result with the same options, which differs from the defaults'.
    same = engine_result(workdir / IN, workdir / MODEL, tile=24, tile_overlap=8, batch_size=3)
    np.testing.assert_allclose(voxels, sitk.GetArrayFromImage(same), rtol=0, atol=1e-3)
    default = sitk.GetArrayFromImage(engine_result(workdir / IN, workdir / MODEL))
    assert np.abs(voxels - default).max() > 1


def test_a_dicom_output_names_the_model(workdir: Path, capfd):
    args = ["upsample", IN, "series", "--model", MODEL, "--device", "cpu", "--quiet"]
    assert_ok(thinct_in_process(capfd, *args, "--align", "centers"))
    files = sorted((workdir / "series").iterdir())
    assert len(files) == 21  # (5 - 1) * 5 + 1 slices from the first to the last centre
    first = pydicom.dcmread(files[0])
    assert first.DerivationDescription.startswith("SYNTHETIC thin slices, thinct")
    assert first.DerivationDescription.endswith(f"model {MODEL} (centers)")
    assert f"model {MODEL}" in first.SeriesDescription


def test_a_batch_shares_one_model(workdir: Path, capfd, example_thick):
    write_crop(example_thick, workdir / "other.nii.gz", x=20)
    args = ["upsample", IN, "other.nii.gz", "thin", "--model", MODEL, "--device", "cpu"]
    assert_ok(thinct_in_process(capfd, *args, "--dtype", "float32", "--quiet"))
    for name in (IN, "other.nii.gz"):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(workdir / "thin" / name)))
        expected = sitk.GetArrayFromImage(engine_result(workdir / name, workdir / MODEL))
        np.testing.assert_allclose(written, expected, rtol=0, atol=1e-3)


def test_a_real_process_upsamples_with_a_model(workdir: Path):
    result = thinct("upsample", IN, OUT, "--model", MODEL, "--device", "cpu", cwd=workdir)
    assert_ok(result)
    assert f"wrote {OUT}" in result.stderr, show(result)
    assert sitk.ReadImage(str(workdir / OUT)).GetSize() == (37, 42, 25)


def test_model_and_method_together_are_a_usage_error(workdir: Path, capfd):
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", IN, OUT, "--model", MODEL, "--method", "linear")
    assert_one_error(result, 2, "give either --model or --method, not both")
    assert snapshot(workdir) == before


def test_a_model_that_does_not_exist_is_a_usage_error(workdir: Path, capfd):
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", IN, OUT, "--model", "no-such-model")
    assert_one_error(result, 2, "'no-such-model': no such file or folder")
    assert snapshot(workdir) == before


@pytest.mark.parametrize("option", [["--tile", "64"], ["--device", "cpu"], ["--z-overlap", "3"]])
def test_engine_options_without_a_model_are_a_usage_error(workdir: Path, capfd, option: list[str]):
    """Interpolation ignores them: accepting them silently would hide a forgotten --model."""
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", IN, OUT, *option)
    assert_one_error(result, 2, "apply to --model only")
    assert snapshot(workdir) == before


def _unavailable(device: str) -> bool:
    if device == "cuda":
        return not torch.cuda.is_available()
    return not torch.backends.mps.is_available()


@pytest.mark.parametrize(
    ("options", "says"),
    [
        pytest.param(["--tile", "4"], "tile must be at least 8 pixels, got 4", id="tile"),
        pytest.param(
            ["--tile", "64", "--tile-overlap", "40"],
            "tile overlap must be from 0 to half the tile (32), got 40",
            id="tile-overlap",
        ),
        pytest.param(["--batch-size", "0"], "batch size must be at least 1", id="batch-size"),
        pytest.param(["--z-overlap", "0"], "z overlap must be from 1", id="z-overlap-0"),
        # The model's 4 slices allow 3 at most: known only once the model is loaded.
        pytest.param(
            ["--z-overlap", "4"], "z overlap must be from 1 to 3 thick slices", id="z-overlap-4"
        ),
        pytest.param(["--device", "cuda"], "device 'cuda' is not available", id="cuda"),
        pytest.param(["--device", "mps"], "device 'mps' is not available", id="mps"),
    ],
)
def test_impossible_engine_options_fail_before_any_input_is_read(
    workdir: Path, capfd, options: list[str], says: str
):
    """The input does not exist: reading it would fail with "no such file or folder" (the
    control run below shows it), so an error about the option proves it came first."""
    if "--device" in options and not _unavailable(options[-1]):
        pytest.skip(f"{options[-1]} is available on this machine")
    before = snapshot(workdir)
    args = ["upsample", "missing.nii.gz", OUT, "--model", MODEL]
    assert_one_error(thinct_in_process(capfd, *args, *options), 2, says)
    assert snapshot(workdir) == before
    control = thinct_in_process(capfd, *args)
    assert_one_error(control, 2, "missing.nii.gz: no such file or folder")


def test_a_corrupt_model_is_one_error_line(workdir: Path, capfd):
    weights = workdir / MODEL / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-100:] = bytes(100)  # zero the last weights: the file still parses
    weights.write_bytes(bytes(data))
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", IN, OUT, "--model", MODEL, "--quiet")
    assert_one_error(result, 1, str(weights.relative_to(workdir)), "sha256")
    assert snapshot(workdir) == before


def test_a_model_folder_without_its_card_and_truncated_weights_is_one_error_line(
    workdir: Path, capfd
):
    """Without the card's sha256 to compare, the safetensors reader itself meets the damage."""
    (workdir / MODEL / "README.md").unlink()
    weights = workdir / MODEL / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    result = thinct_in_process(capfd, "upsample", IN, OUT, "--model", MODEL, "--quiet")
    assert_one_error(result, 1, "is not a readable safetensors file")
    assert not (workdir / OUT).exists()
