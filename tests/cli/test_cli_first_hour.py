"""What a new user meets in the first hour: the help's flags and usage lines, where an output
named as a folder goes, long names, folders that cannot be read, a device given as input,
mistakes reported before the model loads, and a model run on slices that are thin already.

Rules under test: every boolean option of every command shows as a flag in --help (no
``<bool>``), and a flag followed by ``true`` is refused instead of writing a DICOM folder
named ``true``; usage lines read ``IN... OUT``; help keeps ``[@revision]``; a single job's
output written with a trailing slash is a folder to write into, made if missing, as an
existing plain folder is, while a missing name without a slash is a DICOM series; a 250-byte
output name is written; a folder that cannot be listed says permission denied (a folder below
an input is left out with a warning); ``/dev/null`` is not a scan file; a missing input, an
existing output or a bad output name is reported without loading torch; the default model on
1.25 mm slices warns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import SimpleITK as sitk
import typer
from helpers.cli import (
    Done,
    assert_ok,
    outcome,
    read,
    run_family,
    show,
    stderr_lines,
    thinct,
    thinct_in_process,
    write_scan,
)
from helpers.paths import EXAMPLES

from thinct.cli.app import app

BSPLINE = ["--method", "bspline"]


@pytest.fixture
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in ``tmp_path`` for `thinct_in_process`, with a wide, colourless terminal."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def _commands(group: typer.core.TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the app (``("nnunet", "convert")``), groups included."""
    found = [path]
    for name, command in getattr(group, "commands", {}).items():
        found += _commands(command, (*path, name))
    return found


COMMAND_PATHS = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda path: " ".join(path) or "thinct")
def test_help_shows_every_flag_as_a_flag(in_tmp_path, capfd, path):
    """typer's help listed ``--overwrite <bool>``, which reads as an option taking a value."""
    result = thinct_in_process(capfd, *path, "--help")
    assert result.returncode == 0, show(result)
    assert "<bool>" not in result.stdout, result.stdout
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    for option in command.params:
        if getattr(option, "is_flag", False):
            assert any(name in result.stdout for name in option.opts), option.opts


@pytest.mark.parametrize("command", ["upsample", "simulate"])
def test_usage_lines_read_in_out(in_tmp_path, capfd, command):
    result = thinct_in_process(capfd, command, "--help")
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    assert usage.rstrip().endswith(f" {command} [OPTIONS] IN... OUT"), usage


@pytest.mark.parametrize("command", ["upsample", "evaluate"])
def test_help_keeps_the_brackets_of_an_optional_part(in_tmp_path, capfd, command):
    """typer reads help text as rich markup, where ``[@revision]`` would vanish as a tag."""
    result = thinct_in_process(capfd, command, "--help")
    assert "hf://owner/repo[@revision]" in " ".join(result.stdout.split())


@pytest.mark.parametrize("value", ["true", "False"])
def test_a_flag_given_a_value_is_refused(in_tmp_path, capfd, value):
    write_scan(in_tmp_path / "thick.nii.gz")
    result = thinct_in_process(capfd, "upsample", "thick.nii.gz", "--overwrite", value, *BSPLINE)
    assert result.returncode == 2, show(result)
    assert stderr_lines(result) == [
        f"error: the output would be {value!r}: flags take no value "
        "(--overwrite, not --overwrite true)"
    ]
    assert sorted(os.listdir(in_tmp_path)) == ["thick.nii.gz"]


def test_a_device_is_not_a_scan_file(in_tmp_path, capfd):
    result = thinct_in_process(capfd, "upsample", "/dev/null", "thin.nii.gz", *BSPLINE)
    assert result.returncode == 2, show(result)
    assert stderr_lines(result) == [
        "error: /dev/null: not a scan file (a device); thinct reads .nii.gz, .nii, .nrrd, "
        ".nhdr, .mha, .mhd or a DICOM series folder"
    ]


# --- where outputs go, long names --------------------------------------------------------------


def _single(output: str, existing: bool = False) -> Callable[[Path], list[object]]:
    def setup(folder: Path) -> list[object]:
        write_scan(folder / "thick.nii.gz")
        if existing:
            (folder / output.rstrip("/")).mkdir()
        return ["upsample", "thick.nii.gz", output, *BSPLINE]

    return setup


LONG_NAME = "a" * 243 + ".nii.gz"  # 250 bytes; the staging folder's name was longer
PLACES = {
    "new-with-slash": (_single("newdir/"), "newdir/thick.nii.gz"),
    "existing-with-slash": (_single("existing/", existing=True), "existing/thick.nii.gz"),
    "existing-without-slash": (_single("existing", existing=True), "existing/thick.nii.gz"),
    "new-without-slash": (_single("series"), "series"),  # a DICOM series folder
    "long-name": (_single(LONG_NAME), LONG_NAME),
}


@pytest.fixture(scope="module")
def place_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | BaseException]:
    cases = {name: setup for name, (setup, _) in PLACES.items()}
    return run_family(tmp_path_factory.mktemp("places"), cases)


@pytest.mark.parametrize("name", PLACES)
def test_one_rule_says_where_a_single_output_goes(place_runs, name):
    done = outcome(place_runs, name)
    assert_ok(done.result)
    written = done.folder / PLACES[name][1]
    assert stderr_lines(done.result)[-1] == f"wrote {PLACES[name][1]}"
    assert written.is_dir() == (name == "new-without-slash")
    assert read(written).GetSize() == (28, 24, 40)


# --- folders that cannot be read -----------------------------------------------------------------


def _permissions_apply() -> list[str]:
    """A command prefix under which folder permissions hold: none for an ordinary user; for
    root, who reads any folder, setpriv dropping the two capabilities that allow it."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and without setpriv (util-linux) permissions do not apply")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(sys.platform != "linux", reason="folder permissions as Linux has them")
def test_a_folder_that_cannot_be_read_says_permission_denied(tmp_path):
    wrapper = _permissions_apply()
    write_scan(tmp_path / "locked" / "a.nii.gz")
    write_scan(tmp_path / "archive" / "a.nii.gz")
    write_scan(tmp_path / "archive" / "private" / "b.nii.gz")
    for folder in (tmp_path / "locked", tmp_path / "archive" / "private"):
        folder.chmod(0)
    try:
        locked = thinct("upsample", "locked", "out", *BSPLINE, cwd=tmp_path, wrapper=wrapper)
        partly = thinct("upsample", "archive", "out", *BSPLINE, cwd=tmp_path, wrapper=wrapper)
    finally:
        for folder in (tmp_path / "locked", tmp_path / "archive" / "private"):
            folder.chmod(0o755)

    assert locked.returncode == 1, show(locked)
    assert stderr_lines(locked) == ["error: locked: cannot list this folder (Permission denied)"]
    assert_ok(partly)
    assert stderr_lines(partly) == [
        "warning: archive/private: cannot list this folder (Permission denied); its scans are "
        "left out",
        "1 written, 0 skipped, 0 failed (outputs in out)",
    ]


# --- before the model loads ----------------------------------------------------------------------


def test_path_mistakes_are_reported_before_the_model_loads(tmp_path):
    """The default model takes seconds to load (torch): a typo in a path must not wait for it."""
    write_scan(tmp_path / "thick.nii.gz")
    (tmp_path / "done.nii.gz").write_bytes(b"an earlier output")
    script = """
import sys
from thinct.cli.app import main

for args in (
    ["upsample", "thikc.nii.gz", "thin.nii.gz"],
    ["upsample", "thick.nii.gz", "done.nii.gz"],
    ["upsample", "thick.nii.gz", "thin.png"],
    ["upsample", "thick.nii.gz", "thick.nii.gz", "--overwrite"],
):
    try:
        main(args)
    except SystemExit as done:
        print(done.code, "torch" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stdout.splitlines() == ["2 False"] * 4, done.stdout + done.stderr
    assert [line.split(":")[1].strip() for line in done.stderr.splitlines()] == [
        "thikc.nii.gz",
        "done.nii.gz exists; use --overwrite to replace it",
        "thin.png",
        "thick.nii.gz is the input; thinct never overwrites its input",
    ], done.stderr


# --- a model on thin slices ----------------------------------------------------------------------


def test_the_default_model_warns_on_slices_that_are_thin_already(tmp_path):
    thin = sitk.ReadImage(str(EXAMPLES / "lidc0002_crop_1.25mm.nii.gz"))
    sitk.WriteImage(thin[:64, :64, :16], str(tmp_path / "thin.nii.gz"))
    result = thinct(
        "upsample", "thin.nii.gz", "finer.nii.gz", "--factor", "2", "--device", "cpu", cwd=tmp_path
    )
    assert_ok(result)
    assert stderr_lines(result) == [
        "warning: thin.nii.gz: the slices are 1.25 mm apart, thin already; models learn to fill "
        "in thick slices (2 mm or more apart), and on these an interpolation (--method bspline) "
        "may well do better",
        "wrote finer.nii.gz",
    ], show(result)
