"""The "Batch thin slices" panel in a real napari window: a folder of thick scans to a folder
of thin ones, with per-scan status, through the same jobs as ``thinct upsample``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.cli import assert_ok, thinct
from helpers.napari_window import needs_window
from helpers.paths import EXAMPLES
from npe2 import PluginManifest

from thinct_napari._sample_data import EXAMPLE_SCAN

pytestmark = needs_window
RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def panel(make_napari_viewer, npe2pm):
    npe2pm.register(PluginManifest.from_distribution("thinct"))
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("thinct", "Batch thin slices")
    return widget


@pytest.fixture
def scans(tmp_path):
    """Two thick scans (one in a subfolder) and a file that only looks like a scan."""
    folder = tmp_path / "thick"
    (folder / "b").mkdir(parents=True)
    shutil.copy(EXAMPLES / EXAMPLE_SCAN, folder / "a.nii.gz")
    shutil.copy(EXAMPLES / EXAMPLE_SCAN, folder / "b" / "c.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not a NIfTI file")
    return folder


def choose_folders(panel, scans, output):
    """Fill in the folders as a user would; returns the output folder."""
    panel.input_folder.value = scans
    panel.output_folder.value = output
    return output


def run_and_wait(panel, qtbot) -> None:
    panel.controls.run_button.native.click()
    qtbot.waitUntil(lambda: not panel.controls.running, timeout=RUN_TIMEOUT_MS)


def rows(panel) -> dict[str, str]:
    """scan file name -> status, as the table shows it."""
    return {scan.rsplit("/", 1)[-1]: status for scan, status, _ in panel.table.data.to_list()}


def test_batch_writes_what_the_cli_writes_and_reports_each_scan(panel, scans, tmp_path, qtbot):
    output = choose_folders(panel, scans, tmp_path / "thin")
    panel.settings.choose("method:linear")
    run_and_wait(panel, qtbot)

    assert rows(panel) == {"a.nii.gz": "done", "broken.nii.gz": "failed", "c.nii.gz": "done"}
    assert panel.controls.status.value.startswith("2 done, 1 failed")
    (message,) = [m for _, status, m in panel.table.data.to_list() if status == "failed"]
    assert "broken.nii.gz" in message and "\n" not in message
    assert not (output / "broken.nii.gz").exists()
    assert panel.controls.progress.value == panel.controls.progress.max

    cli_output = tmp_path / "cli.nii.gz"
    assert_ok(thinct("upsample", scans / "a.nii.gz", cli_output, "--method", "linear"))
    expected = sitk.ReadImage(str(cli_output))
    for written in (output / "a.nii.gz", output / "b" / "c.nii.gz"):
        image = sitk.ReadImage(str(written))
        assert image.GetPixelID() == sitk.sitkInt16
        assert image.GetSize() == (192, 192, 80)
        assert image.GetSpacing() == expected.GetSpacing()
        assert image.GetOrigin() == expected.GetOrigin()
        assert image.GetDirection() == expected.GetDirection()
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(expected)
        )


def test_existing_outputs_are_skipped_or_overwritten(panel, scans, tmp_path, qtbot):
    output = choose_folders(panel, scans, tmp_path / "thin")
    panel.settings.choose("method:nearest")
    run_and_wait(panel, qtbot)
    first = (output / "a.nii.gz").stat().st_mtime_ns

    run_and_wait(panel, qtbot)
    assert rows(panel)["a.nii.gz"] == "skipped"
    assert (output / "a.nii.gz").stat().st_mtime_ns == first

    panel.existing.value = "overwrite"
    run_and_wait(panel, qtbot)
    assert rows(panel)["a.nii.gz"] == "done"
    assert (output / "a.nii.gz").stat().st_mtime_ns != first


def test_cancel_stops_the_batch_without_partial_outputs(panel, scans, tmp_path, qtbot):
    output = choose_folders(panel, scans, tmp_path / "thin")
    panel.settings.tile.value = 64  # the shipped model in small tiles: time to press Cancel
    panel.controls.run_button.native.click()
    qtbot.waitUntil(lambda: panel.controls.progress.value > 0, timeout=RUN_TIMEOUT_MS)
    panel.controls.cancel_button.native.click()
    qtbot.waitUntil(lambda: not panel.controls.running, timeout=RUN_TIMEOUT_MS)

    statuses = rows(panel)
    assert statuses["a.nii.gz"] == "cancelled"
    assert statuses["broken.nii.gz"] == statuses["c.nii.gz"] == "not run"
    assert panel.controls.status.value.startswith("1 cancelled, 2 not run")
    assert [p for p in output.rglob("*") if p.is_file()] == []  # nothing half-written


@pytest.mark.parametrize(
    ("input_name", "output_name", "message"),
    [
        (None, "out", "choose an input folder of thick scans"),
        ("thick", None, "choose an output folder"),
        ("empty", "out", "no scans in this folder"),
        ("thick", "thick", "is the input folder"),
        ("thick", "thin.nii.gz", "is a file name; choose an output folder"),
    ],
)
def test_bad_folders_are_one_line_errors_before_anything_runs(
    panel, scans, tmp_path, input_name, output_name, message
):
    (tmp_path / "empty").mkdir()
    if input_name:
        panel.input_folder.value = tmp_path / input_name
    if output_name:
        panel.output_folder.value = tmp_path / output_name
    panel.controls.run_button.native.click()
    assert not panel.controls.running
    status = panel.controls.status.value
    assert status.startswith("error: ") and message in status and "\n" not in status
    assert not (tmp_path / "out").exists() and not (tmp_path / "thin.nii.gz").exists()


def test_a_model_that_cannot_load_leaves_nothing_behind(panel, scans, tmp_path, qtbot):
    output = choose_folders(panel, scans, tmp_path / "thin")
    panel.settings.choose(str(tmp_path / "no-such-model"))
    run_and_wait(panel, qtbot)
    status = panel.controls.status.value
    assert status.startswith("error: ") and "no-such-model" in status and "\n" not in status
    assert set(rows(panel).values()) == {"not run"}
    assert not output.exists()
