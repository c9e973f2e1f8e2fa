"""Fixtures of the DICOM node's tests: a real Orthanc, `thinct serve` subprocesses beside it,
one node per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.orthanc import SENDER_AE, NodeProcess, Orthanc, free_port, require_pynetdicom


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    require_pynetdicom()
    server = Orthanc(tmp_path / "orthanc", node_port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_node(tmp_path: Path, orthanc: Orthanc) -> Iterator[Callable[..., NodeProcess]]:
    """Start `thinct serve` on Orthanc's node port, allowing Orthanc and the test's sender,
    sending to Orthanc, with a 1 s quiet period and linear interpolation unless told
    otherwise; every node started is stopped at the end."""
    started: list[NodeProcess] = []

    def start(*arguments: str, method: str = "linear") -> NodeProcess:
        chosen = ["--method", method] if method else []
        node = NodeProcess(
            tmp_path / "spool",
            orthanc.node_port,
            [
                "--allow",
                "ORTHANC",
                "--allow",
                SENDER_AE,
                "--destination",
                orthanc.destination,
                "--quiet-period",
                "1",
                *chosen,
                *arguments,
            ],
            tmp_path / "node.log",
        )
        node.start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()
