"""Helpers shared by test_cli.py and test_batch.py: run `thinct` as a real subprocess (or its
entry point in this process), write small synthetic scans, and snapshot folders to prove that a
run changed nothing it should not."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.volumes import make_image
from thinct.cli.app import main
from thinct.io import read_volume, write_volume

# A wide terminal for rich's help text, so option names and choices are never wrapped.
_ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
T = TypeVar("T")


def thinct(
    *args: object, cwd: Path | None = None, wrapper: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `python -m thinct ARGS` (under ``wrapper``, a command such as setpriv that runs
    the rest) and capture its real exit code, stdout and stderr."""
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "thinct", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_ENV,
        encoding="utf-8",
        timeout=300,
    )


def thinct_in_process(
    capfd: pytest.CaptureFixture[str], *args: object
) -> subprocess.CompletedProcess[str]:
    """Run the console entry point `thinct.cli.app.main(ARGS)` in this process, in the current
    working directory, and capture its exit code and file descriptors 1 and 2.

    For runs that end before any scan is processed, it tells as much as a subprocess (the same
    entry point, exit code and streams) without the second a new process spends on imports.
    """
    capfd.readouterr()  # drop what earlier steps of the test printed
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    stdout, stderr = capfd.readouterr()
    return subprocess.CompletedProcess([str(a) for a in args], exit_info.value.code, stdout, stderr)


def run_concurrently(jobs: Mapping[str, Callable[[], T]]) -> dict[str, T | BaseException]:
    """Run independent jobs (each typically one `thinct` subprocess) on all cores at once.

    Each subprocess spends most of its second importing numpy and SimpleITK, so running a
    family of cases side by side keeps the suite fast without giving up real processes. A job
    that raises is returned as its exception, for the test of that case to re-raise.
    """

    def attempt(job: Callable[[], T]) -> T | BaseException:
        try:
            return job()
        except Exception as error:  # reported by the test that owns the case
            return error

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {key: pool.submit(attempt, job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def outcome(results: Mapping[str, T | BaseException], key: str) -> T:
    """One job's result from `run_concurrently`, re-raising what the job raised."""
    result = results[key]
    if isinstance(result, BaseException):
        raise result
    return result


def show(result: subprocess.CompletedProcess[str]) -> str:
    """The whole run, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    """Success: exit 0, nothing on stdout (it is kept for results), no error, no traceback."""
    assert result.returncode == 0, show(result)
    assert result.stdout == "", show(result)
    assert "Traceback" not in result.stderr, show(result)
    assert not any(line.startswith("error:") for line in stderr_lines(result)), show(result)


def assert_one_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """A clean failure: the exit code, one "error:" line on stderr, nothing on stdout."""
    assert result.returncode == code, show(result)
    assert "Traceback" not in result.stderr, show(result)
    lines = stderr_lines(result)
    assert len(lines) == 1, show(result)
    assert lines[0].startswith("error: "), show(result)
    for fragment in fragments:
        assert fragment in lines[0], show(result)
    assert result.stdout == "", show(result)
    return lines[0]


def ct_array(slices: int = 8, rows: int = 24, cols: int = 28, seed: int = 0) -> np.ndarray:
    """A small (z, y, x) int16 CT-like volume: air around a body whose density varies along z
    (so interpolation methods disagree between slices)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:slices, 0:rows, 0:cols]
    body = ((y - rows / 2) ** 2 / (0.4 * rows) ** 2 + (x - cols / 2) ** 2 / (0.4 * cols) ** 2) < 1
    values = np.where(body, 40.0, -1000.0) + 400.0 * np.sin(z * 1.3 + x / 5.0) * body
    values += rng.normal(0, 20, values.shape)
    return values.astype(np.int16)


def write_scan(
    path: Path,
    array: np.ndarray | None = None,
    spacing: tuple[float, float, float] = (0.7, 0.7, 5.0),
    origin: tuple[float, float, float] = (-30.0, 20.0, -100.0),
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> Path:
    """Write a scan (a thick CT-like one by default) with SimpleITK; returns the path."""
    image = make_image(ct_array() if array is None else array, spacing, origin, direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def write_long_scan(path: Path) -> Path:
    """2 x 2 pixels, 100000 slices 0.5 mm apart (a 200 kB file): simulating thick slices from it
    with the finest increment allowed (0.005 mm) needs over 7 TiB of slab weights, a real
    MemoryError from numpy at once. (NIfTI stops at 32767 slices, MetaImage does not.)"""
    array = np.full((100_000, 2, 2), -1000, dtype=np.int16)
    array[::2] = 40
    image = make_image(array, spacing=(1.0, 1.0, 0.5))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def write_dicom(folder: Path, array: np.ndarray | None = None, **geometry: object) -> Path:
    """Write a CT DICOM series folder (thinct's own writer, as a scanner export stand-in)."""
    scratch = folder.parent / f"{folder.name}-source.mha"
    write_scan(scratch, array, **geometry)  # type: ignore[arg-type]
    write_volume(read_volume(scratch), folder)
    scratch.unlink()
    return folder


def read(path: Path) -> sitk.Image:
    """Read an output back: an image file, or a DICOM series folder."""
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def voxels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(read(path))


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry below ``folder``: files by content hash, folders and links by kind."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            entries[key] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            entries[key] = "folder"
        else:
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def staging_left(folder: Path) -> list[Path]:
    """Hidden staging folders of the atomic writer that a run left behind."""
    return sorted(p for p in folder.rglob("*") if p.name.endswith(".thinct-tmp"))


@dataclass(frozen=True)
class Done:
    """A finished `thinct` run in its own folder, with the folder's snapshot from before it."""

    folder: Path
    before: dict[str, str]
    result: subprocess.CompletedProcess[str]


def run_family(
    root: Path, cases: Mapping[str, Callable[[Path], list[object]]]
) -> dict[str, Done | BaseException]:
    """Run a family of independent cases, each in its own folder ``root/NAME``: the case's
    setup writes its inputs there and returns the arguments, run with that folder as the
    working directory.

    Setups run one after the other in this thread (thinct's readers and writers redirect the
    process-wide stderr descriptor while ITK works, which threads must not interleave); only
    the `thinct` subprocesses run concurrently.
    """
    prepared: dict[str, tuple[Path, list[object], dict[str, str]] | BaseException] = {}
    for name, setup in cases.items():
        folder = root / name
        folder.mkdir()
        try:
            args = setup(folder)
            prepared[name] = (folder, args, snapshot(folder))
        except Exception as error:  # reported by the test that owns the case
            prepared[name] = error

    def job(name: str) -> Done:
        ready = prepared[name]
        if isinstance(ready, BaseException):
            raise ready
        folder, args, before = ready
        return Done(folder, before, thinct(*args, cwd=folder))

    return run_concurrently({name: (lambda name=name: job(name)) for name in cases})
