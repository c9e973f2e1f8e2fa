"""Fixtures of the DICOM node's tests: a real Orthanc, `thinct serve` subprocesses beside it,
one node per test; and a node running in a thread of the test, for faults set up in its spool
before it starts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def node_in_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[..., Any]]:
    """Start a `thinct.node.service.Node` on ``tmp_path / "spool"`` in a thread (linear
    interpolation, a 0.1 s quiet period, on a free loopback port; ``settings`` override), its
    log in ``caplog``. At the end it is stopped, and the test fails if the node died on its
    own: an exception that ends `Node.run` would have ended ``thinct serve``."""
    require_pynetdicom()
    from thinct.node.service import Node, StopRequest
    from thinct.node.settings import load_settings

    caplog.set_level(logging.INFO, logger="thinct.node")
    running: list[tuple[Node, threading.Thread, list[BaseException]]] = []

    def start(**settings: Any) -> Node:
        values = {
            "spool": str(tmp_path / "spool"),
            "allow": (SENDER_AE,),
            "destinations": (f"PACS@127.0.0.1:{free_port()}",),
            "method": "linear",
            "quiet_period": 0.1,
            "host": "127.0.0.1",
            "port": free_port(),
            **settings,
        }
        node = Node(load_settings(None, values), StopRequest())
        died: list[BaseException] = []

        def run() -> None:
            try:
                node.run()
            except BaseException as error:  # noqa: BLE001 - reported by the fixture
                died.append(error)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        running.append((node, thread, died))
        return node

    yield start
    for node, thread, died in running:
        node.stop.request("the test ended")
        thread.join(60)
        assert not died, f"the node died: {died[0]!r}"
