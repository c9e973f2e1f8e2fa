"""Which of a plan's jobs this process runs: ``--shard I/N`` and torchrun's processes.

A job's shard follows from a hash of its output path relative to the output folder, and from
nothing else: N machines given the same inputs split them without talking to each other, and
a job keeps its shard when scans are added to the archive or removed from it (a re-run after
new scans arrived processes the new ones, each on one machine, and skips the rest).

Under torchrun (``WORLD_SIZE`` > 1) the processes split the work the same way: process RANK
takes shard RANK + 1 of WORLD_SIZE, and with ``--shard`` as well, its part of that shard. No
process group is started; the processes only meet at the end (`finish_torchrun_process`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from thinct.batch.jobs import Job
from thinct.errors import Argument, UsageError

_SHARD = re.compile(r"([0-9]+)/([0-9]+)")
_WHOLE = re.compile(r"[0-9]+")
_KEY_BYTES = 8  # each level of sharding reads its own 8 bytes of the digest
_DEVICES_WITH_GPU = ("auto", "cuda")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count``, counted from 1 (``--shard 1/4`` is the first)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``I/N`` with 1 <= I <= N; anything else is a usage error that shows the expected form."""
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            Argument("shard"), f" must be I/N, share I of N counted from 1 (e.g. 1/4), got {text!r}"
        )
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 1 <= index <= count:
        raise UsageError(
            Argument("shard", text), ": I must be from 1 to N and N at least 1 (e.g. 1/4)"
        )
    return Shard(index, count)


def torchrun_rank(environ: Mapping[str, str] = os.environ) -> Shard | None:
    """This process's shard under torchrun, RANK + 1 of WORLD_SIZE; None outside torchrun (or
    with a single process)."""
    if "WORLD_SIZE" not in environ:
        return None
    world, rank = environ["WORLD_SIZE"], environ.get("RANK", "0")
    if not (_WHOLE.fullmatch(world) and _WHOLE.fullmatch(rank)) or not int(rank) < int(world):
        raise UsageError(
            f"WORLD_SIZE={world} and RANK={rank} are not a torchrun process "
            "(RANK from 0 to WORLD_SIZE - 1)"
        )
    return Shard(int(rank) + 1, int(world)) if int(world) > 1 else None


@dataclass(frozen=True)
class Share:
    """The jobs this process runs: its ``--shard`` and, under torchrun, its rank's part of it."""

    shard: Shard | None = None
    rank: Shard | None = None

    @classmethod
    def of(cls, shard: str | None, environ: Mapping[str, str] = os.environ) -> Share:
        """From the ``--shard`` option and the environment torchrun sets (checked, both)."""
        return cls(parse_shard(shard) if shard is not None else None, torchrun_rank(environ))

    @property
    def whole(self) -> bool:
        """True when this process runs every job (no --shard, no torchrun)."""
        return self.shard is None and self.rank is None

    def holds(self, key: str) -> bool:
        """Whether the job with this key is ours. Each level reads its own part of one SHA-256
        digest, so a torchrun rank's part of a shard is as even as the shard itself (the same
        number modulo N and modulo WORLD_SIZE would leave ranks empty when they share a
        factor). Alone, a rank uses the first part: torchrun's 2 processes split a folder
        exactly like ``--shard 1/2`` and ``--shard 2/2``."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        levels = [level for level in (self.shard, self.rank) if level is not None]
        return all(
            int.from_bytes(digest[k * _KEY_BYTES : (k + 1) * _KEY_BYTES], "big") % level.count
            == level.index - 1
            for k, level in enumerate(levels)
        )

    def select(self, jobs: Sequence[Job], output: Path, batch: bool) -> list[Job]:
        return [job for job in jobs if self.holds(job_key(job, output, batch))]

    def __str__(self) -> str:
        if self.rank is None:
            return f"shard {self.shard}" if self.shard is not None else "every job"
        process = f"torchrun rank {self.rank.index - 1}"
        if self.shard is None:
            return f"shard {self.rank}, {process}"
        return f"shard {self.shard}, part {self.rank}, {process}"


def job_key(job: Job, output: Path, batch: bool) -> str:
    """What decides a job's shard: its output path relative to the output folder (a batch) or
    the output's name (a single job), so the same archive splits the same way wherever the
    output folder lies."""
    if batch:
        return job.target.relative_to(output).as_posix()
    return job.target.name


def use_local_gpu(device: str, environ: Mapping[str, str] = os.environ) -> None:
    """Under torchrun, make GPU LOCAL_RANK the current one, so that ``--device auto`` or
    ``cuda`` puts each process on its own GPU instead of all of them on the first. Call it
    before the model is loaded. More processes than GPUs share them (LOCAL_RANK modulo the
    count)."""
    local = environ.get("LOCAL_RANK", "")
    if device not in _DEVICES_WITH_GPU or not _WHOLE.fullmatch(local):
        return
    if torchrun_rank(environ) is None:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(local) % torch.cuda.device_count())


def finish_torchrun_process(
    failed: bool, say: Callable[[str], None], environ: Mapping[str, str] = os.environ
) -> None:
    """Under torchrun, tell the other processes this one is done; when it failed, wait until
    they are all done before it exits.

    torchrun stops every process as soon as one exits with an error. A process whose share
    held a broken scan would otherwise stop the others in the middle of theirs, and do so again
    on every re-run. The processes count themselves done in the store torchrun's agent keeps
    for its processes (a key-value store, no process group). Outside torchrun, or with a
    launcher that keeps no such store, there is nothing to wait for.
    """
    try:
        rank = torchrun_rank(environ)
    except UsageError:
        return  # already reported as this run's error
    if rank is None or environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return
    from torch.distributed import TCPStore

    key = f"thinct/finished/{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    try:
        store = TCPStore(
            environ["MASTER_ADDR"],
            int(environ["MASTER_PORT"]),
            is_master=False,
            timeout=timedelta(seconds=60),
        )
        finished = store.add(key, 1)
        if failed and finished < rank.count:
            say("waiting for the other torchrun processes to finish before exiting")
        while failed and finished < rank.count:
            time.sleep(1.0)
            finished = store.add(key, 0)
    except (RuntimeError, KeyError, ValueError) as error:  # the store's errors are RuntimeErrors
        say(f"could not reach torchrun's store ({error}); not waiting for the other processes")
