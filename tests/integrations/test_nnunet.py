"""`thinct nnunet convert` and `restore` on tiny nnU-Net v2 datasets built from the shipped
example scan (three 64 x 64 in-plane crops of its 16 slices of 5 mm: two training cases and a
test case, labels by thresholding).

Rules under test: the thin grid of every output (slice axis resampled, in-plane untouched),
int16 CT and labels with their values kept, the second channel B-spline, dataset.json and its
provenance, restarting an interrupted conversion, refusals (one line, exit code, nothing
written, the source untouched), restore onto the thick grid exactly, and every code block of
docs/nnunet.md. Most conversions interpolate (`--method linear`); the page's first command
runs the default model.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.cli import (
    assert_ok,
    assert_one_error,
    show,
    snapshot,
    staging_left,
    thinct_in_process,
)
from helpers.paths import EXAMPLES, ROOT

from thinct._version import __version__
from thinct.cli.app import main
from thinct.geometry import Grid, thin_grid
from thinct.integrations.nnunet.convert import JOURNAL
from thinct.models import DEFAULT_MODEL
from thinct.resample.interpolation import interpolate
from thinct.volume import Volume

THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"
# Case name -> (split, in-plane start x, y) of its 64 x 64 crop: lung fractions 0.2 to 0.6.
CASES = {"lung_001": ("Tr", 0, 64), "lung_002": ("Tr", 64, 0), "lung_003": ("Ts", 128, 128)}
LABELS = {"background": 0, "lung": 1, "dense": 2}
SOURCE, THIN = "Dataset501_LungCT", "Dataset502_LungCT1mm"


def _crop(x: int, y: int) -> sitk.Image:
    """A 64 x 64 in-plane crop; SimpleITK's slicing moves the origin with it."""
    return sitk.ReadImage(str(THICK))[x : x + 64, y : y + 64, :]


def _labels(image: sitk.Image) -> sitk.Image:
    """Lung (below -400 HU) 1, dense tissue (above 100 HU) 2, the rest 0; uint8 like nnU-Net."""
    values = sitk.GetArrayFromImage(image)
    labels = np.where(values < -400, 1, np.where(values > 100, 2, 0)).astype(np.uint8)
    result = sitk.GetImageFromArray(labels)
    result.CopyInformation(image)
    return result


def make_dataset(folder: Path, second_channel: str | None = None, shift: int = 0) -> Path:
    """An nnU-Net v2 raw dataset; ``second_channel`` names a second channel (the CT plus 1000,
    as float32), cropped ``shift`` pixels off the first to put it on another grid."""
    channels = {"0": "CT"} | ({"1": second_channel} if second_channel else {})
    for name, (split, x, y) in CASES.items():
        image = _crop(x, y)
        images, labels = folder / f"images{split}", folder / f"labels{split}"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(images / f"{name}_0000.nii.gz"))
        sitk.WriteImage(_labels(image), str(labels / f"{name}.nii.gz"))
        if second_channel:
            other = sitk.Cast(_crop(x + shift, y), sitk.sitkFloat32) + 1000.0
            sitk.WriteImage(other, str(images / f"{name}_0001.nii.gz"))
    meta = {
        "channel_names": channels,
        "labels": LABELS,
        "numTraining": 2,
        "file_ending": ".nii.gz",
        "name": "LungCT",
    }
    (folder / "dataset.json").write_text(json.dumps(meta, indent=4), encoding="utf-8")
    return folder


def _convert(capfd, *args: object):
    return thinct_in_process(capfd, "nnunet", "convert", *args, "--quiet")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.nii.gz"))


@pytest.fixture(autouse=True)
def _no_staging_left(tmp_path: Path):
    """No run may leave the atomic writer's hidden staging files behind."""
    yield
    assert staging_left(tmp_path) == []


@pytest.fixture
def raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$nnUNet_raw`` in tmp_path holding the thick dataset; the working folder is tmp_path."""
    folder = tmp_path / "raw"
    make_dataset(folder / SOURCE)
    monkeypatch.setenv("nnUNet_raw", str(folder))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, int]:
    """The thick dataset, its linear conversion (both given as paths, no $nnUNet_raw), the
    source's snapshot from before and the exit code; shared by the tests that only read."""
    root = tmp_path_factory.mktemp("converted")
    source = make_dataset(root / SOURCE)
    before = snapshot(source)
    with pytest.raises(SystemExit) as done:
        main(["nnunet", "convert", str(source), str(root / THIN), "-m", "linear", "-q"])
    return source, root / THIN, before, done.value.code


# --- the converted dataset ----------------------------------------------------------------


def test_convert_writes_every_case_and_leaves_the_source_alone(converted):
    source, target, before, code = converted
    assert code == 0
    assert _files(target) == _files(source)
    assert snapshot(source) == before
    assert (target / JOURNAL).is_file() and staging_left(target) == []


@pytest.mark.parametrize("name", list(CASES))
def test_ct_and_labels_are_on_the_thin_grid(converted, name: str):
    source, target, _, _ = converted
    split = CASES[name][0]
    thick = sitk.ReadImage(str(source / f"images{split}" / f"{name}_0000.nii.gz"))
    expected = thin_grid(Grid.of(thick), spacing=1.0).grid
    thin = sitk.ReadImage(str(target / f"images{split}" / f"{name}_0000.nii.gz"))
    label = sitk.ReadImage(str(target / f"labels{split}" / f"{name}.nii.gz"))
    for image in (thin, label):
        assert Grid.of(image) == expected
        assert image.GetPixelID() == sitk.sitkInt16
    # Edges alignment: 80 slices 1 mm apart over the 16 slabs, in-plane as it was.
    assert thin.GetSize() == (64, 64, 80) and thin.GetSpacing()[:2] == thick.GetSpacing()[:2]
    assert thin.GetSpacing()[2] == 1.0 and thin.GetDirection() == thick.GetDirection()
    assert thin.GetOrigin()[:2] == thick.GetOrigin()[:2]
    assert thin.GetOrigin()[2] == pytest.approx(thick.GetOrigin()[2] - 2.0)
    # Linear interpolation: the thin slices at the thick slices' centres are those slices.
    thin_ct, thick_ct = sitk.GetArrayFromImage(thin), sitk.GetArrayFromImage(thick)
    assert np.array_equal(thin_ct[2::5], thick_ct)
    # Nearest neighbour: each thin slice takes the label of the slab it lies in, exactly.
    thick_labels = sitk.GetArrayFromImage(
        sitk.ReadImage(str(source / f"labels{split}" / f"{name}.nii.gz"))
    )
    assert np.array_equal(sitk.GetArrayFromImage(label), np.repeat(thick_labels, 5, axis=0))
    assert set(np.unique(sitk.GetArrayFromImage(label))) == set(np.unique(thick_labels))


def test_dataset_json_is_the_source_s_plus_provenance(converted):
    source, target, _, _ = converted
    meta = json.loads((target / "dataset.json").read_text(encoding="utf-8"))
    provenance = meta.pop("thinct")
    assert meta == json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    assert provenance == {
        "version": __version__,
        "source": {"dataset": SOURCE, "path": str(source.resolve())},
        "method": "linear",
        "spacing": 1.0,
        "align": "edges",
        "other_channels": "bspline",
        "labels": "nearest",
    }


def test_a_second_channel_is_bspline_float32_on_the_same_grid(tmp_path: Path, capfd):
    source = make_dataset(tmp_path / SOURCE, second_channel="noNorm")
    result = _convert(capfd, source, tmp_path / THIN, "--method", "nearest", "--factor", "5")
    assert_ok(result)
    thick = sitk.ReadImage(str(source / "imagesTr" / "lung_001_0001.nii.gz"))
    thin_ct = sitk.ReadImage(str(tmp_path / THIN / "imagesTr" / "lung_001_0000.nii.gz"))
    other = sitk.ReadImage(str(tmp_path / THIN / "imagesTr" / "lung_001_0001.nii.gz"))
    assert Grid.of(other) == Grid.of(thin_ct) and other.GetPixelID() == sitk.sitkFloat32
    expected = interpolate(Volume(thick), thin_grid(Grid.of(thick), factor=5), "bspline")
    assert np.array_equal(sitk.GetArrayFromImage(other), sitk.GetArrayFromImage(expected.image))
    meta = json.loads((tmp_path / THIN / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "CT", "1": "noNorm"}
    assert meta["thinct"]["factor"] == 5 and "spacing" not in meta["thinct"]


@pytest.mark.parametrize("command", ["convert", "restore"])
def test_help_documents_every_option(capfd, monkeypatch: pytest.MonkeyPatch, command: str):
    monkeypatch.setenv("COLUMNS", "200")
    result = thinct_in_process(capfd, "nnunet", command, "--help")
    assert result.returncode == 0 and "Example: thinct nnunet " + command in result.stdout
    options = (
        ["--method", "--model", "--spacing", "--factor", "--align", "--device", "--precision"]
        + ["--tile", "--tile-overlap", "--z-overlap", "--batch-size", "--overwrite", "--quiet"]
        if command == "convert"
        else ["--dataset", "--overwrite", "--quiet"]
    )
    for option in options:
        assert option in result.stdout


# --- restarting ---------------------------------------------------------------------------


def test_an_interrupted_conversion_continues_where_it_stopped(raw: Path, capfd):
    assert_ok(_convert(capfd, SOURCE, THIN, "--method", "linear"))
    target = raw / THIN
    redone = target / "imagesTr" / "lung_002_0000.nii.gz"
    others = [path for path in target.rglob("*.nii.gz") if "lung_002" not in path.name]
    kept = {path: path.stat().st_ino for path in others}
    label_inode = (target / "labelsTr" / "lung_002.nii.gz").stat().st_ino
    redone.unlink()
    (target / "dataset.json").unlink()

    result = thinct_in_process(capfd, "nnunet", "convert", SOURCE, THIN, "--method", "linear")
    assert_ok(result)
    assert f"continuing {target}: 2 of 3 cases were converted before" in result.stderr
    assert redone.is_file() and (target / "dataset.json").is_file()
    # Files are replaced by a rename, so a file written again is a new inode.
    assert {path: path.stat().st_ino for path in kept} == kept
    assert (target / "labelsTr" / "lung_002.nii.gz").stat().st_ino != label_inode


def test_a_failed_case_stops_no_other_and_is_retried(raw: Path, capfd):
    """A case that cannot be read (a truncated file, whose header still reads) is one error
    line; the others are written, dataset.json is not, and the next run converts only it."""
    image = raw / SOURCE / "imagesTr" / "lung_002_0000.nii.gz"
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 2])
    result = thinct_in_process(capfd, "nnunet", "convert", SOURCE, THIN, "--method", "linear")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1 and str(image) in errors[0], show(result)
    assert "2 converted, 1 failed; dataset.json not written" in result.stderr
    target = raw / THIN
    assert not (target / "dataset.json").exists()
    assert _files(target) == [
        "imagesTr/lung_001_0000.nii.gz",
        "imagesTs/lung_003_0000.nii.gz",
        "labelsTr/lung_001.nii.gz",
        "labelsTs/lung_003.nii.gz",
    ]
    image.write_bytes(good)
    result = thinct_in_process(capfd, "nnunet", "convert", SOURCE, THIN, "--method", "linear")
    assert_ok(result)
    assert "2 of 3 cases were converted before" in result.stderr
    assert _files(target) == _files(raw / SOURCE)


def test_continuing_with_other_options_is_refused(raw: Path, capfd):
    assert_ok(_convert(capfd, SOURCE, THIN, "--method", "linear"))
    (raw / THIN / "dataset.json").unlink()
    before = snapshot(raw)
    result = _convert(capfd, SOURCE, THIN, "--method", "bspline")
    assert_one_error(result, 2, "begun with other settings (method linear, spacing 1.0")
    assert snapshot(raw) == before


def test_a_complete_target_is_refused_unless_overwrite(raw: Path, capfd):
    assert_ok(_convert(capfd, SOURCE, THIN, "--method", "linear"))
    before = snapshot(raw)
    result = _convert(capfd, SOURCE, THIN, "--method", "bspline")
    assert_one_error(result, 2, "is a complete dataset; give --overwrite")
    assert snapshot(raw) == before
    assert_ok(_convert(capfd, SOURCE, THIN, "--method", "bspline", "--overwrite"))
    meta = json.loads((raw / THIN / "dataset.json").read_text(encoding="utf-8"))
    assert meta["thinct"]["method"] == "bspline"
    changed = [key for key, digest in snapshot(raw).items() if before.get(key) != digest]
    assert len([key for key in changed if key.endswith(".nii.gz") and "_0000" in key]) == 3


# --- refusals -----------------------------------------------------------------------------


def _edit_meta(folder: Path, **changes: object) -> None:
    path = folder / "dataset.json"
    meta = json.loads(path.read_text(encoding="utf-8")) | changes
    path.write_text(json.dumps(meta), encoding="utf-8")


def _single_slices(folder: Path) -> None:
    """A 2D dataset as nnU-Net stores one in NIfTI: every image one slice thick."""
    for path in folder.rglob("*.nii.gz"):
        image = sitk.ReadImage(str(path))
        sitk.WriteImage(image[:, :, :1], str(path))


REFUSALS = {
    "bad target name": (None, ["Dataset12_Thin"], 2, "names are DatasetNNN_Name"),
    "same id": (None, ["Dataset501_Thin"], 2, "has the id 501 of its source"),
    "missing dataset.json": (
        lambda f: (f / "dataset.json").unlink(),
        [THIN],
        2,
        "has no dataset.json",
    ),
    "missing key": (lambda f: _drop_key(f, "numTraining"), [THIN], 1, "lacks numTraining"),
    "2D file ending": (lambda f: _edit_meta(f, file_ending=".png"), [THIN], 1, "'.png' is not"),
    "single slices": (_single_slices, [THIN], 1, "a single slice"),
    "no CT channel": (
        lambda f: _edit_meta(f, channel_names={"0": "T1"}),
        [THIN],
        1,
        "names no CT channel",
    ),
    "id taken": (
        lambda f: (f.parent / "Dataset777_Old").mkdir(),
        ["Dataset777_New"],
        2,
        "Dataset777_Old already has the id 777",
    ),
    "missing label": (
        lambda f: (f / "labelsTr" / "lung_002.nii.gz").unlink(),
        [THIN],
        1,
        "lung_002.nii.gz is missing",
    ),
    "already thin": (None, [THIN, "--spacing", "5"], 1, "slices are already 5 mm apart"),
}


def _drop_key(folder: Path, key: str) -> None:
    path = folder / "dataset.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.pop(key)
    path.write_text(json.dumps(meta), encoding="utf-8")


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_one_line_and_write_nothing(raw: Path, capfd, case: str):
    change, args, code, fragment = REFUSALS[case]
    if change is not None:
        change(raw / SOURCE)
    before = snapshot(raw)
    result = _convert(capfd, SOURCE, *args, "--method", "linear")
    assert_one_error(result, code, fragment)
    assert snapshot(raw) == before


def test_channels_on_different_grids_are_refused(tmp_path: Path, capfd):
    source = make_dataset(tmp_path / SOURCE, second_channel="CT", shift=3)
    before = snapshot(tmp_path)
    result = _convert(capfd, source, tmp_path / THIN, "--method", "linear")
    line = assert_one_error(result, 1, "lung_001_0001.nii.gz: its origin differs")
    assert "must share one grid" in line
    assert snapshot(tmp_path) == before


def test_options_for_models_are_refused_with_a_method(raw: Path, capfd):
    result = _convert(capfd, SOURCE, THIN, "--method", "linear", "--tile", "64")
    assert_one_error(result, 2, "apply to models, not to --method")


# --- restore ------------------------------------------------------------------------------


def _threshold(image: sitk.Image) -> sitk.Image:
    """A stand-in segmenter: lung where the CT is below -400 HU."""
    result = sitk.Cast(image < -400, sitk.sitkUInt8)
    result.CopyInformation(image)
    return result


def _predict(thin_dataset: Path, out: Path) -> None:
    """What nnUNetv2_predict writes: CASE.nii.gz per test case (plus json files)."""
    out.mkdir()
    for path in sorted((thin_dataset / "imagesTs").glob("*_0000.nii.gz")):
        name = path.name.replace("_0000", "")
        sitk.WriteImage(_threshold(sitk.ReadImage(str(path))), str(out / name))
    (out / "dataset.json").write_text("{}", encoding="utf-8")


def _assert_on_thick_grid(restored: Path, thick: Path) -> np.ndarray:
    image, reference = sitk.ReadImage(str(restored)), sitk.ReadImage(str(thick))
    assert image.GetSize() == reference.GetSize()
    assert image.GetSpacing() == reference.GetSpacing()
    assert image.GetOrigin() == reference.GetOrigin()
    assert image.GetDirection() == reference.GetDirection()
    return sitk.GetArrayFromImage(image)


@pytest.mark.parametrize("dataset", [THIN, SOURCE])
def test_restore_brings_predictions_onto_the_thick_grid(raw: Path, capfd, dataset: str):
    assert_ok(_convert(capfd, SOURCE, THIN, "--method", "linear"))
    _predict(raw / THIN, Path("predictions_1mm"))
    result = thinct_in_process(
        capfd, "nnunet", "restore", "predictions_1mm", "predictions_5mm", "--dataset", dataset
    )
    assert_ok(result)
    assert "1 restored, 0 skipped" in result.stderr
    assert sorted(p.name for p in Path("predictions_5mm").iterdir()) == ["lung_003.nii.gz"]
    thick = raw / SOURCE / "imagesTs" / "lung_003_0000.nii.gz"
    restored = _assert_on_thick_grid(Path("predictions_5mm/lung_003.nii.gz"), thick)
    expected = sitk.GetArrayFromImage(_threshold(sitk.ReadImage(str(thick))))
    assert np.mean(restored == expected) > 0.95


def test_restoring_converted_labels_gives_the_thick_labels_back(raw: Path, capfd):
    """Nearest neighbour there and a majority vote per slab back: the same labels exactly."""
    assert_ok(_convert(capfd, SOURCE, THIN, "--method", "linear"))
    result = thinct_in_process(
        capfd, "nnunet", "restore", raw / THIN / "labelsTr", "back", "--dataset", THIN, "-q"
    )
    assert_ok(result)
    for name in ("lung_001", "lung_002"):
        thick = raw / SOURCE / "imagesTr" / f"{name}_0000.nii.gz"
        restored = _assert_on_thick_grid(Path("back") / f"{name}.nii.gz", thick)
        original = sitk.ReadImage(str(raw / SOURCE / "labelsTr" / f"{name}.nii.gz"))
        assert np.array_equal(restored, sitk.GetArrayFromImage(original))


def test_restore_finds_a_moved_source_by_name(
    tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch
):
    """The provenance's path is gone once the datasets move together; the source's name in the
    new $nnUNet_raw still finds it, and without $nnUNet_raw the message says what to give."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("nnUNet_raw", raising=False)
    make_dataset(tmp_path / "old" / SOURCE)
    assert_ok(_convert(capfd, f"old/{SOURCE}", f"old/{THIN}", "--method", "linear"))
    (tmp_path / "old").rename(tmp_path / "new")
    _predict(tmp_path / "new" / THIN, Path("predictions_1mm"))
    args = ("nnunet", "restore", "predictions_1mm", "out", "--dataset", f"new/{THIN}")
    assert_one_error(thinct_in_process(capfd, *args), 2, "give the thick dataset with --dataset")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "new"))
    assert_ok(thinct_in_process(capfd, *args))
    _assert_on_thick_grid(
        Path("out/lung_003.nii.gz"), Path(f"new/{SOURCE}/imagesTs/lung_003_0000.nii.gz")
    )


def test_restore_refuses_a_prediction_without_a_thick_scan(raw: Path, capfd):
    assert_ok(_convert(capfd, SOURCE, THIN, "--method", "linear"))
    _predict(raw / THIN, Path("predictions_1mm"))
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), "predictions_1mm/stray.nii.gz")
    result = thinct_in_process(
        capfd, "nnunet", "restore", "predictions_1mm", "out", "--dataset", THIN
    )
    assert_one_error(result, 2, "stray: ", "has no imagesTs/stray_0000.nii.gz")
    assert not Path("out").exists()


# --- the documentation page ---------------------------------------------------------------


def _page_blocks() -> list[tuple[str, str]]:
    """(info string, text) of every fenced block of docs/nnunet.md, in order."""
    text = (ROOT / "docs" / "nnunet.md").read_text(encoding="utf-8")
    return re.findall(r"```([^\n]*)\n(.*?)```", text, flags=re.DOTALL)


def test_every_block_of_the_docs_page_runs(raw: Path, capfd):
    """The page's commands run as written, in order, against the tiny dataset under the
    page's names: `thinct` lines through the entry point, Python blocks executed, the JSON
    block compared with the provenance the first command wrote.

    The block marked ``bash not-run`` holds nnU-Net's own commands (planning, training and
    predicting need nnunetv2 and hours); it is checked to hold only those, and its prediction
    step is stood in for by thresholding the thin test images into predictions_1mm.
    """
    blocks = _page_blocks()
    assert [info for info, _ in blocks].count("bash") >= 3
    for info, text in blocks:
        lines = [shlex.split(line, comments=True) for line in text.splitlines()]
        commands = [words for words in lines if words]
        if info == "bash":
            for words in commands:
                assert words[0] == "thinct", words
                assert_ok(thinct_in_process(capfd, *words[1:]))
        elif info == "bash not-run":
            assert all(words[0].startswith("nnUNetv2_") for words in commands), text
            _predict(raw / THIN, Path("predictions_1mm"))
        elif info == "python":
            namespace: dict = {}
            exec(compile(text, "docs/nnunet.md", "exec"), namespace)
            assert "3 cases converted" in capfd.readouterr().out
        elif info == "json":
            _check_documented_provenance(json.loads(text)["thinct"], raw)
        else:
            pytest.fail(f"docs/nnunet.md has a ```{info} block that no test runs")
    restored = _assert_on_thick_grid(
        Path("predictions_5mm/lung_003.nii.gz"),
        raw / SOURCE / "imagesTs" / "lung_003_0000.nii.gz",
    )
    assert set(np.unique(restored)) == {0, 1}
    thick = sitk.ReadImage(str(raw / SOURCE / "imagesTr" / "lung_001_0000.nii.gz"))
    by_model = sitk.ReadImage(str(raw / THIN / "imagesTr" / "lung_001_0000.nii.gz"))
    assert Grid.of(by_model) == thin_grid(Grid.of(thick)).grid
    assert by_model.GetPixelID() == sitk.sitkInt16
    assert (raw / "Dataset504_LungCTBspline" / "dataset.json").is_file()
    meta = json.loads((raw / "Dataset503_LungCTLinear" / "dataset.json").read_text("utf-8"))
    assert meta["thinct"]["method"] == "linear" and meta["thinct"]["factor"] == 5


def _check_documented_provenance(documented: dict, raw: Path) -> None:
    """The page shows what the default model's conversion records (the path and version are
    the page's examples)."""
    meta = json.loads((raw / THIN / "dataset.json").read_text(encoding="utf-8"))
    written = meta["thinct"]
    assert list(documented) == list(written)
    assert documented["source"]["dataset"] == written["source"]["dataset"]
    for key in set(written) - {"version", "source"}:
        assert documented[key] == written[key], key
    from thinct.models.storage import recorded_sha256

    card = ROOT / "src" / "thinct" / "weights" / DEFAULT_MODEL
    assert written["weights_sha256"] == recorded_sha256(card)


# --- nnU-Net's own check ------------------------------------------------------------------


@pytest.mark.slow
def test_nnunet_accepts_a_converted_dataset(tmp_path: Path, capfd):
    """nnU-Net's dataset-integrity check (labels, shapes, spacings, origins, directions) on a
    converted dataset with two channels; needs nnunetv2, which thinct does not depend on."""
    try:
        from nnunetv2.experiment_planning.verify_dataset_integrity import (
            verify_dataset_integrity,
        )
    except ImportError:
        pytest.skip("nnunetv2 is not installed (pip install nnunetv2)")
    source = make_dataset(tmp_path / SOURCE, second_channel="noNorm")
    assert_ok(_convert(capfd, source, tmp_path / THIN, "--method", "linear"))
    verify_dataset_integrity(str(tmp_path / THIN), num_processes=1)
    out = capfd.readouterr().out
    assert "verify_dataset_integrity Done" in out, out
    assert "Error" not in out and "Warning" not in out, out
