"""Writing under faults: values int16 cannot hold, two writers of one output, staging folders
of killed processes, a full disk, and names near the system's length limit.

Rules under test: an int16 output with any voxel outside the int16 range is refused (naming
``dtype``) unless the caller asks to clip; without ``overwrite`` the final placement claims
the output's name or fails with "exists" and takes back what it placed; the staging folder
of a SIGKILLed process is removed by the next write into its folder, with one warning, while
those of live processes and of other machines stay; a full file system is reported as "no
space left on device" for every format, leaving nothing behind; a 250-byte output name writes.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.volumes import hu_array, make_image, voxels

from thinct.errors import OutputError, ThinctWarning, UsageError
from thinct.io import STAGING_SUFFIX, write_volume
from thinct.io.staging import make_staging, remove_abandoned
from thinct.io.writing import _move_into_place, check_fits_int16
from thinct.volume import Volume

LINUX = pytest.mark.skipif(sys.platform != "linux", reason="uses Linux's /proc and tmpfs")


def listing(folder: Path) -> list[str]:
    """Everything under ``folder``, hidden entries included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def small_volume(seed: int = 0, shape: tuple[int, int, int] = (4, 8, 8)) -> Volume:
    return Volume(make_image(hu_array(shape, seed)))


# --- values int16 cannot hold ---------------------------------------------------------------


def test_an_int32_volume_beyond_int16_is_refused_and_float32_keeps_it(tmp_path):
    values = np.full((4, 8, 8), 50_000, dtype=np.int32)  # raw detector values, say
    values[0] = -1000
    volume = Volume(make_image(values))
    path = tmp_path / "scan.nii.gz"
    with pytest.raises(UsageError) as error:
        write_volume(volume, path)
    message = str(error.value)
    assert "192 voxels (75 %) lie outside the int16 range" in message
    assert "dtype='float32'" in message and str(path) in message
    assert listing(tmp_path) == []

    write_volume(volume, path, dtype="float32")
    np.testing.assert_array_equal(voxels(path), values)


@pytest.mark.parametrize(
    ("value", "fits"),
    [(32767.49, True), (32767.5, False), (-32768.5, True), (-32768.51, False), (4e9, False)],
)
def test_the_int16_range_is_judged_after_rounding(value, fits):
    values = np.zeros((2, 3, 3), dtype=np.float64)
    values[1, 1, 1] = value
    image = make_image(values)
    if fits:
        check_fits_int16(image, "scan")
    else:
        with pytest.raises(UsageError, match=r"^scan: 1 voxels \(5\.56 %\)"):
            check_fits_int16(image, "scan")


# --- two writers of one output ----------------------------------------------------------------


def _staged(tmp_path: Path, name: str, parent: Path) -> Path:
    """A staging folder in ``parent`` holding a real output called ``name`` (and, for a
    MetaImage header, its data file), as write_volume stages it."""
    made = tmp_path / "made"
    write_volume(small_volume(seed=1), made / name)
    staging = make_staging(parent)
    for item in made.iterdir():
        item.rename(staging / item.name)
    made.rmdir()
    return staging


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("scan.nii.gz", "scan.nii.gz"),  # the file itself
        ("dicom", "dicom"),  # an empty folder: a rename would silently replace it
        ("scan.mhd", "scan.mhd"),  # the header: its data file goes in first, then back out
        ("scan.mhd", "scan.zraw"),  # another scan's data file of the same name
    ],
)
def test_placing_without_overwrite_claims_the_name_or_changes_nothing(tmp_path, name, taken):
    parent = tmp_path / "out"
    parent.mkdir()
    if taken == "dicom":
        (parent / taken).mkdir()
    else:
        (parent / taken).write_bytes(b"another writer's output")
    before = listing(parent), contents(parent)
    staging = _staged(tmp_path, name, parent)
    staged = listing(staging)

    what = (
        parent / taken if taken == name else f"{parent / taken}, the data file of {parent / name},"
    )
    with pytest.raises(UsageError, match=f"^{re.escape(str(what))} exists; use overwrite=True"):
        _move_into_place(staging, staging / name, parent, overwrite=False)

    assert listing(staging) == staged  # what was placed came back
    shutil.rmtree(staging)
    assert (listing(parent), contents(parent)) == before


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.mhd", "dicom"])
def test_placing_without_overwrite_into_a_free_name_moves_everything(tmp_path, name):
    parent = tmp_path / "out"
    parent.mkdir()
    staging = _staged(tmp_path, name, parent)
    _move_into_place(staging, staging / name, parent, overwrite=False)
    assert listing(staging) == []
    staging.rmdir()
    np.testing.assert_array_equal(voxels(parent / name), small_volume(seed=1).array)


# --- staging folders of killed processes ------------------------------------------------------


_STAGE_AND_WAIT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from thinct.io.staging import make_staging
    staging = make_staging(Path(sys.argv[1]))
    (staging / "scan.nii.gz").write_bytes(bytes(300_000))
    print(staging, flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def staging_process() -> Iterator[Callable[[Path], tuple[subprocess.Popen[str], Path]]]:
    """Start processes that each make a staging folder in a folder and then wait; yields a
    function that starts one and returns (process, its staging folder)."""
    started: list[subprocess.Popen[str]] = []

    def start(folder: Path) -> tuple[subprocess.Popen[str], Path]:
        process = subprocess.Popen(
            [sys.executable, "-c", _STAGE_AND_WAIT, str(folder)], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        return process, Path(process.stdout.readline().strip())

    yield start
    for process in started:
        process.kill()
        process.wait()
        process.stdout.close()


@LINUX
def test_the_staging_folder_of_a_killed_process_goes_with_the_next_write(tmp_path, staging_process):
    killed, abandoned = staging_process(tmp_path)
    alive, kept = staging_process(tmp_path)
    foreign = tmp_path / f".{killed.pid}.0123abcd.feedf00d{STAGING_SUFFIX}"  # another machine
    foreign.mkdir()
    unknown = tmp_path / f".scan.nii.gz.x1y2{STAGING_SUFFIX}"  # not a name thinct makes now
    unknown.mkdir()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert abandoned.is_dir()  # SIGKILL leaves it, as a crash would

    with pytest.warns(ThinctWarning) as warned:
        write_volume(small_volume(), tmp_path / "next.nii.gz")

    assert [str(w.message) for w in warned] == [
        f"removed a staging folder (0.3 MB) that thinct processes killed before they finished "
        f"had left in {tmp_path}"
    ]
    assert not abandoned.exists()
    assert kept.is_dir() and foreign.is_dir() and unknown.is_dir()
    assert alive.poll() is None
    assert remove_abandoned(tmp_path) == []  # nothing more to remove, and nothing said


def test_staging_names_are_short_whatever_the_output_name(tmp_path):
    """The name of a staging folder does not grow with the output's: an output named close to
    the 255-byte limit of a file name can still be staged and written."""
    staging = make_staging(tmp_path)
    assert len(staging.name) <= 48
    for name in ["a" * 243 + ".nii.gz", "b" * 246 + ".mhd", "c" * 250]:
        assert len(name.encode()) == 250
        write_volume(small_volume(), tmp_path / name)
        np.testing.assert_array_equal(voxels(tmp_path / name), small_volume().array)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(STAGING_SUFFIX)][1:]


# --- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs to fill (mounting needs root; the test skips without it)."""
    if sys.platform != "linux":
        pytest.skip("mounts a Linux tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {made.stderr.strip() or 'not root'}")
    try:
        yield mount
    finally:
        for _ in range(50):  # a file closing late keeps the mount busy for a moment
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)


@pytest.mark.parametrize("name", ["scan.nii", "scan.nii.gz", "scan.mha", "scan.nrrd", "dicom"])
def test_a_full_disk_is_said_as_such_and_leaves_nothing(small_disk, name):
    """ITK's own words would be "does not support this component type" (DICOM) or a short
    NIfTI file ("truncated"); the volume (3 MB of noisy HU) cannot fit in 2 MB."""
    path = small_disk / "thin" / name
    with pytest.raises(OutputError) as error:
        write_volume(small_volume(shape=(400, 64, 64)), path)
    assert str(error.value).startswith(f"cannot write {path} (")
    assert "no space left on device" in str(error.value)
    assert listing(small_disk) == []


def test_a_failure_on_a_disk_with_room_keeps_its_own_reason(tmp_path):
    """A write that fails for another reason is not blamed on the disk."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as error:
        write_volume(small_volume(), tmp_path / "file" / "scan.nii.gz")
    assert "no space" not in str(error.value)
