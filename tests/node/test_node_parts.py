"""The node's parts on their own: settings, which instances are taken in and which series are
processed, and the spool. The queue has its own tests (test_node_queue.py)."""

from __future__ import annotations

import pydicom
import pytest
from helpers.cli import assert_one_error, thinct_in_process
from helpers.dicom_series import thick_series

from thinct.errors import UsageError
from thinct.inference.options import InferenceOptions
from thinct.node.selection import rejection
from thinct.node.settings import Caller, Destination, NodeSettings, load_settings
from thinct.node.spool import Spool, is_uid

BASE = {"spool": "spool", "destinations": ("PACS@pacs.example:104",), "allow": ("PACS",)}


def test_destinations_parse():
    node = Destination.parse("PACS@10.0.0.5:104")
    assert (node.ae_title, node.host, node.port, node.is_dicomweb) == (
        "PACS",
        "10.0.0.5",
        104,
        False,
    )
    assert Destination.parse("PACS@[::1]:11112").host == "::1"
    web = Destination.parse("https://pacs.example/dicom-web/")
    assert web.is_dicomweb and web.url == "https://pacs.example/dicom-web"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("PACS", "neither AE@HOST:PORT"),
        ("PACS@host:0", "port 0 is not 1 to 65535"),
        ("A_TITLE_LONGER_THAN_16@host:104", "is not an AE title"),
        ("BAD\\AE@host:104", "is not an AE title"),
    ],
)
def test_bad_destinations_are_refused(text, reason):
    with pytest.raises(UsageError, match=reason):
        Destination.parse(text)


def test_callers():
    assert Caller.parse("*").admits("ANYONE", "203.0.113.9")
    pacs = Caller.parse("PACS")
    assert pacs.admits("PACS", "203.0.113.9") and pacs.admits("PACS  ", "127.0.0.1")
    assert not pacs.admits("OTHER", "127.0.0.1")
    local = Caller.parse("PACS@127.0.0.1")
    assert local.admits("PACS", "127.0.0.1") and not local.admits("PACS", "127.0.0.2")
    assert "127.0.0.1" in Caller.parse("PACS@localhost").addresses
    with pytest.raises(UsageError, match="host 'no-such-host.invalid' is unknown"):
        Caller.parse("PACS@no-such-host.invalid")
    with pytest.raises(UsageError, match="no host after '@'"):
        Caller.parse("PACS@")


def test_any_title_from_one_host():
    """``*@HOST``: every AE title of that host, and nobody from elsewhere."""
    host = Caller.parse("*@127.0.0.1")
    assert host.any_title and host.admits("ANYONE", "127.0.0.1")
    assert not host.admits("ANYONE", "203.0.113.9")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"allow": ()}, "give --allow"),
        ({"destinations": ()}, "give at least one --destination"),
        ({"model": "cthnet-small", "method": "linear"}, "--model or --method, not both"),
        ({"tls_cert": "cert.pem"}, "needs both --tls-cert and --tls-key"),
        ({"port": 70000}, "--port 70000"),
        ({"ae_title": ""}, "is not an AE title"),
        ({"quiet_period": 0}, "quiet_period"),
        ({"method": "linear", "tile": 256}, "apply to models, not to --method"),
        ({"method": "linear", "device": "cpu"}, "apply to models, not to --method"),
        ({"method": "cubic"}, "method 'cubic' is not one of"),
        ({"device": "gpu"}, "device 'gpu' is not one of"),
        ({"precision": "fp8"}, "precision 'fp8' is not one of"),
        ({"consistency": "boxcar3"}, "consistency must be one of"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_settings_are_checked(change, reason):
    with pytest.raises(UsageError, match=reason):
        load_settings(None, {**BASE, **change})


def test_command_line_overrides_the_config_file(tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text(
        "spool: /var/spool/thinct\nallow: [PACS]\ndestinations: ['PACS@pacs:104']\n"
        "quiet-period: 30\nport: 4000\n",
        encoding="utf-8",
    )
    settings = load_settings(config, {"port": 5000, "allow": (), "ae_title": None})
    assert settings.port == 5000 and settings.quiet_period == 30.0
    assert settings.allow == ("PACS",) and settings.spool == "/var/spool/thinct"
    assert settings.inference_options() == InferenceOptions()  # the engine's defaults
    config.write_text(
        "spool: s\nallow: [PACS]\ndestinations: ['PACS@pacs:104']\ntile: 256\nz-overlap: 3\n",
        encoding="utf-8",
    )
    options = load_settings(config, {"batch_size": 4}).inference_options()
    assert (options.tile, options.z_overlap, options.batch_size) == (256, 3, 4)
    config.write_text("bogus: 1\nspool: s\n", encoding="utf-8")
    with pytest.raises(UsageError, match="unknown key bogus"):
        load_settings(config, BASE)
    with pytest.raises(UsageError, match="no such config file"):
        load_settings(tmp_path / "missing.yaml", BASE)


def settings(**change) -> NodeSettings:
    return load_settings(None, {**BASE, **change})


def test_thick_axial_ct_is_selected(tmp_path):
    thick_series(tmp_path / "ct")
    assert rejection(tmp_path / "ct", settings()) is None


@pytest.mark.parametrize(
    ("tags", "change", "reason"),
    [
        ({"Modality": "MR"}, {}, "modality MR, not CT"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, {}, "a localizer"),
        ({"DerivationDescription": "SYNTHETIC thin slices, thinct 0.1"}, {}, "made by thinct"),
        ({}, {"min_slices": 10}, "6 slices, fewer than 10"),
        ({}, {"min_spacing": 6.0}, "slice spacing 5.00 mm, below 6 mm"),
        ({}, {"descriptions": ("*lung*",)}, "matches none of the patterns"),
        ({"ImageOrientationPatient": [0, 1, 0, 0, 0, -1]}, {}, "90 degrees from axial"),
        ({"ImageOrientationPatient": [1, 0, 0, 0]}, {}, "without 6 values"),
        ({"ImageOrientationPatient": [1, 0, 0, 0, 1]}, {}, "without 6 values"),
        ({"ImagePositionPatient": [0, 0]}, {}, "an ImagePositionPatient without 3"),
        ({"ImageOrientationPatient": [0, 0, 0, 0, 0, 0]}, {}, "not directions"),
    ],
)
def test_other_series_are_ignored_with_a_reason(tmp_path, tags, change, reason):
    files = thick_series(tmp_path / "series")
    for path in files:
        dataset = pydicom.dcmread(path)
        for key, value in tags.items():
            setattr(dataset, key, value)
        dataset.save_as(path)
    assert reason in (rejection(tmp_path / "series", settings(**change)) or "")


def test_description_patterns_select(tmp_path):
    thick_series(tmp_path / "series", SeriesDescription="Lung 5.0 B70f")
    assert rejection(tmp_path / "series", settings(descriptions=("*LUNG*",))) is None


@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        (
            "ImageOrientationPatient",
            [1, 0, 0, 0, 1],
            "ImageOrientationPatient with 5 values, not 6",
        ),
        ("ImagePositionPatient", [0, 0], "ImagePositionPatient with 2 values, not 3"),
        ("PixelSpacing", [0.7], "PixelSpacing with 1 value, not 2"),
        ("PixelData", b"", "no PixelData"),
    ],
)
def test_instances_without_usable_geometry_are_refused(tmp_path, keyword, value, reason):
    pytest.importorskip("pynetdicom")
    from pydicom.uid import ImplicitVRLittleEndian

    from thinct.node.receiver import incomplete_instance

    dataset = pydicom.dcmread(thick_series(tmp_path / "series", slices=1)[0])
    assert incomplete_instance(dataset, ImplicitVRLittleEndian) is None
    setattr(dataset, keyword, value)
    assert incomplete_instance(dataset, ImplicitVRLittleEndian) == reason


def test_uids_are_checked_before_they_name_files():
    assert is_uid("1.2.840.10008.5.1.4.1.1.2")
    for bad in ("../etc", "1..2", "1.2.", "", "1" * 65, "1.2/3", "1.2\n"):
        assert not is_uid(bad)


def test_the_spool_stores_durably_and_refuses_when_full(tmp_path):
    spool = Spool(tmp_path, min_free_mb=0)
    path = spool.store("1.2", "1.2.3", b"DICM")
    assert path.read_bytes() == b"DICM" and path == tmp_path / "incoming" / "1.2" / "1.2.3.dcm"
    (path.parent / ".left.part").write_bytes(b"half")
    assert spool.remove_partial_files() == 1
    full = Spool(tmp_path, min_free_mb=1e12)
    with pytest.raises(OSError, match="MiB free"):
        full.store("1.2", "1.2.4", b"DICM")
    spool.purge("1.2")
    assert not (tmp_path / "incoming" / "1.2").exists()


def test_command_line_mistakes_are_one_line(tmp_path, capfd):
    result = thinct_in_process(capfd, "serve", "--spool", tmp_path / "spool", "--allow", "PACS")
    assert_one_error(result, 2, "give at least one --destination")
    result = thinct_in_process(
        capfd, "serve", "--spool", tmp_path, "--allow", "PACS", "--destination", "PACS@host"
    )
    assert_one_error(result, 2, "neither AE@HOST:PORT nor an http(s) DICOMweb URL")
    result = thinct_in_process(capfd, "serve", "status", "--spool", tmp_path / "nowhere")
    assert_one_error(result, 2, "holds no node queue")
    assert not (tmp_path / "spool").exists()
