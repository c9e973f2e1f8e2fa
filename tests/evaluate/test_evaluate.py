"""`thinct evaluate` and its engine: methods side by side on real scans, the CSV, the markdown
summary and the figures, and the command line's refusals."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.cli import assert_one_error, show, thinct_in_process
from helpers.paths import EXAMPLES, ROOT, shared_scan
from PIL import Image

from thinct.errors import UsageError
from thinct.evaluate.cases import Simulation, parse_slices
from thinct.evaluate.report import figure_name, read_results, summary_markdown
from thinct.evaluate.run import plan_evaluation, run_evaluation
from thinct.evaluate.scoring import COLUMNS
from thinct.reporting import Reporter

THIN = EXAMPLES / "lidc0002_crop_1.25mm.nii.gz"
THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"
CASE = "lidc0002_crop_1.25mm"


def _evaluate(inputs, out: Path, **options):
    """Plan and run an evaluation in this process, quietly; returns (results, failures)."""
    evaluation = plan_evaluation([str(i) for i in inputs], out, **options)
    with Reporter(quiet=True) as reporter:
        return run_evaluation(evaluation, reporter)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def example_report(tmp_path_factory) -> tuple[Path, list]:
    """B-spline and linear interpolation on the example crop (thick slices simulated from
    its real 1.25 mm slices), with a figure."""
    out = tmp_path_factory.mktemp("evaluate") / "report"
    results, failures = _evaluate([THIN], out, methods=["bspline", "linear"])
    assert failures == []
    return out, results


def test_bspline_beats_linear_on_the_real_example(example_report):
    _, results = example_report
    assert [(r.case, r.method) for r in results] == [(CASE, "bspline"), (CASE, "linear")]
    bspline, linear = results
    assert 33 < linear.psnr < bspline.psnr < 38
    assert 0.9 < linear.ssim < bspline.ssim < 1
    assert linear.lung_psnr < bspline.lung_psnr < bspline.psnr
    assert 0 < bspline.frangi < linear.frangi < 1
    assert 0 < bspline.smse < linear.smse
    assert 0 < linear.vif < bspline.vif < 1
    assert 0.5 < linear.cldice < bspline.cldice < 1
    assert isinstance(bspline.component_diff, int)
    # 64 slices of 1.25 mm are 63 * 1.25 / 1 + 1 = 79 slices of 1 mm, 15 whole 5 mm slabs.
    assert bspline.slices == linear.slices == 75
    assert bspline.seconds > 0 and linear.seconds > 0


def test_lung_density_bias_of_smoothing_methods_is_small_and_signed(example_report):
    _, results = example_report
    bspline, linear = results
    for result in results:
        # Along z, interpolation spreads the vessels' density into the parenchyma around
        # them and fills in the lowest densities: lung HU rises and LAA-950 drops, by less
        # for the sharper B-spline.
        assert 0 < result.lung_hu_bias < 20
        assert result.laa950_bias < 0
    assert bspline.lung_hu_bias < linear.lung_hu_bias
    assert linear.laa950_bias < bspline.laa950_bias


def test_consistency_scores_each_method_again_after_the_projection(tmp_path):
    results, failures = _evaluate([THIN], tmp_path / "r", methods=["linear"], consistency="boxcar")
    assert failures == []
    assert [r.method for r in results] == ["linear", "linear+boxcar"]
    plain, consistent = results
    assert consistent.psnr > plain.psnr
    summary = (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    assert "| linear+boxcar |" in summary and "LAA-950 bias" in summary


def test_results_csv_has_one_row_per_case_and_method(example_report):
    out, results = example_report
    with open(out / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == COLUMNS
    assert COLUMNS == (
        "case",
        "method",
        "psnr",
        "ssim",
        "lung_psnr",
        "vif",
        "frangi",
        "smse",
        "cldice",
        "component_diff",
        "lung_hu_bias",
        "laa950_bias",
        "seconds",
        "slices",
    )
    assert [(row["case"], row["method"]) for row in rows] == [(CASE, "bspline"), (CASE, "linear")]
    back = read_results(out / "results.csv")
    for read, kept in zip(back, results, strict=True):
        assert read.psnr == pytest.approx(kept.psnr, abs=1e-4)
        assert read.frangi == pytest.approx(kept.frangi, abs=1e-5)
        assert read.vif == pytest.approx(kept.vif, abs=1e-5)
        assert read.smse == pytest.approx(kept.smse, abs=1e-5)
        assert read.cldice == pytest.approx(kept.cldice, abs=1e-5)
        assert read.component_diff == kept.component_diff
        assert read.slices == kept.slices


def test_summary_tables_the_means_and_the_difference_to_bspline(example_report):
    out, results = example_report
    text = (out / "summary.md").read_text(encoding="utf-8")
    bspline, linear = results
    assert "1 case, 2 methods: thin scans resampled to 1 mm, thick scans of 5 mm boxcar" in text
    assert f"| bspline | 1 | **{bspline.psnr:.2f}** | **{bspline.ssim:.4f}** |" in text
    header = next(line for line in text.splitlines() if line.startswith("| method | cases |"))
    for title in ("VIF", "SMSE (lower is better)", "clDice", "components vs reference"):
        assert f"| {title} |" in header
    assert f"**{bspline.vif:.4f}** | **{bspline.frangi:.4f}** | **{bspline.smse:.3f}**" in text
    assert "clDice: centreline Dice" in text and "torchmetrics" in text
    assert f"| linear | 1 | {linear.psnr:.2f} |" in text
    difference = f"{linear.psnr - bspline.psnr:.2f}"
    assert difference.startswith("-")
    assert f"| linear | {difference} |" in text and "| 0 of 1 |" in text
    assert f"[{CASE}](figures/{CASE}.png)" in text
    assert not list(out.rglob(".*"))  # no staging files left


def test_figure_is_a_png_a_person_can_look_at(example_report):
    out, _ = example_report
    path = out / "figures" / f"{CASE}.png"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        grey = np.asarray(image.convert("L"), dtype=float)
    # Five columns (input, 2 methods, reference, error); four rows of physical proportions:
    # axial, its structure map, coronal, sagittal.
    assert 1200 < width < 2400 and 900 < height < 2000
    assert grey.std() > 20  # images, not an empty canvas


def test_summary_without_bspline_has_no_difference_table(example_report):
    _, results = example_report
    text = summary_markdown([r for r in results if r.method == "linear"], "test")
    assert "Difference to bspline" not in text and "| linear | 1 |" in text


def test_a_model_is_evaluated_beside_an_interpolation(tmp_path):
    """An untrained small CTHNet (a correction to linear interpolation that starts at zero) on
    a 64 x 64 in-plane crop of the example: its own row, and the figure's error column."""
    from thinct.models import create_model, save_model

    image = sitk.ReadImage(str(THIN))
    crop = tmp_path / "crop.nii.gz"
    sitk.WriteImage(sitk.RegionOfInterest(image, [64, 64, 48], [96, 64, 8]), str(crop))
    folder = save_model(create_model("cthnet-small"), tmp_path / "small-model")
    results, failures = _evaluate(
        [crop], tmp_path / "report", methods=["linear"], models=[str(folder)]
    )
    assert failures == []
    assert [r.method for r in results] == ["linear", "small-model"]
    linear, model = results
    assert model.slices == linear.slices == 55
    assert model.psnr == pytest.approx(linear.psnr, abs=0.5)
    text = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert "| small-model |" in text
    assert (tmp_path / "report" / "figures" / "crop.png").is_file()


def test_paired_scans_of_a_layout_are_evaluated_on_their_own_grid(tmp_path):
    """The rplhr layout with the example pair: the reference stays on its real 1.25 mm grid."""
    root = tmp_path / "dataset"
    for sub, source in (("1mm", THIN), ("5mm", THICK)):
        (root / "test" / sub).mkdir(parents=True)
        shutil.copy(source, root / "test" / sub / "lidc.nii.gz")
    results, failures = _evaluate(
        [root], tmp_path / "report", methods=["linear", "nearest"], layout="rplhr", figures=False
    )
    assert failures == []
    assert [(r.case, r.method) for r in results] == [("lidc", "linear"), ("lidc", "nearest")]
    assert results[0].slices == 64
    assert results[0].psnr > results[1].psnr > 30
    assert "paired scans, rplhr layout, test split" in (
        tmp_path / "report" / "summary.md"
    ).read_text(encoding="utf-8")
    assert not (tmp_path / "report" / "figures").exists()


def test_cli_plans_without_torch_and_never_touches_its_input(tmp_path):
    """A real process: planning an evaluation of baselines (every check of the request) does
    not import torch, which only the scoring loads (VIF, the structure operator); the input
    stays as it was."""
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(THIN, scans / "a.nii.gz")
    before = _sha256(scans / "a.nii.gz")
    report = str(tmp_path / "report")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from thinct.cli.app import main\n"
        "from thinct.evaluate.run import plan_evaluation\n"
        f"plan_evaluation([{str(scans)!r}], Path({report!r}), methods=['linear'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "try:\n"
        f"    main(['evaluate', {str(scans)!r}, '--out', {report!r}, "
        "'-m', 'linear', '-m', 'nearest', '--slices', '0.2:0.8', '--no-figures', '--quiet'])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "error" not in done.stderr
    results = read_results(tmp_path / "report" / "results.csv")
    assert [(r.case, r.method) for r in results] == [("a", "linear"), ("a", "nearest")]
    # 0.2 to 0.8 of 64 slices: slices 13 to 51, 38 of 1.25 mm: 47.5 mm, 9 slabs of 5 mm.
    assert results[0].slices == 45
    assert results[0].psnr > results[1].psnr
    assert all(0 < r.vif < 1 and 0 < r.cldice < 1 for r in results)
    assert _sha256(scans / "a.nii.gz") == before
    assert sorted(p.name for p in scans.iterdir()) == ["a.nii.gz"]


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["missing.nii.gz"], ["missing.nii.gz", "no such file"]),
        ([str(THIN), "--slices", "0.8:0.2"], ["--slices", "0.8:0.2"]),
        ([str(THIN), "--slices", "half"], ["--slices must be START:STOP"]),
        ([str(THIN), "--thickness", "5", "--spacing", "2"], ["whole multiple"]),
        ([str(THIN), "--thickness", "-5"], ["--thickness must be a positive"]),
        ([str(THIN), "--fwhm", "3"], ["--fwhm only applies to --profile gaussian"]),
        ([str(THIN), "--device", "cpu"], ["--device and --precision apply to models"]),
        ([str(THIN), "--layout", "rplhr", "--thickness", "3"], ["not to --layout"]),
        ([str(THIN), "--method", "cubic"], ["'cubic'"]),
        ([str(THIN), "--window", "brain"], ["'brain'"]),
    ],
)
def test_cli_usage_errors_are_one_line_and_exit_2(
    tmp_path, monkeypatch, capfd, arguments, fragments
):
    monkeypatch.chdir(tmp_path)
    method = [] if "--method" in arguments else ["--method", "linear"]
    result = thinct_in_process(capfd, "evaluate", *arguments, "--out", "report", *method)
    assert_one_error(result, 2, *fragments)
    assert not (tmp_path / "report").exists()


def test_cli_refuses_to_replace_a_report_without_overwrite(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "results.csv").write_text("case,method\n")
    (tmp_path / "report" / "notes.txt").write_text("mine")
    result = thinct_in_process(capfd, "evaluate", THIN, "--out", "report", "-m", "linear")
    assert_one_error(result, 2, "report holds a report (results.csv)", "--overwrite")
    assert (tmp_path / "report" / "results.csv").read_text(encoding="utf-8") == "case,method\n"
    (tmp_path / "afile").write_text("x")
    result = thinct_in_process(capfd, "evaluate", THIN, "--out", "afile", "-m", "linear")
    assert_one_error(result, 2, "afile is a file")


def test_cli_overwrite_replaces_the_report_and_keeps_other_files(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    (report / "results.csv").write_text("old\n")
    (report / "figures" / "stale.png").write_bytes(b"old")
    (report / "notes.txt").write_text("mine")
    arguments = [THIN, "--out", "report", "-m", "nearest", "--slices", "0.3:0.7", "--no-figures"]
    result = thinct_in_process(capfd, "evaluate", *arguments, "--overwrite", "--quiet")
    assert result.returncode == 0, show(result)
    assert [r.method for r in read_results(report / "results.csv")] == ["nearest"]
    assert not (report / "figures" / "stale.png").exists()
    assert (report / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_cli_prints_and_writes_the_structure_scores(tmp_path, monkeypatch, capfd):
    """Each case's line names VIF and clDice beside PSNR; the CSV has every column."""
    monkeypatch.chdir(tmp_path)
    arguments = [THIN, "--out", "report", "-m", "nearest", "--slices", "0.3:0.7", "--no-figures"]
    result = thinct_in_process(capfd, "evaluate", *arguments)
    assert result.returncode == 0, show(result)
    (row,) = read_results(tmp_path / "report" / "results.csv")
    line = f"nearest {row.psnr:.2f} dB, VIF {row.vif:.3f}, clDice {row.cldice:.3f}"
    assert line in result.stderr
    with open(tmp_path / "report" / "results.csv", newline="") as stream:
        assert tuple(next(csv.reader(stream))) == COLUMNS


def test_cli_reports_a_thick_scan_given_as_thin_and_exits_1(tmp_path, monkeypatch, capfd):
    """Thick slices cannot be simulated from a 5 mm scan: that case fails in one line (and
    the report says so), the command exits 1."""
    monkeypatch.chdir(tmp_path)
    result = thinct_in_process(
        capfd, "evaluate", THICK, "--out", "report", "-m", "linear", "--quiet"
    )
    assert_one_error(result, 1, "lidc0002_crop_5mm.nii.gz", "slices are 5 mm apart", "--layout")
    summary = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert "## Failed cases" in summary and "slices are 5 mm apart" in summary


def test_slices_and_figure_names_parse_and_refuse():
    assert parse_slices(None) == (0.0, 1.0)
    assert parse_slices("0.25:0.75") == (0.25, 0.75)
    assert parse_slices(":0.5") == (0.0, 0.5)
    assert parse_slices("0.5:") == (0.5, 1.0)
    for bad in ("0.5", "1:2", "a:b", "0.5:0.5", "nan:1"):
        with pytest.raises(UsageError):
            parse_slices(bad)
    with pytest.raises(UsageError, match="whole multiple"):
        Simulation(thickness=5, spacing=1.5).check()
    assert figure_name("sub/dir/case 1") == "sub_dir_case_1.png"


@pytest.mark.slow
def test_a_whole_real_scan_is_evaluated(tmp_path):
    """A full thin chest scan from ../shared: the B-spline beats linear interpolation, also
    on VIF, SMSE and the vessel tree's clDice."""
    scan = shared_scan("lidc0002_c2c_1.25mm.nii.gz")
    results, failures = _evaluate([scan], tmp_path / "report", methods=["bspline", "linear"])
    assert failures == []
    bspline, linear = results
    assert bspline.psnr > linear.psnr and bspline.frangi < linear.frangi
    assert bspline.smse < linear.smse and bspline.vif > linear.vif
    assert bspline.cldice > linear.cldice
    assert (tmp_path / "report" / "figures" / "lidc0002_c2c_1.25mm.png").is_file()


def test_the_python_examples_of_the_evaluation_page_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "evaluate.md").read_text(encoding="utf-8")
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        exec(compile(block, "docs/evaluate.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("{'bspline': 35.") and "'linear': 34." in printed[0]
    assert (tmp_path / "report" / "figures" / f"{CASE}.png").is_file()
    assert printed[1].startswith("PSNR ") and printed[4].startswith("Frangi ")
    assert printed[5].startswith("SMSE ") and printed[6].startswith("VIF 0.")
    # Noise of 20 HU leaves the one straight vessel whole.
    assert printed[7] == "clDice 1.000, components +0"
