"""A real Orthanc (the Debian package) on loopback ports with a generated configuration, and a
`thinct serve` subprocess beside it: the DICOM node's tests drive both the way a hospital's IT
would, through Orthanc's REST API and DICOM. Tests skip with the reason where Orthanc or
pynetdicom is not installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
NODE_AE = "THINCT"
ORTHANC_AE = "ORTHANC"
SENDER_AE = "MODALITY"  # the tests' stand-in for a scanner


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.2) -> Any:
    """Poll ``check`` until it returns something true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Orthanc:
    """One Orthanc server with its own storage; `start` and `stop` keep the storage, so a
    test can take it down and bring it back."""

    folder: Path
    node_port: int
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def destination(self) -> str:
        return f"{ORTHANC_AE}@127.0.0.1:{self.dicom_port}"

    def start(self) -> None:
        executable = shutil.which("Orthanc")
        if executable is None:
            pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
        config = {
            "Name": "thinct-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AE,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {"thinct": [NODE_AE, "127.0.0.1", self.node_port]},
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        path = self.folder / "orthanc.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config), encoding="utf-8")
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen([executable, str(path)], stdout=log, stderr=log)
        log.close()
        wait_for(self._answers, 30, "Orthanc to start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def _answers(self) -> bool:
        try:
            self.get("/system")
        except OSError:
            return False
        return True

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: bytes) -> Any:
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())

    def upload(self, folder: Path) -> str:
        """Upload every file of a series folder; returns Orthanc's series ID."""
        series = set()
        for path in sorted(folder.iterdir()):
            series.add(self.post("/instances", path.read_bytes())["ParentSeries"])
        assert len(series) == 1, series
        return series.pop()

    def send_to_node(self, orthanc_series_id: str) -> Any:
        """What a PACS user does: send the series to the thinct node (C-STORE by Orthanc)."""
        return self.post("/modalities/thinct/store", json.dumps(orthanc_series_id).encode())

    def series_tags(self) -> list[dict[str, str]]:
        """The main DICOM tags of every series Orthanc holds, with its instance count."""
        found = []
        for series_id in self.get("/series"):
            series = self.get(f"/series/{series_id}")
            tags = dict(series["MainDicomTags"])
            tags["Instances"] = len(series["Instances"])
            tags["ID"] = series_id
            found.append(tags)
        return found

    def thin_series(self) -> list[dict[str, str]]:
        return [s for s in self.series_tags() if "SYNTHETIC" in s.get("SeriesDescription", "")]


@dataclass
class NodeProcess:
    """`python -m thinct serve` as a subprocess, its log in a file."""

    spool: Path
    port: int
    arguments: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "thinct", "serve", "--spool", str(self.spool)]
        command += ["--port", str(self.port), "--host", "127.0.0.1", *self.arguments]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
        log.close()
        wait_for(
            lambda: "listening on" in self.log() or self.process.poll() is not None,
            120,
            "the node to listen",
        )
        assert self.process.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, number: int) -> int:
        """Send a signal and wait for the process to end; returns its exit code."""
        assert self.process is not None
        self.process.send_signal(number)
        code = self.process.wait(timeout=120)
        self.process = None
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)

    def wait_for_log(self, text: str, timeout: float = 180, count: int = 1) -> None:
        wait_for(lambda: self.log().count(text) >= count, timeout, f"{text!r} in the node log")


def require_pynetdicom() -> None:
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        pytest.skip("pynetdicom is not installed (pip install 'thinct[node]')")


def send(
    files: list[Path], port: int, ae_title: str = SENDER_AE, tls: object = None
) -> list[int] | None:
    """C-STORE the files as a modality would; the statuses, or None when the association was
    not accepted."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage

    sender = AE(ae_title=ae_title)
    sender.acse_timeout = sender.network_timeout = 5
    sender.add_requested_context(CTImageStorage)
    sender.add_requested_context(MRImageStorage)
    association = sender.associate("127.0.0.1", port, ae_title=NODE_AE, tls_args=tls)
    if not association.is_established:
        return None
    try:
        return [int(association.send_c_store(pydicom.dcmread(path)).Status) for path in files]
    finally:
        association.release()


def echo(port: int, ae_title: str = SENDER_AE, tls: object = None) -> int | None:
    """C-ECHO: the status, or None when the association was refused or aborted."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    sender = AE(ae_title=ae_title)
    sender.acse_timeout = sender.network_timeout = 5
    sender.add_requested_context(Verification)
    association = sender.associate("127.0.0.1", port, ae_title=NODE_AE, tls_args=tls)
    if not association.is_established:
        return None
    try:
        status = association.send_c_echo()
        return int(status.Status) if "Status" in status else None
    finally:
        if association.is_established:
            association.release()
