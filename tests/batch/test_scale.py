"""Batch runs at scale: `--shard I/N`, `--workers N`, torchrun, and every command of
docs/scale.md.

Rules under test: shards partition any job list exactly and a job keeps its shard when files
are added; a sharded run writes its shard only, and all shards together write every output
once; bad shard values are one usage error before anything is read; workers write the same
files as one process, report a broken file as failed while the others are written, and skip
existing outputs (`simulate` too); a worker that dies fails its scan alone; Ctrl-C or SIGTERM
stops the workers and leaves nothing partial; torchrun's processes split a folder and one with
a failure waits for the others before it exits.

Scans are 64 x 64 x 8 crops of the shipped example (geometry kept). Runs interpolate (`--method
linear`) except the doc commands, which run the default model as the page does. Spawned
workers import their modules (torch, for a model) in a few seconds: worker runs are few.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.cli import assert_ok, show, staging_left, stderr_lines, thinct, thinct_in_process
from helpers.paths import EXAMPLES, ROOT

from thinct.batch.jobs import Job
from thinct.batch.shards import Shard, Share, job_key
from thinct.batch.workers import threads_per_worker

EXAMPLE = EXAMPLES / "lidc0002_crop_5mm.nii.gz"
THIN_SIZE = (64, 64, 40)  # 8 slices of 5 mm at 1 mm (edges)
LINUX = pytest.mark.skipif(sys.platform != "linux", reason="uses procps' ps and process groups")


def _crop(target: Path, index: int = 0, size: int = 64, slices: int = 8) -> Path:
    """A crop of the example scan, its geometry kept (the crop's origin is where it lies)."""
    image = sitk.ReadImage(str(EXAMPLE))
    x, y = 32 * (index % 5), 32 * ((index // 5) % 5)
    target.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image[x : x + size, y : y + size, :slices], str(target))
    return target


def _broken(target: Path) -> Path:
    """A scan whose second half is missing (a truncated download)."""
    data = _crop(target).read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def _outputs(folder: Path) -> set[str]:
    """Output files below ``folder`` (relative paths), staging folders left out."""
    if not folder.exists():
        return set()
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and ".thinct-tmp" not in str(path)
    }


def _names_in_shards(count: int, per_shard: int = 1, prefix: str = "scan") -> list[str]:
    """File names whose outputs fall ``per_shard`` into each shard of ``count`` (in shard
    order), so that a test knows which run processes which scan."""
    wanted: dict[int, list[str]] = {index: [] for index in range(1, count + 1)}
    for number in range(1000):
        name = f"{prefix}{number}.nii.gz"
        index = next(i for i in wanted if Share(Shard(i, count)).holds(name))
        if len(wanted[index]) < per_shard:
            wanted[index].append(name)
        if all(len(names) == per_shard for names in wanted.values()):
            return [name for index in sorted(wanted) for name in wanted[index]]
    raise AssertionError("no names found")


def _summary(result: subprocess.CompletedProcess[str]) -> str:
    return stderr_lines(result)[-1]


# --- shards -----------------------------------------------------------------------------


def _jobs(names: list[str], output: Path) -> list[Job]:
    return [Job(Path("archive") / name, output / name) for name in names]


def test_shards_partition_the_jobs_exactly_and_do_not_move_when_files_are_added():
    output = Path("thin")
    names = [f"patient{i}/series{j}.nii.gz" for i in range(20) for j in range(3)]
    more = names + [f"new{i}.mha" for i in range(15)]
    for count in range(1, 6):
        shards = [Share(Shard(index, count)) for index in range(1, count + 1)]
        picked = [share.select(_jobs(names, output), output, batch=True) for share in shards]
        flat = [job.target for jobs in picked for job in jobs]
        assert sorted(flat) == sorted(job.target for job in _jobs(names, output)), count
        assert all(picked), f"an empty shard among {count} for 60 jobs"
        later = [share.select(_jobs(more, output), output, batch=True) for share in shards]
        for before, after in zip(picked, later, strict=True):
            assert set(before) <= set(after), "a job moved to another shard"


def test_torchrun_ranks_split_a_shard_and_alone_match_the_shard_option():
    output = Path("thin")
    jobs = _jobs([f"scan{i}.nii.gz" for i in range(80)], output)
    for world in (2, 3):
        ranks = [
            Share(rank=Shard(r, world)).select(jobs, output, True) for r in range(1, world + 1)
        ]
        shards = [Share(Shard(i, world)).select(jobs, output, True) for i in range(1, world + 1)]
        assert ranks == shards  # torchrun's rank r does what --shard r+1/WORLD does
        for count in (2, 4):  # --shard I/N under torchrun: the ranks split shard I
            for index in range(1, count + 1):
                shard = Share(Shard(index, count)).select(jobs, output, True)
                parts = [
                    Share(Shard(index, count), Shard(r, world)).select(jobs, output, True)
                    for r in range(1, world + 1)
                ]
                assert sorted(j.target for p in parts for j in p) == sorted(j.target for j in shard)
                assert all(parts), "a rank left empty (N and WORLD_SIZE share a factor)"


def test_a_single_job_belongs_to_one_shard_by_its_output_name():
    job = Job(Path("in/scan.nii.gz"), Path("out/thin.nii.gz"))
    assert job_key(job, Path("out/thin.nii.gz"), batch=False) == "thin.nii.gz"
    holders = [i for i in range(1, 5) if Share(Shard(i, 4)).holds("thin.nii.gz")]
    assert len(holders) == 1


@pytest.mark.parametrize("value", ["0/4", "5/4", "a/b", "1/0", "2", "-1/4", "1/2/3", ""])
def test_bad_shard_values_are_one_usage_error_before_anything_is_read(capfd, value):
    """The input and the model do not exist: the shard is what is reported."""
    result = thinct_in_process(
        capfd, "upsample", "missing/", "out/", "--shard", value, "--model", "no/such/model"
    )
    assert result.returncode == 2, show(result)
    (line,) = stderr_lines(result)
    assert line.startswith("error: --shard "), show(result)


def test_fewer_than_one_worker_is_a_usage_error(capfd):
    result = thinct_in_process(capfd, "upsample", "missing/", "out/", "--workers", "0")
    assert result.returncode == 2, show(result)
    (line,) = stderr_lines(result)
    assert line.startswith("error: Invalid value for '--workers'"), show(result)


def test_a_torchrun_environment_that_is_not_one_is_a_usage_error(capfd, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    result = thinct_in_process(capfd, "simulate", "missing/", "out/")
    assert result.returncode == 2, show(result)
    assert stderr_lines(result) == [
        "error: WORLD_SIZE=2 and RANK=2 are not a torchrun process (RANK from 0 to WORLD_SIZE - 1)"
    ]


def test_sharded_runs_write_their_shard_once_and_skip_it_when_new_scans_arrive(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.chdir(tmp_path)
    names = _names_in_shards(3, per_shard=2)
    for index, name in enumerate(names):
        _crop(tmp_path / "archive" / name, index)
    written: list[set[str]] = []
    for index in (1, 2, 3):
        before = _outputs(tmp_path / "thin")
        result = thinct_in_process(
            capfd, "upsample", "archive", "thin", "--shard", f"{index}/3", "--method", "linear"
        )
        assert_ok(result)
        assert (
            _summary(result) == f"2 written, 0 skipped, 0 failed (outputs in thin, shard {index}/3)"
        )
        written.append(_outputs(tmp_path / "thin") - before)
        assert written[-1] == set(names[2 * index - 2 : 2 * index])
    assert _outputs(tmp_path / "thin") == set(names)
    for name in names:
        assert sitk.ReadImage(str(tmp_path / "thin" / name)).GetSize() == THIN_SIZE

    new = _names_in_shards(3, prefix="new")
    for index, name in enumerate(new):
        _crop(tmp_path / "archive" / name, index)
    for index in (1, 2, 3):
        result = thinct_in_process(
            capfd, "upsample", "archive", "thin", "--shard", f"{index}/3", "--method", "linear"
        )
        assert_ok(result)
        assert _summary(result).startswith("1 written, 2 skipped, 0 failed"), show(result)
    assert _outputs(tmp_path / "thin") == set(names + new)


def test_a_single_input_is_written_by_its_shard_only(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    _crop(tmp_path / "thick.nii.gz")
    holder = next(i for i in (1, 2) if Share(Shard(i, 2)).holds("thin.nii.gz"))
    other = 3 - holder

    idle = thinct_in_process(
        capfd, "simulate", "thick.nii.gz", "thin.nii.gz", "--shard", f"{other}/2"
    )
    assert_ok(idle)
    assert stderr_lines(idle) == [f"nothing to do for shard {other}/2"]
    assert not (tmp_path / "thin.nii.gz").exists()

    busy = thinct_in_process(
        capfd, "upsample", "thick.nii.gz", "thin.nii.gz", "--shard", f"{holder}/2", "-m", "linear"
    )
    assert_ok(busy)
    assert stderr_lines(busy) == ["wrote thin.nii.gz"]


# --- workers ----------------------------------------------------------------------------


def _batch_with_a_broken_and_a_finished_scan(folder: Path) -> None:
    for index, name in enumerate(("a.nii.gz", "b.mha", "sub/c.nii.gz", "done.nii.gz")):
        _crop(folder / "archive" / name, index)
    _broken(folder / "archive" / "broken.nii.gz")
    (folder / "thin").mkdir()
    (folder / "thin" / "done.nii.gz").write_text("an earlier output")


def test_workers_write_the_same_files_and_report_a_broken_one(tmp_path, monkeypatch, capfd):
    for name in ("one", "two"):
        _batch_with_a_broken_and_a_finished_scan(tmp_path / name)
    monkeypatch.chdir(tmp_path / "one")
    single = thinct_in_process(capfd, "upsample", "archive", "thin", "--method", "linear")

    parallel = thinct(
        "upsample", "archive", "thin", "--method", "linear", "--workers", "2", cwd=tmp_path / "two"
    )

    for result in (single, parallel):
        assert result.returncode == 1, show(result)
        lines = stderr_lines(result)
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: archive/broken.nii.gz: "), show(
            result
        )
        assert "skipped archive/done.nii.gz: thin/done.nii.gz exists" in lines, show(result)
        assert _summary(result) == "3 written, 1 skipped, 1 failed (outputs in thin)"
        assert "Traceback" not in result.stderr
    written = {"a.nii.gz", "b.mha", "sub/c.nii.gz", "done.nii.gz"}
    assert _outputs(tmp_path / "one" / "thin") == _outputs(tmp_path / "two" / "thin") == written
    for name in written:  # byte for byte: the workers run the very same code
        first = (tmp_path / "one" / "thin" / name).read_bytes()
        assert first == (tmp_path / "two" / "thin" / name).read_bytes(), name
    assert (tmp_path / "two" / "thin" / "done.nii.gz").read_text() == "an earlier output"
    assert staging_left(tmp_path) == []


def test_simulate_with_workers_writes_the_same_files(tmp_path, monkeypatch, capfd):
    thin = sitk.ReadImage(str(EXAMPLES / "lidc0002_crop_1.25mm.nii.gz"))
    for index in range(3):
        sitk.WriteImage(
            thin[32 * index : 32 * index + 64, :64, :24], str(tmp_path / f"{index}.mha")
        )
    monkeypatch.chdir(tmp_path)
    single = thinct_in_process(capfd, "simulate", "0.mha", "1.mha", "2.mha", "one")

    parallel = thinct_in_process(
        capfd, "simulate", "0.mha", "1.mha", "2.mha", "two", "--workers", "3"
    )

    for result in (single, parallel):
        assert_ok(result)
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two") == {"0.mha", "1.mha", "2.mha"}
    for name in _outputs(tmp_path / "one"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


@LINUX
def test_a_worker_that_dies_fails_its_scan_alone(tmp_path):
    """The out-of-memory killer, played by SIGKILL: the scan the worker held fails on one
    line, its staging folder goes, a new worker takes over and the other scans are written."""
    for index in range(4):
        _crop(tmp_path / "archive" / f"s{index}.nii.gz", index, size=128, slices=16)
    process = subprocess.Popen(
        [sys.executable, "-m", "thinct", "upsample", "archive", "thin", "--method", "linear"]
        + ["--spacing", "0.2", "--workers", "2"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        encoding="utf-8",
    )
    deadline = time.monotonic() + 60
    while not (workers := _workers_of(process.pid)):
        assert time.monotonic() < deadline and process.poll() is None, "no worker started"
        time.sleep(0.01)
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert re.fullmatch(
        r"error: archive/s\d\.nii\.gz: the worker process was killed \(SIGKILL\); "
        r"if the memory ran out, use fewer --workers",
        errors[0],
    )
    failed = re.search(r"s\d\.nii\.gz", errors[0])[0]
    assert _outputs(tmp_path / "thin") == {f"s{i}.nii.gz" for i in range(4)} - {failed}
    assert stderr.splitlines()[-1] == "3 written, 0 skipped, 1 failed (outputs in thin)"
    assert staging_left(tmp_path) == []


def _workers_of(pid: int) -> list[int]:
    """The worker processes a `thinct` process started (its spawned children)."""
    found = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, encoding="utf-8"
    )
    return [
        int(line.split()[0])
        for line in found.stdout.splitlines()
        if "multiprocessing.spawn" in line
    ]


def test_threads_divide_the_cores_unless_omp_num_threads_says():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads_per_worker(1, {}) == cores
    assert threads_per_worker(cores * 2, {}) == 1
    assert threads_per_worker(4, {"OMP_NUM_THREADS": "3"}) == 3


def _left_in_session(session: int) -> list[str]:
    """Processes still alive in a session a few seconds after its leader ended (zombies that
    init has not reaped yet are dead). Multiprocessing's resource tracker ends on its own once
    the main process is gone, which may take a moment on a busy machine."""
    deadline = time.monotonic() + 10
    while True:
        found = subprocess.run(
            ["ps", "-ww", "-o", "stat=,pid=,args=", "-s", str(session)],
            capture_output=True,
            encoding="utf-8",
        )
        alive = [line for line in found.stdout.splitlines() if not line.lstrip().startswith("Z")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@LINUX
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_stopping_a_run_with_workers_leaves_no_partial_output(tmp_path, stop):
    """Ctrl-C reaches every process of the terminal's group; SIGTERM (scancel, kill) only the
    main one. Either way the run ends its workers while one is writing, removes the staging
    folder, says what it wrote and what it did not, and exits 130; every output left is
    complete."""
    for index in range(6):  # enough that some are left when the signal comes
        _crop(tmp_path / "archive" / f"s{index}.nii.gz", index, size=128, slices=16)
    process = subprocess.Popen(
        [sys.executable, "-m", "thinct", "upsample", "archive", "thin", "--method", "linear"]
        + ["--spacing", "0.1", "--workers", "2"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not staging_left(tmp_path / "thin") and process.poll() is None:
        assert time.monotonic() < deadline, "no output was ever staged"
        time.sleep(0.01)
    if stop == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert lines[-1] == "error: interrupted", stderr
    assert re.fullmatch(
        r"\d written, 0 skipped, 0 failed, \d not done \(outputs in thin\)", lines[-2]
    )
    assert staging_left(tmp_path) == []
    for name in _outputs(tmp_path / "thin"):
        assert sitk.ReadImage(str(tmp_path / "thin" / name)).GetSize() == (128, 128, 800)
    assert _left_in_session(process.pid) == []


# --- torchrun ---------------------------------------------------------------------------


def test_torchrun_processes_split_a_folder_and_a_failure_waits_for_the_others(tmp_path):
    """Rank 0's share is one broken scan, rank 1's three good ones: rank 0 fails at once, and
    torchrun would stop rank 1 the moment rank 0 exits; rank 0 waits for it instead."""
    names = _names_in_shards(2, per_shard=3)  # shard 1/2 (rank 0) first, then shard 2/2
    broken, good = names[0], names[3:]
    _broken(tmp_path / "archive" / broken)
    for index, name in enumerate(good):
        _crop(tmp_path / "archive" / name, index, size=128, slices=16)

    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "thinct", "upsample", "archive", "thin", "--method", "linear"],
        cwd=tmp_path,
        capture_output=True,
        encoding="utf-8",
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        timeout=300,
    )

    assert result.returncode == 1, show(result)  # torchrun's code: a process failed
    lines = result.stderr.splitlines()
    assert f"error: archive/{broken}: " in result.stderr, show(result)
    failed = "0 written, 0 skipped, 1 failed (outputs in thin, shard 1/2, torchrun rank 0)"
    written = "3 written, 0 skipped, 0 failed (outputs in thin, shard 2/2, torchrun rank 1)"
    assert failed in lines and written in lines
    # Whether rank 0 had to wait depends on which rank reached torchrun's store first, which
    # the order of their lines on stderr does not tell (a CI run saw rank 0's summary first
    # and no wait). What the wait protects is asserted: rank 1 wrote all of its share.
    assert _outputs(tmp_path / "thin") == set(good)
    assert staging_left(tmp_path) == []


# --- the commands of docs/scale.md ------------------------------------------------------


def _doc_blocks() -> list[str]:
    page = (ROOT / "docs" / "scale.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.*?)```", page, flags=re.DOTALL)


def _commands(block: str, environ: dict[str, str] | None = None) -> Iterator[list[str]]:
    """Each command line of a block as words, shell comments dropped and ``$VARIABLES``
    expanded from ``environ`` (only what the page uses; no shell runs)."""
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield [re.sub(r"\$(\w+)", lambda m: (environ or {})[m[1]], word) for word in words]


def _run_doc_line(capfd, words: list[str]) -> subprocess.CompletedProcess[str]:
    assert words[0] == "thinct", words
    return thinct_in_process(capfd, *words[1:])


@pytest.fixture
def doc_archive(tmp_path, monkeypatch) -> Path:
    """archive/ with three scans, one in each of the page's three shards."""
    monkeypatch.chdir(tmp_path)
    for index, name in enumerate(_names_in_shards(3)):
        _crop(tmp_path / "archive" / name, index)
    return tmp_path


def test_the_page_has_the_blocks_these_tests_run():
    assert len(_doc_blocks()) == 5


def test_doc_workers_block_writes_what_one_process_writes(doc_archive, capfd):
    """The one worker run with the default model: the same scans as in one process, to the
    HU (the workers run fewer torch threads each, so sums may round the other way)."""
    (block,) = _doc_blocks()[:1]
    (words,) = _commands(block)
    assert "--workers" in words
    reference = thinct_in_process(capfd, "upsample", "archive/", "single/")
    assert_ok(reference)

    result = _run_doc_line(capfd, words)

    assert_ok(result)
    assert _summary(result) == "3 written, 0 skipped, 0 failed (outputs in thin)"
    assert _outputs(doc_archive / "thin") == _outputs(doc_archive / "single") != set()
    for name in _outputs(doc_archive / "single"):
        ours, theirs = (sitk.ReadImage(str(doc_archive / d / name)) for d in ("thin", "single"))
        assert ours.GetSize() == theirs.GetSize() == THIN_SIZE
        assert ours.GetOrigin() == theirs.GetOrigin()
        difference = sitk.GetArrayFromImage(ours).astype(int) - sitk.GetArrayFromImage(theirs)
        assert np.abs(difference).max() <= 1, name


def test_doc_shard_block_writes_each_scan_once(doc_archive, capfd):
    names = _names_in_shards(3)
    for index, words in enumerate(_commands(_doc_blocks()[1]), start=1):
        assert words[-2:] == ["--shard", f"{index}/3"]
        before = _outputs(doc_archive / "thin")
        assert_ok(_run_doc_line(capfd, words))
        assert _outputs(doc_archive / "thin") - before == {names[index - 1]}
    assert _outputs(doc_archive / "thin") == set(names)


def test_doc_slurm_script_covers_every_shard(doc_archive, capfd):
    """The script runs as Slurm would run it: once per array index, with
    SLURM_ARRAY_TASK_ID set (each shard holds one scan here, so no worker starts)."""
    block = _doc_blocks()[2]
    first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", block).groups())
    for task in range(first, last + 1):
        (words,) = _commands(block, {"SLURM_ARRAY_TASK_ID": str(task)})
        assert_ok(_run_doc_line(capfd, words))
    assert _outputs(doc_archive / "thin") == set(_names_in_shards(3))


def test_doc_rerun_block_does_only_the_new_scans_of_its_shard(doc_archive, capfd):
    assert_ok(thinct_in_process(capfd, "upsample", "archive", "thin", "--method", "linear"))
    new = _names_in_shards(3, prefix="new")
    for index, name in enumerate(new):
        _crop(doc_archive / "archive" / name, index)
    (words,) = _commands(_doc_blocks()[3])

    result = _run_doc_line(capfd, words)

    assert_ok(result)
    assert _summary(result) == "1 written, 1 skipped, 0 failed (outputs in thin, shard 2/3)"
    assert _outputs(doc_archive / "thin") == set(_names_in_shards(3) + [new[1]])


def test_doc_torchrun_block(doc_archive, capfd, monkeypatch):
    """torchrun's part is parsed by torchrun's own parser; each of its processes is then run
    here, one after the other, with the environment torchrun gives it. The page's GPUs are not
    needed for that: the processes do on the CPU what they would do on their GPUs, and a real
    torchrun on the CPU is tested above."""
    everything, shard_two = (
        _run_as_torchrun(capfd, monkeypatch, w) for w in _commands(_doc_blocks()[4])
    )

    assert _outputs(doc_archive / "thin") == set(_names_in_shards(3))
    assert sum(int(line.split()[0]) for line in everything if "written" in line) == 3
    # The second line: four processes share shard 2/3, one scan, already written by the first.
    assert len([line for line in shard_two if line.startswith("0 written, 1 skipped")]) == 1
    idle = [line for line in shard_two if line.startswith("nothing to do for shard 2/3, part ")]
    assert len(idle) == 3, shard_two


def _run_as_torchrun(capfd, monkeypatch, words: list[str]) -> list[str]:
    """Parse a torchrun command with torchrun's parser and run each of its processes here, in
    turn, with the variables torchrun sets; the last line each one printed."""
    from torch.distributed.run import get_args_parser

    assert words[0] == "torchrun"
    arguments = get_args_parser().parse_args(words[1:])
    assert arguments.standalone and arguments.module and arguments.training_script == "thinct"
    world = int(arguments.nproc_per_node)
    last_lines = []
    for rank in range(world):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        result = thinct_in_process(capfd, *arguments.training_script_args)
        assert_ok(result)
        last_lines.append(_summary(result))
    return last_lines
