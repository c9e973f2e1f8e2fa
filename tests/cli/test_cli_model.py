"""`thinct upsample` with a model: the default model (`thickgrid`, whose weights ship in the
package) when neither --model nor --method is given, or a model folder saved with
`thinct.models.save_model` (--model), with the engine's options taken from the command line.

Rules under test: without options the default model makes the thin slices, on the same thin
grid as an interpolation, exactly as `--model thickgrid` does, and a DICOM output names it;
`thinct.load_model()` is that model; its shipped weights match their card and are small enough
to ship. A model folder's output lies on the thin grid and holds exactly what the engine makes
with the same options; engine options apply to the default model too; DICOM outputs name the
model; a batch shares one model; `--model` with `--method`, engine options with `--method`, a
model that does not exist, impossible engine options and an unavailable device are usage
errors (exit 2) caught before any input is read; a corrupt model is one error line (exit 1).
Runs use the entry point in this process, as test_cli.py does for runs that need no process
of their own, and real subprocesses show the whole path.

The shipped weights may be retrained at any time: no test here depends on
what they predict, only on where it goes and that every way of asking for the default model
gives the same result.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from helpers.cli import (
    assert_ok,
    assert_one_error,
    show,
    snapshot,
    staging_left,
    thinct,
    thinct_in_process,
)

import thinct as thinct_package
from thinct.geometry import Grid, thin_grid
from thinct.inference.engine import InferenceOptions, upsample_with_model
from thinct.io import read_volume
from thinct.models import DEFAULT_MODEL, create_model, load_model, save_model
from thinct.models.registry import registry_entry
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


def engine_result(source: Path, model_folder: Path | None, **options) -> sitk.Image:
    """What the engine itself makes of a scan with a model folder (None: the default model),
    5 mm -> 1 mm (edges)."""
    volume = read_volume(source)
    thin = thin_grid(Grid.of(volume.image), spacing=1.0, align="edges")
    options = InferenceOptions(device="cpu", **options)
    return upsample_with_model(volume, thin, load_model(model_folder), options).image


def assert_same_geometry(image: sitk.Image, other: sitk.Image) -> None:
    assert image.GetSize() == other.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), other.GetSpacing(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), other.GetOrigin(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), other.GetDirection(), rtol=0, atol=1e-6)


# --- the default model ------------------------------------------------------------------


def test_without_options_upsample_runs_the_default_model_on_the_thin_grid(
    workdir: Path, capfd, example_thick: Path
):
    """The Quick start's command, in a real process: a model makes the thin slices on the grid
    an interpolation makes (and not the interpolation that was the default before it)."""
    result = thinct("upsample", example_thick, "default.nii.gz", cwd=workdir)
    assert_ok(result)
    assert "wrote default.nii.gz" in result.stderr, show(result)
    bspline = ["upsample", example_thick, "bspline.nii.gz", "--method", "bspline", "--quiet"]
    assert_ok(thinct_in_process(capfd, *bspline))

    default = sitk.ReadImage(str(workdir / "default.nii.gz"))
    interpolated = sitk.ReadImage(str(workdir / "bspline.nii.gz"))
    assert default.GetSize() == (192, 192, 80)  # 16 slices of 5 mm to 1 mm, edges
    assert default.GetPixelID() == sitk.sitkInt16
    assert_same_geometry(default, interpolated)
    values = sitk.GetArrayFromImage(default)
    assert not np.array_equal(values, sitk.GetArrayFromImage(interpolated))


def test_the_default_model_is_what_its_name_makes(workdir: Path, capfd):
    """Without options, exactly what `--model thickgrid` makes, through the same engine."""
    assert_ok(thinct_in_process(capfd, "upsample", IN, "default.nii.gz", "--dtype", "float32"))
    named = ["upsample", IN, "named.nii.gz", "--model", DEFAULT_MODEL, "--dtype", "float32"]
    assert_ok(thinct_in_process(capfd, *named))
    default = sitk.GetArrayFromImage(sitk.ReadImage(str(workdir / "default.nii.gz")))
    np.testing.assert_array_equal(
        default, sitk.GetArrayFromImage(sitk.ReadImage(str(workdir / "named.nii.gz")))
    )
    np.testing.assert_allclose(
        default, sitk.GetArrayFromImage(engine_result(workdir / IN, None)), rtol=0, atol=1e-3
    )


def test_a_dicom_output_of_the_default_model_names_it(workdir: Path, capfd):
    assert_ok(thinct_in_process(capfd, "upsample", IN, "series", "--quiet"))
    files = sorted((workdir / "series").iterdir())
    assert len(files) == 25  # 5 slices of 5 mm to 1 mm, edges
    first = pydicom.dcmread(files[0])
    assert first.DerivationDescription.startswith("SYNTHETIC thin slices, thinct")
    assert first.DerivationDescription.endswith(f"model {DEFAULT_MODEL} (edges)")
    assert f"model {DEFAULT_MODEL}" in first.SeriesDescription


def test_load_model_without_a_spec_is_the_default_model():
    assert DEFAULT_MODEL == "thickgrid"
    model = thinct_package.load_model()
    assert model.config == registry_entry(DEFAULT_MODEL).config
    assert not model.training
    named = thinct_package.load_model(DEFAULT_MODEL).state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, named[name]), name


def _weights_folder() -> Path:
    folder = resources.files("thinct") / "weights" / DEFAULT_MODEL
    assert isinstance(folder, Path)  # an installed or editable package is plain files
    return folder


def test_the_shipped_weights_match_their_card_and_are_small():
    """The card's sha256 is the one the loader checks; 20 MB keeps the wheel small."""
    folder = _weights_folder()
    weights = folder / WEIGHTS_FILE
    card = (folder / "README.md").read_text()
    (recorded,) = set(re.findall(r"\b[0-9a-f]{64}\b", card))
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == recorded
    assert weights.stat().st_size <= 20 * 1024 * 1024
    assert (folder / "config.json").is_file()


def test_the_weights_are_package_data():
    """pyproject.toml ships `thinct/weights/*/*` as package data, and the weights are found as
    a resource of the package (not by a path into this checkout). CI's Quick start runs the
    default model from a real, non-editable install."""
    files = resources.files("thinct") / "weights" / DEFAULT_MODEL
    for name in ("config.json", WEIGHTS_FILE, "README.md"):
        assert (files / name).is_file(), name
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    package_data = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^thinct = \[.*"weights/\*/\*".*\]', package_data, flags=re.M)


# 96 x 96 pixels in 64-pixel tiles sharing at least 16: tiles start at 0 and 32 (on the
# model's 8-pixel window grid) along each axis. Pixels 0-31 and 64-95 lie in one tile only, at
# least 32 pixels from that tile's inner border.
TILED = ["--tile", "64", "--tile-overlap", "16"]
ONE_TILE = np.r_[0:32, 64:96]


def test_engine_options_apply_to_the_default_model(workdir: Path, capfd, example_thick: Path):
    """Engine options need no --model: the default model runs with them, exactly as the engine
    does with the same options, and tiles change the result only where they meet. A tile in
    the wrong place or with the wrong weight would be off by tens to hundreds of HU on average
    far from any border; there the trained network differs between tile sizes only in a few
    pixels (its receptive field reaches a little past 32 pixels), by 13 HU at most measured."""
    image = sitk.ReadImage(str(example_thick))
    sitk.WriteImage(image[48:144, 48:144, 4:9], str(workdir / "crop.nii.gz"))
    common = ["--device", "cpu", "--dtype", "float32", "--quiet"]
    assert_ok(thinct_in_process(capfd, "upsample", "crop.nii.gz", "tiled.nii.gz", *TILED, *common))
    assert_ok(thinct_in_process(capfd, "upsample", "crop.nii.gz", "whole.nii.gz", *common))

    tiled = sitk.ReadImage(str(workdir / "tiled.nii.gz"))
    whole = sitk.ReadImage(str(workdir / "whole.nii.gz"))
    assert tiled.GetSize() == (96, 96, 25)
    assert_same_geometry(tiled, whole)
    tiled_values, whole_values = sitk.GetArrayFromImage(tiled), sitk.GetArrayFromImage(whole)
    engine = engine_result(workdir / "crop.nii.gz", None, tile=64, tile_overlap=16)
    np.testing.assert_allclose(tiled_values, sitk.GetArrayFromImage(engine), rtol=0, atol=1e-3)
    far = np.abs(tiled_values - whole_values)[:, ONE_TILE][:, :, ONE_TILE]
    assert far.max() <= 30 and far.mean() <= 0.5, (far.max(), far.mean())


@pytest.mark.parametrize(
    ("options", "says"),
    [
        pytest.param(["--tile", "4"], "tile must be at least 8 pixels, got 4", id="tile"),
        # The default model's 8 slices allow 7 at most: known only once it is loaded.
        pytest.param(
            ["--z-overlap", "8"], "z overlap must be from 1 to 7 thick slices", id="z-overlap-8"
        ),
    ],
)
def test_the_default_model_refuses_impossible_options_before_reading(
    workdir: Path, capfd, options: list[str], says: str
):
    """Engine options are checked as the model loads, before any scan is read: the input is
    broken, which reading would report (the control run shows it). A mistyped path is
    reported before the model loads."""
    (workdir / "broken.nii.gz").write_bytes(b"not a scan")
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", "broken.nii.gz", OUT, *options)
    assert_one_error(result, 2, says)
    assert snapshot(workdir) == before
    control = thinct_in_process(capfd, "upsample", "broken.nii.gz", OUT)
    assert_one_error(control, 1, "broken.nii.gz: ")
    path_first = thinct_in_process(capfd, "upsample", "missing.nii.gz", OUT, *options)
    assert_one_error(path_first, 2, "missing.nii.gz: no such file or folder")


# --- a model folder ---------------------------------------------------------------------


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


@pytest.mark.parametrize("model", [MODEL, DEFAULT_MODEL])
@pytest.mark.parametrize("method", ["linear", "bspline"])
def test_model_and_method_together_are_a_usage_error(workdir: Path, capfd, model: str, method: str):
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", IN, OUT, "--model", model, "--method", method)
    assert_one_error(result, 2, "give either --model or --method, not both")
    assert snapshot(workdir) == before


def test_a_model_that_does_not_exist_is_a_usage_error(workdir: Path, capfd):
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", IN, OUT, "--model", "no-such-model")
    assert_one_error(result, 2, "'no-such-model': no such file or folder")
    assert snapshot(workdir) == before


@pytest.mark.parametrize(
    "option",
    [
        ["--tile", "64"],
        ["--tile-overlap", "16"],
        ["--device", "cpu"],
        ["--precision", "bf16"],
        ["--z-overlap", "3"],
        ["--batch-size", "2"],
    ],
)
def test_engine_options_with_a_method_are_a_usage_error(workdir: Path, capfd, option: list[str]):
    """Interpolation ignores them: accepting them silently would hide a --method given by
    mistake."""
    before = snapshot(workdir)
    result = thinct_in_process(capfd, "upsample", IN, OUT, "--method", "bspline", *option)
    assert_one_error(result, 2, "apply to models, not to --method")
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
    """The input is broken: reading it would fail (the control run below shows it), so an
    error about the option proves it came first."""
    if "--device" in options and not _unavailable(options[-1]):
        pytest.skip(f"{options[-1]} is available on this machine")
    (workdir / "broken.nii.gz").write_bytes(b"not a scan")
    before = snapshot(workdir)
    args = ["upsample", "broken.nii.gz", OUT, "--model", MODEL]
    assert_one_error(thinct_in_process(capfd, *args, *options), 2, says)
    assert snapshot(workdir) == before
    control = thinct_in_process(capfd, *args)
    assert_one_error(control, 1, "broken.nii.gz: ")


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
