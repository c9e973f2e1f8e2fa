"""Batch work on the command line: IN may be a folder of scans, a quoted glob pattern or
several files, and OUT a folder.

Rules under test: outputs mirror the input names (relative paths inside a folder, nested
subfolders too, a DICOM series folder becomes a DICOM output folder of the same name, a .nhdr
input becomes a .nrrd output); a glob pattern selects scans like a folder scan does; existing
outputs are skipped unless --overwrite; one bad file (unreadable, refused, too large for the
memory) is reported on a line that starts with its name and the rest go on, with exit code 1
if any failed; an output folder inside the input folder is not re-processed; no staging
folders are left behind; the inputs are never modified.

Batches are the same for every method, so `upsample` runs interpolate here (`--method
bspline`, which starts without torch); test_cli_model.py runs a batch through a model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.cli import (
    Done,
    assert_ok,
    assert_one_error,
    ct_array,
    outcome,
    read,
    run_family,
    show,
    snapshot,
    staging_left,
    stderr_lines,
    thinct,
    write_dicom,
    write_long_scan,
    write_scan,
)

from thinct.batch.jobs import Job, attempt, plan_jobs
from thinct.errors import Cancelled, InputError, UsageError

THIN_SIZE = (28, 24, 40)  # ct_array's 8 slices of 5 mm upsampled to 1 mm (edges)


def _upsample(*args: str) -> list[object]:
    """`thinct upsample ARGS` by interpolation (see the module docstring)."""
    return ["upsample", *args, "--method", "bspline"]


def _scans(folder: Path, *names: str) -> Path:
    """Good thick scans (a name without extension is a DICOM series folder)."""
    for index, name in enumerate(names):
        if Path(name).suffix:
            write_scan(folder / name, ct_array(seed=index))
        else:
            write_dicom(folder / name, ct_array(seed=index))
    return folder


def _not_scans(folder: Path) -> None:
    """What a folder of scans also holds: notes, and a plain folder with a scan inside."""
    (folder / "notes.txt").write_text("not a scan")
    write_scan(folder / "plain" / "c.nii.gz")


def _broken(path: Path) -> Path:
    """A scan whose second half is missing (a truncated download)."""
    write_scan(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _outputs(folder: Path) -> set[str]:
    """Files and DICOM series folders below ``folder``, as relative paths."""
    found = set()
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".dcm":
            found.add(str(path.relative_to(folder)))
        elif path.is_dir() and any(path.glob("*.dcm")):
            found.add(str(path.relative_to(folder)))
    return found


def _summary(result) -> str:
    return stderr_lines(result)[-1]


# --- independent batch runs, started side by side ---------------------------------------


def _mixed_folder(folder: Path) -> list[object]:
    """Good scans in three formats, nested two levels deep, a DICOM series folder, a broken
    scan and a file that is not a scan."""
    _scans(folder / "scans", "a.nii.gz", "b.mha", "sub/c.nii.gz", "sub/deeper/d.nrrd")
    _scans(folder / "scans", "sub/series")
    _broken(folder / "scans" / "broken.nii.gz")
    (folder / "scans" / "notes.txt").write_text("not a scan")
    return _upsample("scans", "out")


def _glob(folder: Path) -> list[object]:
    _scans(folder / "scans", "a.nii.gz", "b.nii.gz", "c.mha", "sub/d.nii.gz")
    return _upsample("scans/*.nii.gz", "out", "--quiet")  # quoted: no shell expands it


def _glob_everything(folder: Path) -> list[object]:
    """'scans/*' matches scans (one a NRRD with a detached header and data file), a note and a
    plain folder: only the scans are processed, as in a folder scan."""
    _scans(folder / "scans", "a.nii.gz", "e.nhdr", "series")
    _not_scans(folder / "scans")
    return _upsample("scans/*", "out")


def _explicit(folder: Path) -> list[object]:
    _scans(folder / "one", "a.nii.gz")
    _scans(folder / "two", "b.mha", "series")
    return _upsample("one/a.nii.gz", "two/b.mha", "two/series", "out")


def _explicit_with_a_broken_one(folder: Path) -> list[object]:
    _scans(folder, "a.nii.gz", "c.nii.gz")
    _broken(folder / "b.nii.gz")
    return _upsample("a.nii.gz", "b.nii.gz", "c.nii.gz", "out")


def _into_existing_folder(folder: Path) -> list[object]:
    _scans(folder, "in.nii.gz")
    (folder / "existing").mkdir()
    return _upsample("in.nii.gz", "existing/")


def _an_input_is_its_own_output(folder: Path) -> list[object]:
    _scans(folder, "a.nii.gz")
    _scans(folder / "scans", "b.nii.gz")
    return _upsample("a.nii.gz", "scans/b.nii.gz", "scans", "--overwrite")


def _same_names(folder: Path) -> list[object]:
    _scans(folder, "one/a.nii.gz", "two/a.nii.gz")
    return _upsample("one/a.nii.gz", "two/a.nii.gz", "out")


def _output_is_input_folder(folder: Path) -> list[object]:
    _scans(folder / "scans", "a.nii.gz", "b.nii.gz")
    return _upsample("scans", "scans", "--overwrite")


def _float_with_a_dicom_series(folder: Path) -> list[object]:
    _scans(folder / "scans", "a.nii.gz", "series")
    return _upsample("scans", "out", "--dtype", "float32")


def _too_large_for_the_memory(folder: Path) -> list[object]:
    write_scan(folder / "scans" / "a.nii.gz", ct_array(slices=24), (0.7, 0.7, 0.5))
    write_long_scan(folder / "scans" / "long.mha")
    return ["simulate", "scans", "out", "--thickness", "1", "--increment", "0.005"]


def _simulate_folder(folder: Path) -> list[object]:
    for index, name in enumerate(("a.nii.gz", "sub/b.nii.gz")):
        write_scan(folder / "thin" / name, ct_array(slices=24, seed=index), (0.7, 0.7, 1.25))
    return ["simulate", "thin", "thick", "--thickness", "5"]


CASES: dict[str, Callable[[Path], list[object]]] = {
    "mixed": _mixed_folder,
    "glob": _glob,
    "glob-everything": _glob_everything,
    "explicit": _explicit,
    "explicit-broken": _explicit_with_a_broken_one,
    "into-existing-folder": _into_existing_folder,
    "same-names": _same_names,
    "input-is-its-own-output": _an_input_is_its_own_output,
    "output-is-input-folder": _output_is_input_folder,
    "simulate": _simulate_folder,
    "float-and-dicom": _float_with_a_dicom_series,
    "out-of-memory": _too_large_for_the_memory,
}


@pytest.fixture(scope="module")
def batch_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Done | BaseException]:
    return run_family(tmp_path_factory.mktemp("batch"), CASES)


def _finished(runs: dict[str, Done | BaseException], name: str) -> Done:
    done = outcome(runs, name)
    assert staging_left(done.folder) == [], show(done.result)
    assert done.result.stdout == "", show(done.result)
    assert "Traceback" not in done.result.stderr, show(done.result)
    return done


def _inputs_untouched(done: Done, *names: str) -> None:
    after = snapshot(done.folder)
    for key, value in done.before.items():
        if key.startswith(names):
            assert after[key] == value, f"{key} was modified"


def test_folder_batch_mirrors_names_and_goes_on_past_a_broken_file(batch_runs):
    done = _finished(batch_runs, "mixed")
    result = done.result
    assert result.returncode == 1, show(result)  # one file failed
    errors = [line for line in stderr_lines(result) if line.startswith("error:")]
    assert len(errors) == 1 and "broken.nii.gz" in errors[0], show(result)
    assert _summary(result).startswith("5 written, 0 skipped, 1 failed"), show(result)
    out = done.folder / "out"
    assert _outputs(out) == {
        "a.nii.gz",
        "b.mha",
        "sub/c.nii.gz",
        "sub/deeper/d.nrrd",
        "sub/series",
    }
    for name in ("a.nii.gz", "b.mha", "sub/c.nii.gz", "sub/deeper/d.nrrd", "sub/series"):
        assert read(out / name).GetSize() == THIN_SIZE, name
    assert (out / "sub" / "series").is_dir()  # a DICOM series folder gives a DICOM folder
    _inputs_untouched(done, "scans")


def test_glob_pattern_selects_the_files_it_matches(batch_runs):
    done = _finished(batch_runs, "glob")
    assert_ok(done.result)
    assert done.result.stderr == ""  # --quiet
    assert _outputs(done.folder / "out") == {"a.nii.gz", "b.nii.gz"}
    _inputs_untouched(done, "scans")


def test_a_glob_pattern_selects_scans_like_a_folder_scan(batch_runs):
    done = _finished(batch_runs, "glob-everything")
    assert_ok(done.result)
    assert _summary(done.result).startswith("3 written, 0 skipped, 0 failed"), show(done.result)
    out = done.folder / "out"
    assert _outputs(out) == {"a.nii.gz", "e.nrrd", "series"}  # thinct cannot write .nhdr
    for name in ("a.nii.gz", "e.nrrd", "series"):
        assert read(out / name).GetSize() == THIN_SIZE, name
    _inputs_untouched(done, "scans")


def test_several_explicit_inputs_go_into_the_output_folder(batch_runs):
    done = _finished(batch_runs, "explicit")
    assert_ok(done.result)
    assert _summary(done.result).startswith("3 written, 0 skipped, 0 failed")
    out = done.folder / "out"
    assert _outputs(out) == {"a.nii.gz", "b.mha", "series"}
    assert read(out / "series").GetSize() == THIN_SIZE
    _inputs_untouched(done, "one", "two")


def test_one_broken_explicit_input_fails_the_batch_but_not_the_others(batch_runs):
    done = _finished(batch_runs, "explicit-broken")
    assert done.result.returncode == 1, show(done.result)
    errors = [line for line in stderr_lines(done.result) if line.startswith("error:")]
    assert len(errors) == 1 and "b.nii.gz" in errors[0]
    assert _outputs(done.folder / "out") == {"a.nii.gz", "c.nii.gz"}


def test_single_input_into_an_existing_plain_folder_keeps_its_name(batch_runs):
    done = _finished(batch_runs, "into-existing-folder")
    assert_ok(done.result)
    assert read(done.folder / "existing" / "in.nii.gz").GetSize() == THIN_SIZE
    _inputs_untouched(done, "in.nii.gz")


def test_inputs_that_would_write_the_same_output_are_refused(batch_runs):
    done = _finished(batch_runs, "same-names")
    assert_one_error(done.result, 2, "same output")
    assert snapshot(done.folder) == done.before


def test_an_output_equal_to_its_input_is_a_failed_file(batch_runs):
    """A usage error for a single job (exit 2); in a batch, one failed file (exit 1)."""
    done = _finished(batch_runs, "input-is-its-own-output")
    assert done.result.returncode == 1, show(done.result)
    errors = [line for line in stderr_lines(done.result) if line.startswith("error:")]
    assert errors == ["error: scans/b.nii.gz is the input; thinct never overwrites its input"]
    assert _summary(done.result).startswith("1 written, 0 skipped, 1 failed"), show(done.result)
    assert read(done.folder / "scans" / "a.nii.gz").GetSize() == THIN_SIZE
    _inputs_untouched(done, "a.nii.gz", "scans/b.nii.gz")


def test_output_folder_equal_to_the_input_folder_is_refused(batch_runs):
    done = _finished(batch_runs, "output-is-input-folder")
    assert_one_error(done.result, 2, "input folder")
    assert snapshot(done.folder) == done.before


def test_simulate_works_on_a_folder_too(batch_runs):
    done = _finished(batch_runs, "simulate")
    assert_ok(done.result)
    out = done.folder / "thick"
    assert _outputs(out) == {"a.nii.gz", "sub/b.nii.gz"}
    for name in ("a.nii.gz", "sub/b.nii.gz"):
        image = read(out / name)
        assert image.GetSize() == (28, 24, 6)
        assert image.GetSpacing()[2] == pytest.approx(5.0)


def test_a_file_that_fails_late_is_named_and_the_others_are_written(batch_runs):
    """DICOM output is int16 only: the series fails (named on its error line), the NIfTI
    beside it is written as float32."""
    done = _finished(batch_runs, "float-and-dicom")
    assert done.result.returncode == 1, show(done.result)
    errors = [line for line in stderr_lines(done.result) if line.startswith("error:")]
    assert len(errors) == 1, show(done.result)
    assert errors[0].startswith("error: scans/series") and "int16" in errors[0]
    assert _outputs(done.folder / "out") == {"a.nii.gz"}
    assert read(done.folder / "out" / "a.nii.gz").GetPixelIDTypeAsString() == "32-bit float"


def test_a_scan_too_large_for_the_memory_fails_alone(batch_runs):
    done = _finished(batch_runs, "out-of-memory")
    assert done.result.returncode == 1, show(done.result)
    errors = [line for line in stderr_lines(done.result) if line.startswith("error:")]
    assert len(errors) == 1, show(done.result)
    assert errors[0].startswith("error: scans/long.mha: out of memory (Unable to allocate")
    assert _summary(done.result).startswith("1 written, 0 skipped, 1 failed"), show(done.result)
    assert _outputs(done.folder / "out") == {"a.nii.gz"}
    _inputs_untouched(done, "scans")


# --- runs that depend on an earlier one -------------------------------------------------


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path: Path):
    _scans(tmp_path / "scans", "a.nii.gz", "b.nii.gz", "series")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.nii.gz").write_text("an older output")
    write_dicom(out / "series", ct_array(slices=3))
    inputs = snapshot(tmp_path / "scans")

    first = thinct(*_upsample("scans", "out"), cwd=tmp_path)

    assert_ok(first)
    assert (out / "a.nii.gz").read_text() == "an older output"
    assert read(out / "series").GetSize()[2] == 3
    assert read(out / "b.nii.gz").GetSize() == THIN_SIZE
    skipped = [line for line in stderr_lines(first) if line.startswith("skipped")]
    assert len(skipped) == 2, show(first)
    assert _summary(first).startswith("1 written, 2 skipped, 0 failed"), show(first)

    second = thinct(*_upsample("scans", "out", "--overwrite"), cwd=tmp_path)

    assert_ok(second)
    assert _summary(second).startswith("3 written, 0 skipped, 0 failed"), show(second)
    for name in ("a.nii.gz", "b.nii.gz", "series"):
        assert read(out / name).GetSize() == THIN_SIZE, name
    assert len(list((out / "series").iterdir())) == THIN_SIZE[2]  # no stale slices
    assert snapshot(tmp_path / "scans") == inputs
    assert staging_left(tmp_path) == []


def test_output_folder_inside_the_input_folder_is_not_reprocessed(tmp_path: Path):
    _scans(tmp_path / "scans", "a.nii.gz", "sub/b.nii.gz", "series")
    inputs = snapshot(tmp_path / "scans")

    first = thinct(*_upsample("scans", "scans/thin"), cwd=tmp_path)
    second = thinct(*_upsample("scans", "scans/thin", "--overwrite"), cwd=tmp_path)

    for result in (first, second):
        assert_ok(result)
        assert _summary(result).startswith("3 written, 0 skipped, 0 failed"), show(result)
    thin = tmp_path / "scans" / "thin"
    assert _outputs(thin) == {"a.nii.gz", "sub/b.nii.gz", "series"}
    after = snapshot(tmp_path / "scans")
    assert {k: v for k, v in after.items() if not k.startswith("thin")} == inputs
    assert staging_left(tmp_path) == []


# --- planning (no subprocess needed) ----------------------------------------------------


def test_plan_skips_the_output_folder_and_staging_folders(tmp_path: Path):
    _scans(tmp_path / "scans", "a.nii.gz")
    (tmp_path / "scans" / "out").mkdir()
    (tmp_path / "scans" / "out" / "a.nii.gz").write_bytes(b"")
    (tmp_path / "scans" / ".b.nii.gz.x1.thinct-tmp").mkdir()
    (tmp_path / "scans" / ".b.nii.gz.x1.thinct-tmp" / "b.nii.gz").write_bytes(b"")
    output = tmp_path / "scans" / "out"

    for inputs in ([str(tmp_path / "scans")], [str(tmp_path / "scans" / "*")]):
        plan = plan_jobs(inputs, output)
        assert plan.batch
        assert [job.source.name for job in plan.jobs] == ["a.nii.gz"], inputs
        assert [job.target for job in plan.jobs] == [output / "a.nii.gz"]


def test_plan_of_a_glob_keeps_only_scans(tmp_path: Path):
    _scans(tmp_path / "scans", "a.nii.gz", "e.nhdr", "series")
    _not_scans(tmp_path / "scans")
    output = tmp_path / "out"

    plan = plan_jobs([str(tmp_path / "scans" / "*")], output)

    assert [job.source.name for job in plan.jobs] == ["a.nii.gz", "e.nhdr", "series"]
    targets = [output / name for name in ("a.nii.gz", "e.nrrd", "series")]
    assert [job.target for job in plan.jobs] == targets


def test_plan_of_a_glob_without_scans_is_a_usage_error(tmp_path: Path):
    _not_scans(tmp_path)
    with pytest.raises(UsageError, match="no scans match"):
        plan_jobs([str(tmp_path / "*")], tmp_path / "out")


@pytest.mark.parametrize("name", ["e.nhdr", "E.NHDR"])
def test_nhdr_inputs_get_nrrd_outputs(tmp_path: Path, name: str):
    """thinct reads a detached NRRD header but writes NRRD as one file."""
    source = write_scan(tmp_path / "scans" / "sub" / name)
    existing = tmp_path / "existing"
    existing.mkdir()
    stem = name[: -len(".nhdr")]

    folder_plan = plan_jobs([str(tmp_path / "scans")], tmp_path / "out")
    single_plan = plan_jobs([str(source)], existing)

    assert [job.target for job in folder_plan.jobs] == [tmp_path / "out" / "sub" / f"{stem}.nrrd"]
    assert [job.target for job in single_plan.jobs] == [existing / f"{stem}.nrrd"]


@pytest.mark.parametrize(
    ("raised", "status", "message"),
    [
        (None, "done", ""),
        (Cancelled("cancelled"), "cancelled", "nothing written"),
        (InputError("scan.nii.gz: truncated"), "failed", "scan.nii.gz: truncated"),
        (MemoryError("the 9 x 9 x 9 thin volume needs 1 GiB"), "failed", "out of memory"),
    ],
)
def test_attempt_tells_a_cancelled_job_from_a_failed_one(raised, status, message, tmp_path):
    """A Cancel button (the napari batch panel) stops a job without it counting as failed."""
    job = Job(tmp_path / "scan.nii.gz", tmp_path / "out" / "scan.nii.gz")

    def process(_job: Job) -> None:
        if raised is not None:
            raise raised

    outcome = attempt(job, process)
    assert outcome.status == status
    assert message in outcome.message
