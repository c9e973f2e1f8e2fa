"""`thinct serve` beside a real Orthanc: series sent the way a PACS user sends them (Orthanc's
REST API, then C-STORE), thin series found back in Orthanc, and the faults a node must survive:
SIGKILL in the middle of a job, Orthanc down while sending, junk and strangers."""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers.dicom_series import thick_series
from helpers.orthanc import Orthanc, echo, send, wait_for
from helpers.paths import real_dicom_folder

from thinct.node.database import Queue

MR = {"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}


def instance_positions(orthanc: Orthanc, series_id: str) -> np.ndarray:
    """The z of every instance of an Orthanc series, sorted."""
    instances = orthanc.get(f"/series/{series_id}/instances")
    positions = [
        float(i["MainDicomTags"]["ImagePositionPatient"].split("\\")[2]) for i in instances
    ]
    return np.sort(np.array(positions))


def wait_for_thin_series(orthanc: Orthanc, count: int, instances: int, timeout: float = 240):
    """Wait until Orthanc holds ``count`` thin series of ``instances`` instances each."""

    def done() -> list[dict[str, str]] | None:
        thin = orthanc.thin_series()
        complete = [s for s in thin if s["Instances"] == instances]
        return thin if len(complete) == count and len(thin) == count else None

    return wait_for(done, timeout, f"{count} thin series of {instances} instances in Orthanc")


@pytest.mark.slow  # a minute or more: .ci/run runs it with the slow tests
def test_real_series_sent_through_orthanc_comes_back_thin(orthanc, start_node, tmp_path):
    source = real_dicom_folder()
    node = start_node()
    assert echo(orthanc.node_port) == 0
    series_id = orthanc.upload(source)
    job = orthanc.send_to_node(series_id)
    assert job["InstancesCount"] == 64 and job["FailedInstancesCount"] == 0
    (thin,) = wait_for_thin_series(orthanc, 1, 320)
    original = orthanc.get(f"/series/{series_id}")["MainDicomTags"]
    assert thin["SeriesInstanceUID"] != original["SeriesInstanceUID"]
    tags = orthanc.get(f"/series/{thin['ID']}/shared-tags?simplify")
    assert float(tags["SliceThickness"]) == 1.0
    assert float(tags["SpacingBetweenSlices"]) == 1.0
    thick_z = instance_positions(orthanc, series_id)
    thin_z = instance_positions(orthanc, thin["ID"])
    np.testing.assert_allclose(np.diff(thin_z), 1.0, atol=1e-3)
    # Edges alignment: the thin slices cover the thick slabs exactly.
    assert thin_z[0] == pytest.approx(thick_z[0] - 2.0, abs=1e-3)
    assert thin_z[-1] == pytest.approx(thick_z[-1] + 2.0, abs=1e-3)
    study = orthanc.get(f"/series/{thin['ID']}/study")["MainDicomTags"]
    source_study = orthanc.get(f"/series/{series_id}/study")["MainDicomTags"]
    assert study["StudyInstanceUID"] == source_study["StudyInstanceUID"]
    header = pydicom.dcmread(next(source.glob("*.dcm")), stop_before_pixels=True)
    node.wait_for_log("sent 320 instances")
    # This series' PatientID is its PatientName; the ten series below have distinct ones.
    for patient in (str(header.PatientName), str(header.PatientID)):
        assert patient and patient not in node.log()


@pytest.mark.slow  # a minute or more: .ci/run runs it with the slow tests
def test_killed_mid_job_and_mid_send_the_series_still_arrives_once(orthanc, start_node):
    """SIGKILL while processing, restart; SIGKILL while sending, restart: one thin series."""
    source = real_dicom_folder()
    node = start_node("--method", "bspline", method="")
    orthanc.send_to_node(orthanc.upload(source))
    node.wait_for_log("processing series")
    node.signal(signal.SIGKILL)
    node = start_node("--method", "bspline", method="")
    node.wait_for_log("waits again")
    node.wait_for_log("sending series")
    node.signal(signal.SIGKILL)
    assert "sent 320 instances" not in node.log()  # killed while sending
    node = start_node("--method", "bspline", method="")
    wait_for_thin_series(orthanc, 1, 320)
    node.wait_for_log("sent 320 instances")
    assert len(orthanc.thin_series()) == 1


def test_orthanc_down_while_sending_then_back(orthanc, start_node, tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text("retry_delay: 0.5\nretry_max_delay: 1\n", encoding="utf-8")
    node = start_node("--config", str(config))
    orthanc.stop()
    assert send(thick_series(tmp_path / "series"), orthanc.node_port) == [0] * 6
    node.wait_for_log("failed (attempt 2")
    orthanc.start()
    wait_for_thin_series(orthanc, 1, 30)
    node.wait_for_log("sent 30 instances")


def test_series_that_are_not_thick_axial_ct_are_ignored(orthanc, start_node, tmp_path):
    node = start_node()
    mr = thick_series(tmp_path / "mr", **MR)
    thin = thick_series(tmp_path / "thin", slices=8)
    for path in thin:  # 1 mm apart instead of 5
        dataset = pydicom.dcmread(path)
        x, y, z = (float(v) for v in dataset.ImagePositionPatient)
        dataset.ImagePositionPatient = [x, y, -50.0 + (z + 50.0) / 5.0]
        dataset.save_as(path)
    assert send(mr, orthanc.node_port) == [0] * 6
    assert send(thin, orthanc.node_port) == [0] * 8
    node.wait_for_log("ignored series", count=2)
    assert "MR Image Storage, not CT Image Storage" in node.log()
    assert "slice spacing 1.00 mm, below 2 mm" in node.log()
    # An instance of another class in a CT series is not kept and does not close the series.
    thick = thick_series(tmp_path / "thick")
    uid = str(pydicom.dcmread(thick[0]).SeriesInstanceUID)
    stray = thick_series(tmp_path / "stray", slices=1, series_uid=uid, **MR)
    assert send(thick[:3] + stray + thick[3:], orthanc.node_port) == [0] * 7
    node.wait_for_log(f"of series {uid} not kept: MR Image Storage")
    wait_for_thin_series(orthanc, 1, 30)
    node.wait_for_log("sent 30 instances")
    report = subprocess.run(
        [sys.executable, "-m", "thinct", "serve", "status", "--spool", str(node.spool)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 sent, 2 ignored, 0 failed" in report.stdout


def test_a_corrupt_instance_is_refused_and_the_rest_processed(orthanc, start_node, tmp_path):
    node = start_node()
    files = thick_series(tmp_path / "series", slices=8)
    broken = pydicom.dcmread(files[-1])
    broken.PixelData = broken.PixelData[:100]
    broken.save_as(files[-1])
    statuses = send(files, orthanc.node_port)
    assert statuses == [0] * 7 + [0xC000]
    wait_for_thin_series(orthanc, 1, 35)
    assert "refused instance" in node.log() and "pixel data of 100 bytes" in node.log()


def test_strangers_are_refused(orthanc, start_node, tmp_path):
    start_node()
    assert echo(orthanc.node_port) == 0
    assert echo(orthanc.node_port, ae_title="STRANGER") is None
    assert send(thick_series(tmp_path / "series"), orthanc.node_port, "STRANGER") is None
    assert not (tmp_path / "spool" / "incoming").exists() or not any(
        (tmp_path / "spool" / "incoming").iterdir()
    )


def test_an_allowed_title_from_another_host_is_refused(orthanc, start_node, tmp_path):
    node = start_node("--allow", "REMOTE@192.0.2.7", "--allow", "*@192.0.2.8")
    assert echo(orthanc.node_port, ae_title="REMOTE") is None
    assert "refused association from REMOTE at 127.0.0.1" in node.log()
    # '*@192.0.2.8' lets any title in from that host only, and no stranger from here.
    assert echo(orthanc.node_port, ae_title="STRANGER") is None
    assert "refused association from STRANGER at 127.0.0.1" in node.log()
    assert echo(orthanc.node_port) == 0


@pytest.mark.slow  # a minute or more: .ci/run runs it with the slow tests
def test_ten_series_from_three_associations_each_processed_once(orthanc, start_node, tmp_path):
    node = start_node()
    series = [thick_series(tmp_path / f"s{k}", seed=k) for k in range(10)]
    groups = [series[0::3], series[1::3], series[2::3]]

    def send_group(group: list[list[Path]]) -> list[int] | None:
        return send([path for files in group for path in files], orthanc.node_port)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(send_group, groups))
    assert all(result is not None and set(result) == {0} for result in results)
    wait_for_thin_series(orthanc, 10, 30)
    node.wait_for_log("sent 30 instances", count=10)
    assert node.log().count("processing series") == 10
    assert "Doe^Jane" not in node.log() and "THINCT-0042" not in node.log()  # the patient
    # Sent again: the node answers success, keeps nothing and makes nothing twice.
    assert send(series[0], orthanc.node_port) == [0] * 6
    node.wait_for_log("is closed")
    assert len(orthanc.thin_series()) == 10


def test_a_full_spool_refuses_instances_and_keeps_running(orthanc, start_node, tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text("min_free_mb: 1000000000000\n", encoding="utf-8")
    node = start_node("--config", str(config))
    assert send(thick_series(tmp_path / "series"), orthanc.node_port) == [0xA700] * 6
    assert echo(orthanc.node_port) == 0
    assert "less than" in node.log()
    queue = Queue(node.spool, read_only=True)
    try:
        assert sum(queue.counts().values()) == 0
    finally:
        queue.close()


def test_retention_zero_deletes_the_spool_data_once_sent(orthanc, start_node, tmp_path):
    node = start_node("--retention-hours", "0")
    assert send(thick_series(tmp_path / "series"), orthanc.node_port) == [0] * 6
    node.wait_for_log("deleted the spool data")
    assert not any((node.spool / "incoming").iterdir())
    assert not any((node.spool / "outgoing").iterdir())


@pytest.mark.slow  # a minute or more: .ci/run runs it with the slow tests
def test_sigterm_stops_gracefully_and_the_job_resumes(orthanc, start_node):
    source = real_dicom_folder()
    node = start_node("--method", "bspline", method="")
    orthanc.send_to_node(orthanc.upload(source))
    node.wait_for_log("processing series")
    assert node.signal(signal.SIGTERM) == 0
    uid = str(
        pydicom.dcmread(next(source.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    )
    assert "stopping (SIGTERM)" in node.log()
    assert f"stopping: series {uid} waits again" in node.log()
    queue = Queue(node.spool, read_only=True)
    try:
        row = queue.series(uid)
    finally:
        queue.close()
    assert row is not None and (row.state, row.attempts) == ("waiting", 0)  # not counted
    node = start_node("--method", "bspline", method="")
    wait_for_thin_series(orthanc, 1, 320)


def test_stow_rs_destination(orthanc, start_node, tmp_path):
    if not orthanc.get("/plugins"):
        pytest.skip("Orthanc's DICOMweb plugin is not installed (orthanc-dicomweb)")
    node = start_node("--destination", f"{orthanc.url}/dicom-web")
    files = thick_series(tmp_path / "series")
    uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    assert send(files, orthanc.node_port) == [0] * 6
    node.wait_for_log(f"sent 30 instances of series {uid} to {orthanc.url}/dicom-web\n")
    node.wait_for_log(f"sent 30 instances of series {uid} to {orthanc.destination}\n")
    # The same instances by C-STORE and by STOW-RS: Orthanc keeps one series.
    wait_for_thin_series(orthanc, 1, 30)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "node.pem", folder / "node.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_associations(orthanc, start_node, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    start_node("--tls-cert", str(cert), "--tls-key", str(key))
    client = ssl.create_default_context(cafile=str(cert))
    client.check_hostname = False
    assert echo(orthanc.node_port, tls=(client, None)) == 0
    assert echo(orthanc.node_port) is None  # plain DICOM to a TLS port gets nowhere
