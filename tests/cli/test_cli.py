"""The `thinct` command line, run as a real subprocess so exit codes, stdout and stderr are
the ones a user or a pipeline sees.

Rules under test: help and version; `upsample` grids for both alignments, --spacing and
--factor, and that --method matters; `simulate` grids; `info` text and JSON on stdout; stdout
left empty by upsample/simulate; exit codes 0 (ok), 1 (processing failure), 2 (usage error);
every bad input gives one "error:" line, no traceback and no output, and never touches the input.

`thinct upsample` runs the default model unless --method is given (test_cli_model.py tests the
models). The runs here are about grids, formats, streams and mistakes, which every method
shares: they interpolate (`--method bspline`), which needs no torch and starts at once.

Independent runs of a family (the grids, the bad inputs) are started side by side by
module-scoped fixtures (`run_family`), each in its own folder; the tests then check one run
each. Runs that end before any scan is processed (help, parser errors, impossible options,
outputs that must not be written) call the entry point `thinct.cli.app.main` in this process,
which is much faster; each kind also keeps at least one real subprocess run.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import typer
from helpers.cli import (
    Done,
    assert_ok,
    assert_one_error,
    ct_array,
    outcome,
    read,
    run_concurrently,
    run_family,
    show,
    snapshot,
    staging_left,
    stderr_lines,
    thinct,
    thinct_in_process,
    voxels,
    write_dicom,
    write_long_scan,
    write_scan,
)
from helpers.volumes import make_image, rotation

import thinct as thinct_package
from thinct.cli.app import app, main

OBLIQUE = rotation(20, -15, 30)
IN_PLANE = (28, 24)  # x, y size of the synthetic scans of helpers.cli.ct_array


@pytest.fixture(autouse=True)
def _no_staging_left(tmp_path: Path):
    """No run may leave the atomic writer's hidden staging folders behind."""
    yield
    assert staging_left(tmp_path) == []


def _origin_along_slices(image: sitk.Image, offset_mm: float) -> np.ndarray:
    """The world position ``offset_mm`` along the slice axis (index z) from the image origin."""
    normal = np.reshape(image.GetDirection(), (3, 3))[:, 2]
    return np.asarray(image.GetOrigin()) + offset_mm * normal


def _finished(runs: dict[str, Done | BaseException], name: str) -> Done:
    """One run of a family, checked for what every run must respect."""
    done = outcome(runs, name)
    assert staging_left(done.folder) == [], show(done.result)
    return done


@pytest.fixture
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in ``tmp_path`` for `thinct_in_process`, with the wide, colourless terminal that
    `helpers.cli.thinct` gives a subprocess."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


# --- version and help -------------------------------------------------------------------

COMMANDS = ("upsample", "simulate", "info", "convert", "evaluate", "train")


def test_help_lists_every_command_in_a_real_process(tmp_path: Path):
    result = thinct("--help", cwd=tmp_path)
    assert result.returncode == 0, show(result)
    for word in (*COMMANDS, "--version"):
        assert word in result.stdout
    assert result.stderr == ""


def test_commands_without_a_model_never_load_torch(
    tmp_path: Path, example_thick: Path, example_thin: Path
):
    """torch takes seconds to import: `import thinct`, --help, --version, `info`, `simulate`
    and `upsample --method` must not pay for it (it loads with the first model: `upsample`
    without --method runs the default model)."""
    script = f"""
import sys, thinct
from thinct.cli.app import main

def run(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as done:
        assert done.code in (0, None), (args, done.code)

run("--version")
run("--help")
run("upsample", "--help")
run("info", {str(example_thick)!r}, "--json")
run("simulate", {str(example_thin)!r}, "thick.nii.gz", "--quiet")
run("upsample", {str(example_thick)!r}, "thin.nii.gz", "--method", "linear", "--quiet")
assert "torch" not in sys.modules, "torch was imported"
thinct.load_model
assert "torch" in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thick.nii.gz").is_file() and (tmp_path / "thin.nii.gz").is_file()


def test_version_prints_the_package_version_on_stdout(in_tmp_path, capfd):
    result = thinct_in_process(capfd, "--version")
    assert result.returncode == 0, show(result)
    assert result.stdout.strip() == f"thinct {thinct_package.__version__}"
    assert result.stderr == ""


EXPECTED_OPTIONS = {
    "upsample": [
        "--method",
        "--spacing",
        "--factor",
        "--align",
        "--overwrite",
        "--quiet",
        "--dtype",
        "--series",
        "--model",
        "--device",
        "--precision",
        "--tile",
        "--tile-overlap",
        "--z-overlap",
        "--batch-size",
    ],
    "simulate": [
        "--thickness",
        "--increment",
        "--profile",
        "--fwhm",
        "--overwrite",
        "--quiet",
        "--dtype",
        "--series",
    ],
    "info": ["--json", "--series"],
    "convert": ["--overwrite", "--quiet"],
    "evaluate": [
        "--out",
        "--method",
        "--model",
        "--layout",
        "--split",
        "--thickness",
        "--spacing",
        "--profile",
        "--fwhm",
        "--slices",
        "--figures",
        "--window",
        "--device",
        "--precision",
        "--overwrite",
        "--quiet",
    ],
    "train": ["--config", "--resume", "--quiet"],
}
# Choices and defaults the help must state (whitespace-normalised help text).
EXPECTED_WORDS = {
    "upsample": [
        "nearest",
        "linear",
        "lanczos",
        "default: the shipped thickgrid",
        "centers",
        "default: edges",
        "default 1.0",
        "int16",
        "float32",
        "IN... OUT",
        "default: auto",
        "cuda",
        "bf16",
        "default: fp32",
    ],
    "simulate": ["boxcar", "gaussian", "default: 5.0", "int16", "float32", "IN... OUT"],
    "info": ["FILE", "JSON"],
    "convert": ["OFFICIAL", "FOLDER", "none of its code"],
    "evaluate": [
        "SCAN_OR_FOLDER...",
        "REPORT_DIR",
        "bspline",
        "rplhr",
        "cthnet",
        "soft-tissue",
        "default: lung",
        "default: test",
    ],
    "train": ["FILE.yaml", "--resume", "torchrun --nproc_per_node 2 -m thinct train"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_documents_every_option(in_tmp_path, capfd, command: str):
    result = thinct_in_process(capfd, command, "--help")
    assert result.returncode == 0, show(result)
    assert result.stderr == ""
    text = " ".join(result.stdout.split())
    click_command = typer.main.get_command(app).commands[command]
    options = [p for p in click_command.params if p.param_type_name == "option"]
    declared = {name for option in options for name in option.opts}
    assert set(EXPECTED_OPTIONS[command]) <= declared
    for option in options:
        assert option.help, f"{option.opts} has no help text"
        for name in option.opts:
            assert name in result.stdout, f"{name} missing from `thinct {command} --help`"
    for words in EXPECTED_WORDS[command]:
        assert words in text, f"{words!r} missing from `thinct {command} --help`"


# --- upsample ---------------------------------------------------------------------------

# The interpolation that the runs below use (see the module docstring).
BSPLINE = ["--method", "bspline"]

# 8 thick slices of 5 mm (40 mm of slabs): options, thin slices, thin spacing, and where the
# first thin slice sits relative to the first thick slice centre, in mm along the slice axis.
UPSAMPLE_GRIDS = {
    "default-1mm-edges": ([], 40, 1.0, -2.0),
    "centers": (["--align", "centers"], 36, 1.0, 0.0),
    "factor4-edges": (["--factor", "4", "--align", "edges"], 32, 1.25, -1.875),
    "factor4-centers": (["--factor", "4", "--align", "centers"], 29, 1.25, 0.0),
    "spacing1.5-edges": (["--spacing", "1.5"], 26, 1.5, -1.25),
    "spacing1.5-centers": (["--spacing", "1.5", "--align", "centers"], 24, 1.5, 0.0),
}


def _upsample_oblique(options: list[str]) -> Callable[[Path], list[object]]:
    def setup(folder: Path) -> list[object]:
        write_scan(folder / "thick.nii.gz", direction=OBLIQUE)
        return ["upsample", "thick.nii.gz", "thin.nii.gz", *BSPLINE, *options]

    return setup


@pytest.fixture(scope="module")
def grid_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | BaseException]:
    cases = {name: _upsample_oblique(case[0]) for name, case in UPSAMPLE_GRIDS.items()}
    return run_family(tmp_path_factory.mktemp("grids"), cases)


@pytest.mark.parametrize("name", UPSAMPLE_GRIDS)
def test_upsample_writes_the_thin_grid(grid_runs, name: str):
    _, slices, spacing, offset = UPSAMPLE_GRIDS[name]
    done = _finished(grid_runs, name)
    assert_ok(done.result)
    assert stderr_lines(done.result) == ["wrote thin.nii.gz"]
    source, target = done.folder / "thick.nii.gz", done.folder / "thin.nii.gz"
    assert snapshot(done.folder)["thick.nii.gz"] == done.before["thick.nii.gz"]
    thick, thin = read(source), read(target)
    assert thin.GetSize() == (*IN_PLANE, slices)
    assert np.allclose(thin.GetSpacing(), (*thick.GetSpacing()[:2], spacing))
    assert np.allclose(thin.GetDirection(), thick.GetDirection(), atol=1e-5)
    assert np.allclose(thin.GetOrigin(), _origin_along_slices(thick, offset), atol=1e-3)
    assert thin.GetPixelID() == sitk.sitkInt16  # the default --dtype


def test_upsample_example_by_four_lands_on_the_original_thin_grid(
    tmp_path: Path, example_thick: Path, example_thin: Path
):
    """The 5 mm example was simulated from the 1.25 mm one; --factor 4 (edges) must give back
    exactly the thin scan's grid, and values close to it."""
    target = tmp_path / "thin.nii.gz"
    assert_ok(thinct("upsample", example_thick, target, "--factor", "4", *BSPLINE))
    thin, truth = read(target), read(example_thin)
    assert thin.GetSize() == truth.GetSize() == (192, 192, 64)
    assert np.allclose(thin.GetSpacing(), truth.GetSpacing(), atol=1e-6)
    assert np.allclose(thin.GetOrigin(), truth.GetOrigin(), atol=1e-3)
    assert np.allclose(thin.GetDirection(), truth.GetDirection(), atol=1e-6)
    error = np.abs(voxels(target).astype(float) - voxels(example_thin))
    assert np.median(error) < 60  # interpolated, so close to the truth but not equal


def test_method_changes_the_result_and_keeps_the_thick_slices(tmp_path: Path):
    """With centred alignment and --factor 4, every 4th thin slice sits on a thick slice
    centre, where every method must return the thick slice; between them they differ.
    (Without --method a model runs: test_cli_model.py.)"""
    source = write_scan(tmp_path / "thick.mha")
    thick = voxels(source).astype(np.float32)
    grid = ["--factor", "4", "--align", "centers", "--dtype", "float32"]
    methods = ("nearest", "linear", "bspline", "lanczos")
    runs = run_concurrently(
        {
            method: (
                lambda m=method: thinct(
                    "upsample", source, tmp_path / f"{m}.nii.gz", *grid, "--method", m
                )
            )
            for method in methods
        }
    )
    results = {}
    for name in runs:
        assert_ok(outcome(runs, name))
        target = tmp_path / f"{name}.nii.gz"
        assert read(target).GetPixelID() == sitk.sitkFloat32
        results[name] = voxels(target)

    for name, thin in results.items():
        assert thin.shape == (29, 24, 28)
        assert np.allclose(thin[::4], thick, atol=1e-2), name
    for first, second in itertools.combinations(methods, 2):
        difference = np.abs(results[first] - results[second]).max()
        assert difference > 10, f"--method {first} and {second} give the same result"
    assert set(np.unique(results["nearest"])) <= set(np.unique(thick))
    assert np.allclose(results["linear"][2], (thick[0] + thick[1]) / 2, atol=1e-2)


# Outputs by extension (no extension: a DICOM series folder), other runs that succeed, and
# what each must have written: name -> (setup, output, slices of the output).
def _upsample_to(output: str, *options: str) -> Callable[[Path], list[object]]:
    def setup(folder: Path) -> list[object]:
        write_scan(folder / "thick.nii.gz", direction=OBLIQUE)
        return ["upsample", "thick.nii.gz", output, *BSPLINE, *options]

    return setup


def _upsample_dicom_input(folder: Path) -> list[object]:
    write_dicom(folder / "series")
    return ["upsample", "series", "thin.nii.gz", *BSPLINE]


def _upsample_photo(folder: Path) -> list[object]:
    array = np.tile(np.arange(0, 256, 10, dtype=np.int16), (6, 24, 1))[:, :, :24]
    write_scan(folder / "photo.nii.gz", array)
    return ["upsample", "photo.nii.gz", "thin.nii.gz", *BSPLINE, "--quiet"]


SUCCESSES = {
    "to-nii": (_upsample_to("thin.nii"), "thin.nii", 40),
    "to-nrrd": (_upsample_to("thin.nrrd"), "thin.nrrd", 40),
    "to-mhd": (_upsample_to("thin.mhd"), "thin.mhd", 40),
    "to-dicom": (_upsample_to("thin"), "thin", 40),
    "from-dicom": (_upsample_dicom_input, "thin.nii.gz", 40),
    "new-folders-quiet": (
        _upsample_to("new/deeper/thin.nii.gz", "--quiet"),
        "new/deeper/thin.nii.gz",
        40,
    ),
    "not-hu": (_upsample_photo, "thin.nii.gz", 30),
}


@pytest.fixture(scope="module")
def success_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | BaseException]:
    cases = {name: case[0] for name, case in SUCCESSES.items()}
    return run_family(tmp_path_factory.mktemp("successes"), cases)


@pytest.mark.parametrize("name", [n for n in SUCCESSES if n.startswith(("to-", "from-"))])
def test_upsample_reads_and_writes_every_format(success_runs, name: str):
    done = _finished(success_runs, name)
    assert_ok(done.result)
    output = done.folder / SUCCESSES[name][1]
    assert output.is_dir() == (name == "to-dicom")
    thin = read(output)
    assert thin.GetSize() == (*IN_PLANE, 40)
    assert np.allclose(thin.GetSpacing(), (0.7, 0.7, 1.0), atol=1e-5)
    if name != "from-dicom":
        thick = read(done.folder / "thick.nii.gz")
        assert np.allclose(thin.GetOrigin(), _origin_along_slices(thick, -2.0), atol=1e-3)
        assert np.allclose(thin.GetDirection(), thick.GetDirection(), atol=1e-5)


def test_missing_output_folders_are_created_and_quiet_prints_nothing(success_runs):
    done = _finished(success_runs, "new-folders-quiet")
    assert_ok(done.result)
    assert done.result.stderr == ""
    assert read(done.folder / "new" / "deeper" / "thin.nii.gz").GetSize() == (*IN_PLANE, 40)


def test_intensities_that_are_not_hu_warn_but_succeed(success_runs):
    """A 0-255 export: one warning line even with --quiet, and the output is written."""
    done = _finished(success_runs, "not-hu")
    assert_ok(done.result)
    lines = stderr_lines(done.result)
    assert len(lines) == 1 and lines[0].startswith("warning: "), show(done.result)
    assert "Hounsfield" in lines[0] and "photo.nii.gz" in lines[0]
    assert read(done.folder / "thin.nii.gz").GetSize() == (24, 24, 30)


def test_overwrite_replaces_existing_outputs(tmp_path: Path):
    """--overwrite replaces a file and a whole DICOM series folder (no stale slices left)."""
    source = write_scan(tmp_path / "thick.nii.gz")
    original = source.read_bytes()
    write_scan(tmp_path / "thin.nii.gz", ct_array(slices=3))
    series = write_dicom(tmp_path / "series", ct_array(slices=3))
    (series / "stale.txt").write_text("from the old series")

    runs = run_concurrently(
        {
            output: (
                lambda o=output: thinct("upsample", source, tmp_path / o, *BSPLINE, "--overwrite")
            )
            for output in ("thin.nii.gz", "series")
        }
    )

    for output in ("thin.nii.gz", "series"):
        assert_ok(outcome(runs, output))
        assert read(tmp_path / output).GetSize() == (*IN_PLANE, 40)
    assert sorted(p.name for p in series.iterdir()) == [f"IM{k:05d}.dcm" for k in range(1, 41)]
    assert source.read_bytes() == original


def _read_terminal(primary: int) -> str:
    """Everything written to a pseudo-terminal until the process on it exits."""
    terminal = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the process exited and closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(primary)
    return terminal.decode(errors="replace")


def _on_a_terminal(
    args: list[object], cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `thinct ARGS` with stderr on a pseudo-terminal (stdout stays a pipe); returns the
    process and the terminal's primary side, for `_read_terminal`."""
    import pty

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "thinct", *(str(a) for a in args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=secondary,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )
    os.close(secondary)
    return process, primary


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_progress_on_a_terminal_goes_to_stderr(tmp_path: Path):
    """On a terminal the progress bar is drawn, on stderr only: stdout stays pipeable."""
    source = write_scan(tmp_path / "thick.nii.gz")
    process, primary = _on_a_terminal(["upsample", source, "thin.nii.gz", *BSPLINE], tmp_path)
    text = _read_terminal(primary)
    stdout = process.stdout.read()
    process.stdout.close()
    assert process.wait(timeout=60) == 0, text
    assert stdout == b""
    assert "upsampling thick.nii.gz" in text  # the progress bar's label
    assert "wrote " in text and "Traceback" not in text
    assert read(tmp_path / "thin.nii.gz").GetSize() == (*IN_PLANE, 40)


_BAR_FRAME = re.compile(r"upsampling \S+ \S+ +(\d+)% (\d+:\d\d:\d\d) (-:--:--|\d+:\d\d:\d\d)")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_the_progress_bar_advances_with_the_model_windows_and_shows_the_time_left(
    tmp_path: Path, example_thick: Path
):
    """The default model runs the example (16 thick slices) as three windows of slices: the
    bar shows each one done, with the time elapsed and an estimate of the time left."""
    process, primary = _on_a_terminal(
        ["upsample", example_thick, "thin.nii.gz", "--device", "cpu"], tmp_path
    )
    text = _ESCAPES.sub("", _read_terminal(primary))
    process.stdout.close()
    assert process.wait(timeout=120) == 0, text
    frames = _BAR_FRAME.findall(text)
    percents = {int(percent) for percent, _, _ in frames}
    assert percents & set(range(1, 100)), text  # a window done, not only 0 % and 100 %
    assert any(left != "-:--:--" for _, _, left in frames), text


def _feed_and_stop_short(fifo: Path, data: bytes, process: subprocess.Popen[bytes]) -> None:
    """Once the process opens ``fifo`` to read, give it ``data``, wait, and close: a file that
    arrives slowly and ends early."""
    while process.poll() is None:
        try:
            descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.01)
            continue
        os.set_blocking(descriptor, True)
        try:
            os.write(descriptor, data)
            time.sleep(1.0)  # ten redraws of the progress bar while ITK waits for the rest
        finally:
            os.close(descriptor)
        return


_PROGRESS_GLYPHS = re.compile("[\u2800-\u28ff\u2501]")  # the spinner's braille, the bar's ━
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal and a FIFO")
def test_progress_bar_stays_out_of_itk_messages(tmp_path: Path):
    """While ITK reads, thinct captures descriptor 2 to explain a failure with ITK's own words,
    and rich's thread keeps redrawing the progress bar. The bar must reach the terminal, not
    the captured text, or the error line is garbled by it.

    The truncated MetaImage's data comes through a FIFO that stops short after a second, so
    the bar is redrawn while ITK waits; FORCE_COLOR (which CI systems often set) makes rich
    draw even when descriptor 2 is not a terminal, as it is not while it is captured.
    """
    (tmp_path / "cut.mha").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "ElementSpacing = 0.7 0.7 5\nDimSize = 28 24 8\nElementType = MET_SHORT\n"
        "ElementDataFile = cut.raw\n"
    )
    os.mkfifo(tmp_path / "cut.raw")
    half = bytes(28 * 24 * 8)  # half of the 2-byte voxels
    process, primary = _on_a_terminal(
        ["upsample", "cut.mha", "thin.nii.gz", *BSPLINE], tmp_path, {"FORCE_COLOR": "1"}
    )
    feeder = threading.Thread(
        target=_feed_and_stop_short, args=(tmp_path / "cut.raw", half, process)
    )
    feeder.start()
    text = _read_terminal(primary)
    feeder.join(timeout=60)
    process.stdout.close()
    assert process.wait(timeout=60) == 1, text
    errors = [_ESCAPES.sub("", line) for line in text.split("\n") if "error:" in line]
    assert len(errors) == 1, text
    message = errors[0][errors[0].index("error:") :]
    assert not _PROGRESS_GLYPHS.search(message), message
    assert message.startswith("error: cut.mha: cannot read (MetaImage:"), message
    assert "data not read completely" in message and "actual = 5376" in message, message
    assert not (tmp_path / "thin.nii.gz").exists()


# --- simulate ---------------------------------------------------------------------------


def test_simulate_reproduces_the_example_thick_scan(
    tmp_path: Path, example_thin: Path, example_thick: Path
):
    """The shipped 5 mm example was made by boxcar simulation of the 1.25 mm one."""
    target = tmp_path / "thick.nii.gz"
    assert_ok(thinct("simulate", example_thin, target, "--thickness", "5"))
    made, shipped = read(target), read(example_thick)
    assert made.GetSize() == shipped.GetSize() == (192, 192, 16)
    assert np.allclose(made.GetSpacing(), shipped.GetSpacing(), atol=1e-6)
    assert np.allclose(made.GetOrigin(), shipped.GetOrigin(), atol=1e-3)
    assert np.array_equal(voxels(target), voxels(example_thick))


# 24 thin slices of 1.25 mm (30 mm): options, thick slices, their spacing, and the first slab
# centre relative to the first thin slice centre, in mm along the slice axis.
SIMULATE_GRIDS = {
    "default-5mm-boxcar": ([], 6, 5.0, 1.875),
    "thickness3": (["--thickness", "3"], 10, 3.0, 0.875),
    "overlapping": (["--thickness", "5", "--increment", "2.5"], 11, 2.5, 1.875),
    "gaussian": (["--profile", "gaussian", "--fwhm", "4"], 6, 5.0, 1.875),
}


def _simulate_oblique(options: list[str]) -> Callable[[Path], list[object]]:
    def setup(folder: Path) -> list[object]:
        thin = ct_array(slices=24)
        write_scan(folder / "thin.nii.gz", thin, spacing=(0.7, 0.7, 1.25), direction=OBLIQUE)
        return ["simulate", "thin.nii.gz", "thick.nii.gz", "--dtype", "float32", *options]

    return setup


@pytest.fixture(scope="module")
def simulate_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | BaseException]:
    cases = {name: _simulate_oblique(case[0]) for name, case in SIMULATE_GRIDS.items()}
    return run_family(tmp_path_factory.mktemp("simulate"), cases)


@pytest.mark.parametrize("name", SIMULATE_GRIDS)
def test_simulate_writes_the_thick_grid(simulate_runs, name: str):
    _, slices, spacing, centre = SIMULATE_GRIDS[name]
    done = _finished(simulate_runs, name)
    assert_ok(done.result)
    assert snapshot(done.folder)["thin.nii.gz"] == done.before["thin.nii.gz"]
    thin, thick = read(done.folder / "thin.nii.gz"), read(done.folder / "thick.nii.gz")
    assert thick.GetSize() == (*IN_PLANE, slices)
    assert np.allclose(thick.GetSpacing(), (0.7, 0.7, spacing), atol=1e-5)
    assert np.allclose(thick.GetOrigin(), _origin_along_slices(thin, centre), atol=1e-3)
    assert np.allclose(thick.GetDirection(), thin.GetDirection(), atol=1e-5)


def test_simulate_boxcar_averages_the_slabs_and_gaussian_differs(simulate_runs):
    boxcar = voxels(_finished(simulate_runs, "default-5mm-boxcar").folder / "thick.nii.gz")
    folder = _finished(simulate_runs, "gaussian").folder
    slabs = voxels(folder / "thin.nii.gz").astype(np.float32).reshape(6, 4, 24, 28).mean(axis=1)
    assert np.allclose(boxcar, slabs, atol=1e-2)
    assert np.abs(voxels(folder / "thick.nii.gz") - boxcar).max() > 10


# --- info -------------------------------------------------------------------------------


def _info(path: Path, *options: str) -> Callable[[Path], list[object]]:
    return lambda folder: ["info", path, *options]


def _info_dicom(folder: Path) -> list[object]:
    write_dicom(folder / "series")
    return ["info", "series", "--json"]


@pytest.fixture(scope="module")
def info_runs(
    tmp_path_factory: pytest.TempPathFactory, example_thick: Path, example_thin: Path
) -> dict[str, Done | BaseException]:
    cases = {
        "thick": _info(example_thick),
        "thin": _info(example_thin),
        "json": _info(example_thick, "--json"),
        "dicom": _info_dicom,
    }
    return run_family(tmp_path_factory.mktemp("info"), cases)


def test_info_describes_a_thick_scan(info_runs):
    result = _finished(info_runs, "thick").result
    assert result.returncode == 0, show(result)
    assert result.stderr == ""
    text = result.stdout
    assert "192 x 192 x 16" in text
    assert "0.681641 x 0.681641 x 5 mm" in text
    assert "16 axial slices" in text
    assert "min -1020" in text and "median" in text and "max 1246" in text
    assert "looks thick:  yes" in text


def test_info_says_a_thin_scan_is_not_thick(info_runs):
    result = _finished(info_runs, "thin").result
    assert result.returncode == 0, show(result)
    assert "192 x 192 x 64" in result.stdout
    assert "looks thick:  no" in result.stdout


def test_info_json_is_valid_and_matches_the_file(info_runs, example_thick: Path):
    result = _finished(info_runs, "json").result
    assert result.returncode == 0, show(result)
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    image = read(example_thick)
    values = voxels(example_thick)
    assert summary["size"] == [192, 192, 16]
    assert np.allclose(summary["spacing_mm"], image.GetSpacing(), atol=1e-5)
    assert np.allclose(summary["origin_mm"], image.GetOrigin(), atol=1e-3)
    assert np.allclose(summary["direction"], image.GetDirection(), atol=1e-5)
    assert summary["slices_look"] == "thick"
    assert summary["slice_spacing_mm"] == 5.0
    assert summary["hu"]["min"] == values.min() and summary["hu"]["max"] == values.max()
    assert summary["hu"]["mean"] == pytest.approx(values.mean(), abs=0.01)
    assert summary["hu"]["min"] <= summary["hu"]["p1"] <= summary["hu"]["median"]
    assert summary["hu"]["median"] <= summary["hu"]["p99"] <= summary["hu"]["max"]
    assert summary["intensity_warning"] is None


def test_info_reads_a_dicom_series_folder(info_runs):
    result = _finished(info_runs, "dicom").result
    assert result.returncode == 0, show(result)
    summary = json.loads(result.stdout)
    assert summary["size"] == [*IN_PLANE, 8]
    assert summary["slices_look"] == "thick"


def test_info_calls_slices_between_thin_and_thick_borderline(in_tmp_path: Path, capfd):
    """The same word in the JSON as in the text (and in docs/cli.md)."""
    write_scan(in_tmp_path / "two.nii.gz", spacing=(0.7, 0.7, 2.0))
    as_json = thinct_in_process(capfd, "info", "two.nii.gz", "--json")
    as_text = thinct_in_process(capfd, "info", "two.nii.gz")
    for result in (as_json, as_text):
        assert result.returncode == 0 and result.stderr == "", show(result)
    assert json.loads(as_json.stdout)["slices_look"] == "borderline"
    assert "looks thick:  borderline (between 1.5 and 2.5 mm)" in as_text.stdout


# --- bad input: one error line, the right exit code, nothing written, input untouched ----


@dataclass(frozen=True)
class Bad:
    """A bad command line, run in a folder that holds a good thick scan ``in.nii.gz``.

    `upsample` runs interpolate (`command_line` adds --method bspline): what is refused here is
    refused before or apart from the method, and test_cli_model.py shows the default model
    refusing the same way."""

    args: list[str]
    code: int
    says: str
    setup: Callable[[Path], object] | None = None

    def command_line(self) -> list[str]:
        if self.args[0] == "upsample":
            return [*self.args, *BSPLINE]
        return list(self.args)


def _truncate(name: str, keep: float) -> Callable[[Path], object]:
    def setup(folder: Path) -> None:
        write_scan(folder / name)
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])

    return setup


def _image(name: str, image: Callable[[], sitk.Image]) -> Callable[[Path], object]:
    return lambda folder: sitk.WriteImage(image(), str(folder / name))


def _flat() -> sitk.Image:
    return make_image(ct_array())[:, :, 0]


def _four_d() -> sitk.Image:
    volume = make_image(ct_array())
    return sitk.JoinSeries([volume, volume])


def _multichannel() -> sitk.Image:
    image = sitk.GetImageFromArray(np.stack([ct_array()] * 3, axis=-1), isVector=True)
    image.SetSpacing((0.7, 0.7, 5.0))
    return image


def _one_slice() -> sitk.Image:
    return make_image(ct_array(slices=1))


def _with(value: float) -> Callable[[], sitk.Image]:
    def image() -> sitk.Image:
        array = ct_array().astype(np.float32)
        array[3, 10, 10] = value
        return make_image(array)

    return image


def _link(name: str, to: str) -> Callable[[Path], object]:
    return lambda folder: os.symlink(to, folder / name)


def _series_with_a_gap(folder: Path) -> None:
    """A DICOM series written by `thinct upsample` (no extension), one slice file deleted."""
    assert_ok(thinct("upsample", "in.nii.gz", "series", *BSPLINE, cwd=folder))
    (folder / "series" / "IM00020.dcm").unlink()


def _thick_series_with_a_gap(folder: Path) -> None:
    """The same problem in a 5 mm series written in-process (no second subprocess)."""
    write_dicom(folder / "series")
    (folder / "series" / "IM00004.dcm").unlink()


def _text(name: str, text: str) -> Callable[[Path], object]:
    return lambda folder: (folder / name).write_text(text)


def _copy(name: str) -> Callable[[Path], object]:
    return lambda folder: (folder / name).write_bytes((folder / "in.nii.gz").read_bytes())


def _mkdir(name: str) -> Callable[[Path], object]:
    return lambda folder: (folder / name).mkdir()


def _dicom(name: str) -> Callable[[Path], object]:
    return lambda folder: write_dicom(folder / name)


def _long_scan(folder: Path) -> None:
    write_long_scan(folder / "long.mha")


IN, OUT = "in.nii.gz", "out.nii.gz"
# Run as real subprocesses: everything that processes a scan, and at least one run of each
# kind of mistake caught early (the rest of those are in CAUGHT_EARLY).
BAD = {
    # inputs that cannot be read or are not a CT volume thinct can process
    "missing-file": Bad(["upsample", "missing.nii.gz", OUT], 2, "missing.nii.gz: no such file"),
    "truncated-nii.gz": Bad(
        ["upsample", "cut.nii.gz", OUT], 1, "cut.nii.gz: truncated", _truncate("cut.nii.gz", 0.5)
    ),
    "truncated-nii": Bad(
        ["upsample", "cut.nii", OUT], 1, "cut.nii: truncated", _truncate("cut.nii", 0.8)
    ),
    "truncated-mha": Bad(
        ["upsample", "cut.mha", OUT], 1, "data not read completely", _truncate("cut.mha", 0.5)
    ),
    "text-as-nii.gz": Bad(
        ["upsample", "notes.nii.gz", OUT],
        1,
        "notes.nii.gz: ",
        _text("notes.nii.gz", "not a scan\n"),
    ),
    "empty-nii.gz": Bad(
        ["upsample", "empty.nii.gz", OUT], 1, "empty.nii.gz: ", _text("empty.nii.gz", "")
    ),
    "text-as-mha": Bad(
        ["upsample", "notes.mha", OUT], 1, "notes.mha: ", _text("notes.mha", "not a scan\n")
    ),
    "2d-image": Bad(["upsample", "flat.nii.gz", OUT], 1, "2D", _image("flat.nii.gz", _flat)),
    "4d-image": Bad(["upsample", "4d.nii.gz", OUT], 1, "4D", _image("4d.nii.gz", _four_d)),
    "multi-channel": Bad(
        ["upsample", "rgb.nii.gz", OUT],
        1,
        "3 values per voxel",
        _image("rgb.nii.gz", _multichannel),
    ),
    "single-slice": Bad(
        ["upsample", "one.nii.gz", OUT], 1, "single-slice", _image("one.nii.gz", _one_slice)
    ),
    "nan-nii.gz": Bad(
        ["upsample", "nan.nii.gz", OUT], 1, "NaN or infinite", _image("nan.nii.gz", _with(np.nan))
    ),
    "inf-mha": Bad(
        ["upsample", "inf.mha", OUT], 1, "NaN or infinite", _image("inf.mha", _with(np.inf))
    ),
    "non-uniform-dicom": Bad(
        ["upsample", "series", OUT], 1, "series: non-uniform slice spacing", _series_with_a_gap
    ),
    "not-thinner": Bad(["upsample", IN, OUT, "--spacing", "5"], 1, "not thinner"),
    "not-thicker": Bad(["simulate", IN, OUT, "--thickness", "2"], 1, "not thicker"),
    "increment-too-fine": Bad(
        ["simulate", IN, OUT, "--thickness", "10", "--increment", "0.0001"], 2, "the most is 100"
    ),
    "out-of-memory": Bad(
        ["simulate", "long.mha", OUT, "--thickness", "1", "--increment", "0.005"],
        1,
        "out of memory (Unable to allocate",
        _long_scan,
    ),
    # outputs that must not be written
    "output-is-input-overwrite": Bad(["upsample", IN, IN, "--overwrite"], 2, "is the input"),
    "output-exists": Bad(["upsample", IN, OUT], 2, "exists; use --overwrite", _text(OUT, "older")),
    # info
    "info-text-as-nii.gz": Bad(
        ["info", "notes.nii.gz", "--json"], 1, "notes.nii.gz: ", _text("notes.nii.gz", "x\n")
    ),
    "info-non-uniform-dicom": Bad(
        ["info", "series"], 1, "series: non-uniform", _thick_series_with_a_gap
    ),
}


def _bad_setup(case: Bad) -> Callable[[Path], list[object]]:
    def setup(folder: Path) -> list[object]:
        write_scan(folder / IN)
        if case.setup is not None:
            case.setup(folder)
        return case.command_line()

    return setup


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | BaseException]:
    cases = {name: _bad_setup(case) for name, case in BAD.items()}
    return run_family(tmp_path_factory.mktemp("bad"), cases)


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_error_line_and_changes_nothing(bad_runs, name: str):
    case = BAD[name]
    done = _finished(bad_runs, name)
    assert_one_error(done.result, case.code, case.says)
    assert snapshot(done.folder) == done.before  # no output, no staging, the input untouched


# Refused before any scan is processed: `thinct.cli.app.main` in this process tells as much as a
# subprocess would, in a fraction of the time.
CAUGHT_EARLY = {
    # impossible options
    "spacing-and-factor": Bad(
        ["upsample", IN, OUT, "--spacing", "1", "--factor", "2"], 2, "not both"
    ),
    "factor-1": Bad(["upsample", IN, OUT, "--factor", "1"], 2, "--factor"),
    "factor-too-large": Bad(["upsample", IN, OUT, "--factor", "100000"], 2, "from 2 to 100"),
    "spacing-0": Bad(["upsample", IN, OUT, "--spacing", "0"], 2, "--spacing"),
    "spacing-nan": Bad(["upsample", IN, OUT, "--spacing", "nan"], 2, "--spacing"),
    "spacing-too-fine": Bad(
        ["upsample", IN, OUT, "--spacing", "0.0001"], 2, "50000 thin slices of each 5 mm slice"
    ),
    "thickness-negative": Bad(["simulate", IN, OUT, "--thickness", "-5"], 2, "--thickness"),
    "increment-0": Bad(["simulate", IN, OUT, "--increment", "0"], 2, "--increment"),
    "increment-too-fine": Bad(
        ["simulate", IN, OUT, "--thickness", "10", "--increment", "0.0001"],
        2,
        "--increment 0.05",
    ),
    "fwhm-inf": Bad(["simulate", IN, OUT, "--profile", "gaussian", "--fwhm", "inf"], 2, "--fwhm"),
    "fwhm-with-boxcar": Bad(["simulate", IN, OUT, "--fwhm", "3"], 2, "--fwhm"),
    "no-output": Bad(["upsample", IN], 2, "give an input and an output"),
    "batch-into-a-file-name": Bad(["upsample", IN, IN, "many.nii.gz"], 2, "must be a folder"),
    # inputs refused before they are read
    "info-missing-file": Bad(["info", "missing.nii.gz"], 2, "missing.nii.gz: no such file"),
    "unsupported-input": Bad(
        ["upsample", "in.png", OUT], 1, "unsupported file type", _copy("in.png")
    ),
    "one-dicom-slice": Bad(
        ["upsample", "series/IM00001.dcm", OUT], 1, "folder of the DICOM series", _dicom("series")
    ),
    "empty-folder": Bad(["upsample", "nothing", OUT], 2, "no scans", _mkdir("nothing")),
    "series-of-a-nifti": Bad(["upsample", IN, OUT, "--series", "1.2.3"], 2, "--series"),
    "unknown-series": Bad(
        ["upsample", "series", OUT, "--series", "1.2.3"], 2, "no series 1.2.3", _dicom("series")
    ),
    # outputs that cannot or must not be written
    "unsupported-output": Bad(["upsample", IN, "out.png"], 2, "unsupported output type"),
    "output-under-a-file": Bad(
        ["upsample", IN, "notes.txt/out.nii.gz"], 1, "notes.txt is a file", _text("notes.txt", "x")
    ),
    "output-is-input": Bad(["upsample", IN, IN], 2, "is the input"),
    "output-links-to-input": Bad(
        ["upsample", IN, "link.nii.gz", "--overwrite"], 2, "is the input", _link("link.nii.gz", IN)
    ),
    "input-is-a-link": Bad(
        ["simulate", "link.nii.gz", IN, "--overwrite"], 2, "is the input", _link("link.nii.gz", IN)
    ),
    "output-relative-to-input": Bad(
        ["upsample", IN, "sub/../in.nii.gz", "--overwrite"], 2, "is the input", _mkdir("sub")
    ),
    "output-folder-holds-input": Bad(["upsample", IN, ".", "--overwrite"], 2, "is the input"),
    "dicom-output-exists": Bad(
        ["upsample", IN, "series"], 2, "exists; use --overwrite", _dicom("series")
    ),
    "dicom-output-float": Bad(["upsample", IN, "series", "--dtype", "float32"], 2, "int16"),
}


@pytest.mark.parametrize("name", CAUGHT_EARLY)
def test_mistakes_caught_early_are_one_error_line(in_tmp_path: Path, capfd, name: str):
    case = CAUGHT_EARLY[name]
    write_scan(in_tmp_path / IN)
    if case.setup is not None:
        case.setup(in_tmp_path)
    before = snapshot(in_tmp_path)
    assert_one_error(thinct_in_process(capfd, *case.command_line()), case.code, case.says)
    assert snapshot(in_tmp_path) == before


def test_an_output_folder_that_holds_the_input_is_refused(in_tmp_path: Path, capfd):
    """Replacing a DICOM output folder moves it aside and deletes it: with the input inside,
    that would delete the input, whatever --overwrite says."""
    write_scan(in_tmp_path / IN)
    assert_ok(thinct_in_process(capfd, "upsample", IN, "study", *BSPLINE, "--quiet"))
    (in_tmp_path / "study" / "sub").mkdir()
    (in_tmp_path / "study" / "sub" / "scan.nii.gz").write_bytes((in_tmp_path / IN).read_bytes())
    before = snapshot(in_tmp_path)
    for options in (BSPLINE, [*BSPLINE, "--overwrite"]):
        result = thinct_in_process(capfd, "upsample", "study/sub/scan.nii.gz", "study", *options)
        assert_one_error(result, 2, "study holds the input study/sub/scan.nii.gz")
    assert snapshot(in_tmp_path) == before


@pytest.mark.parametrize("command", ["info", "upsample"])
def test_an_operating_system_error_is_one_line(in_tmp_path: Path, capfd, command: str):
    """The system refuses the path itself (here a name longer than any file system allows;
    a folder the user may not enter is the same): no traceback, the reason and the path."""
    name = "x" * 5000
    args = [name] if command == "info" else [name, OUT, *BSPLINE]
    line = assert_one_error(thinct_in_process(capfd, command, *args), 1, "File name too long")
    assert line == f"error: {name}: File name too long"


def test_errors_reach_a_stderr_without_a_file_descriptor(in_tmp_path: Path, capsys):
    """Where sys.stderr is only in memory (pytest's capsys, typer's CliRunner), the reporter
    cannot duplicate its descriptor and writes to sys.stderr itself."""
    with pytest.raises(SystemExit) as exit_info:
        main(["upsample", "missing.nii.gz", OUT, *BSPLINE])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: missing.nii.gz: no such file or folder\n"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["upsample", IN, OUT, "--method", "cubic"], id="bad-method"),
        pytest.param(["upsample", IN, OUT, "--align", "middle"], id="bad-align"),
        pytest.param(["simulate", IN, OUT, "--profile", "triangle"], id="bad-profile"),
        pytest.param(["upsample", IN, OUT, "--dtype", "uint8"], id="bad-dtype"),
        pytest.param(["upsample", IN, OUT, "--factor", "two"], id="factor-not-a-number"),
        pytest.param(["upsample", IN, OUT, "--no-such-option"], id="unknown-option"),
        pytest.param(["upsample", IN, OUT, "--spacing"], id="missing-option-value"),
        pytest.param(["upsample"], id="missing-argument"),
        pytest.param(["thicken", IN, OUT], id="unknown-command"),
    ],
)
def test_command_line_parse_errors_are_usage_errors(in_tmp_path: Path, capfd, args: list[str]):
    """Rejected by the option parser: exit 2, one error line naming the help to read, no
    traceback, no output."""
    write_scan(in_tmp_path / IN)
    before = snapshot(in_tmp_path)
    line = assert_one_error(thinct_in_process(capfd, *args), 2)
    assert line.endswith("--help')"), line
    assert snapshot(in_tmp_path) == before


def test_parse_errors_exit_2_in_a_real_process(tmp_path: Path):
    """One real run to show the parser's exit code and clean stderr in a real process."""
    result = thinct("upsample", "in.nii.gz", "out.nii.gz", "--method", "cubic", cwd=tmp_path)
    assert_one_error(result, 2, "cubic", "upsample --help')")
