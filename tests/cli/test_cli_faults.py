"""The command line under faults, with real processes and real signals: Ctrl-C and SIGTERM at
any stage, a process killed outright, two processes writing one output, and an input whose
values int16 cannot hold.

Rules under test: SIGINT and SIGTERM, while torch and the model load as well as while a batch
runs, end with ``error: interrupted`` and exit code 130, a batch's summary first saying what
was written and what was not done, and nothing partial left; the staging folder a SIGKILLed
run leaves is removed by the next write into its folder, which says so on one line; of two
runs writing the same output at once, one writes it and the other exits 2 saying it exists;
an int16 output of an input beyond the int16 range is refused before any work (exit 2,
pointing to --dtype float32), while an int16 input that an interpolation overshoots past the
range (next to -32768 padding) is written.

Scans are crops of the shipped example (or small synthetic scans); runs interpolate except
where the model's loading is the point.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.cli import (
    Done,
    assert_ok,
    outcome,
    read,
    run_concurrently,
    run_family,
    show,
    staging_left,
    stderr_lines,
    thinct,
    write_scan,
)
from helpers.paths import EXAMPLES
from helpers.volumes import make_image

LINUX = pytest.mark.skipif(sys.platform != "linux", reason="uses Linux's /proc and signals")
EXAMPLE = EXAMPLES / "lidc0002_crop_5mm.nii.gz"
LINEAR = ["--method", "linear"]


def _crop(target: Path, index: int = 0, size: int = 128, slices: int = 16) -> Path:
    """A crop of the example scan, its geometry kept."""
    image = sitk.ReadImage(str(EXAMPLE))
    x = 32 * (index % 3)
    target.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image[x : x + size, :size, :slices], str(target))
    return target


def _start(args: list[object], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "thinct", *(str(a) for a in args)],
        cwd=cwd,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.005)


def _loading_torch(pid: int) -> bool:
    """Whether the process has begun to load torch (its native library is mapped)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _files(folder: Path) -> list[str]:
    """Output files below ``folder``, staging folders left out."""
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and ".thinct-tmp" not in str(p)
    )


# --- Ctrl-C and SIGTERM ---------------------------------------------------------------------


@LINUX
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_the_model_loads_says_interrupted(tmp_path, stop):
    """Before, typer turned Ctrl-C into a silent exit 130 and SIGTERM killed the process
    (exit 143) while torch was still loading."""
    _crop(tmp_path / "thick.nii.gz", size=64, slices=8)
    process = _start(["upsample", "thick.nii.gz", "thin.nii.gz", "--device", "cpu"], tmp_path)
    _wait_until(lambda: _loading_torch(process.pid), process, "torch was loaded")
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["error: interrupted"], stderr
    assert _files(tmp_path) == ["thick.nii.gz"] and staging_left(tmp_path) == []


@LINUX
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_batch_says_what_it_wrote_and_what_it_did_not(tmp_path, stop):
    for index in range(6):
        _crop(tmp_path / "archive" / f"s{index}.nii.gz", index)
    process = _start(["upsample", "archive", "thin", *LINEAR, "--spacing", "0.2"], tmp_path)
    _wait_until(lambda: bool(_files(tmp_path / "thin")), process, "an output was written")
    time.sleep(0.3)  # its job reported done: each job takes longer than that
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    lines = stderr.splitlines()
    assert lines[-1] == "error: interrupted", stderr
    summary = re.fullmatch(
        r"(\d) written, 0 skipped, 0 failed, (\d) not done \(outputs in thin\)", lines[-2]
    )
    assert summary, stderr
    written, not_done = map(int, summary.groups())
    assert written >= 1 and written + not_done == 6, stderr
    # The job in progress may have put its (complete) output in place as the signal came.
    assert written <= len(_files(tmp_path / "thin")) <= written + 1
    assert staging_left(tmp_path) == []
    for name in _files(tmp_path / "thin"):
        assert read(tmp_path / "thin" / name).GetSize() == (128, 128, 400)


# --- SIGKILL ----------------------------------------------------------------------------------


@LINUX
def test_the_staging_folder_of_a_killed_run_goes_with_the_next_run(tmp_path):
    """SIGKILL (the out-of-memory killer, a node going down) leaves a run no time to remove
    its staging folder, tens of MB for a full scan; the next run into that folder removes it
    and says so on one line."""
    _crop(tmp_path / "thick.nii.gz")
    process = _start(
        ["upsample", "thick.nii.gz", "thin/big.nii.gz", *LINEAR, "--spacing", "0.1"], tmp_path
    )
    _wait_until(lambda: bool(staging_left(tmp_path / "thin")), process, "a staging folder")
    process.kill()
    process.communicate(timeout=60)
    left = staging_left(tmp_path / "thin")
    assert len(left) == 1  # what a killed run used to leave for good

    result = thinct("upsample", "thick.nii.gz", "thin/next.nii.gz", *LINEAR, cwd=tmp_path)

    assert_ok(result)
    warning = [line for line in stderr_lines(result) if line.startswith("warning:")]
    assert len(warning) == 1, show(result)
    assert re.fullmatch(
        r"warning: removed a staging folder \(\d+\.\d MB\) that thinct processes killed before "
        r"they finished had left in thin",
        warning[0],
    ), show(result)
    assert staging_left(tmp_path) == []
    assert _files(tmp_path / "thin") == ["next.nii.gz"]


# --- two runs, one output ---------------------------------------------------------------------


@pytest.mark.parametrize("output", ["same.nii.gz", "same.mhd", "same_dicom"])
def test_of_two_runs_writing_one_output_one_writes_it_and_the_other_says_it_exists(
    tmp_path, output
):
    """Both start together and check that the output is missing before either has written
    it; the final placement decides (before, the second silently replaced the first)."""
    _crop(tmp_path / "thick.nii.gz")
    args = ["upsample", "thick.nii.gz", output, *LINEAR, "--spacing", "0.5"]
    results = run_concurrently({run: (lambda: thinct(*args, cwd=tmp_path)) for run in "ab"})
    runs = sorted((outcome(results, run) for run in "ab"), key=lambda r: r.returncode)

    assert_ok(runs[0])
    assert runs[1].returncode == 2, show(runs[1])
    # The second sees the output, or, for a MetaImage, the data file that goes in first.
    data_file = "same.zraw, the data file of same.mhd,"
    taken = {output, data_file} if output.endswith(".mhd") else {output}
    assert stderr_lines(runs[1]) in [
        [f"error: {name} exists; use --overwrite to replace it"] for name in taken
    ], show(runs[1])
    assert read(tmp_path / output).GetSize() == (128, 128, 160)
    assert staging_left(tmp_path) == []


# --- values int16 cannot hold -----------------------------------------------------------------


def _int32_scan(folder: Path) -> None:
    values = np.full((8, 24, 28), 41_000, dtype=np.int32)  # raw detector counts, say
    values[:, :4] = 100
    sitk.WriteImage(make_image(values), str(folder / "raw.nii.gz"))


def _refused_int32(folder: Path) -> list[object]:
    _int32_scan(folder)
    return ["upsample", "raw.nii.gz", "thin.nii.gz", *LINEAR]


def _int32_as_float(folder: Path) -> list[object]:
    _int32_scan(folder)
    return ["upsample", "raw.nii.gz", "thin.nii.gz", *LINEAR, "--dtype", "float32"]


def _padded(folder: Path) -> list[object]:
    """int16 HU with -32768 outside the field of view, as some scanners store it: a cubic
    B-spline overshoots below -32768 at the border, which is clipped, not refused."""
    values = np.full((8, 24, 28), -32768, dtype=np.int16)
    values[:, 4:20, 4:24] = -1000
    values[:, 8:16, 8:20] = 3000
    write_scan(folder / "padded.nii.gz", values)
    return ["upsample", "padded.nii.gz", "thin.nii.gz", "--method", "bspline"]


INT16_CASES = {"refused": _refused_int32, "float32": _int32_as_float, "padded": _padded}


@pytest.fixture(scope="module")
def int16_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | BaseException]:
    return run_family(tmp_path_factory.mktemp("int16"), INT16_CASES)


def test_an_input_beyond_int16_is_refused_before_any_work(int16_runs):
    done = outcome(int16_runs, "refused")
    result = done.result
    assert result.returncode == 2, show(result)
    assert stderr_lines(result) == [
        "error: raw.nii.gz: 4480 voxels (83.3 %) lie outside the int16 range (-32768 to "
        "32767) and would be clipped; write float32 (--dtype float32)"
    ], show(result)
    assert not (done.folder / "thin.nii.gz").exists()


def test_float32_keeps_an_input_beyond_int16(int16_runs):
    done = outcome(int16_runs, "float32")
    assert_ok(done.result)
    values = sitk.GetArrayFromImage(read(done.folder / "thin.nii.gz"))
    assert values.dtype == np.float32 and values.max() == pytest.approx(41_000)


def test_an_int16_input_is_written_though_an_interpolation_overshoots(int16_runs):
    done = outcome(int16_runs, "padded")
    assert_ok(done.result)
    values = sitk.GetArrayFromImage(read(done.folder / "thin.nii.gz"))
    assert values.dtype == np.int16 and values.min() == -32768
