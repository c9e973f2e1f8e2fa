"""Render the napari plugin screenshots in docs/images (run by hand, on an X display).

Without a display, under Xvfb:

xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_napari_screenshots.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import napari
from napari.qt import get_qapp
from PIL import Image
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget

from thinct_napari._controls import RunControls

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
EXAMPLE = ROOT / "examples" / "data" / "lidc0002_crop_5mm.nii.gz"
CORONAL_ROW = 100  # a coronal plane through the lungs, of the scan's 192 rows
WINDOW_SIZE = (1600, 720)
MAX_WIDTH = 1600  # wider screenshots (a HiDPI display) are scaled down
BATCH_WIDTH = 640  # the batch panel, wide enough for its table


def settle(seconds: float = 0.5) -> None:
    """Let Qt process events (layout, painting) for a while."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        get_qapp().processEvents()
        time.sleep(0.05)


def run_and_wait(controls: RunControls) -> None:
    """Click Run and process events until the background run has ended."""
    controls.run_button.native.click()
    while controls.running:
        get_qapp().processEvents()
        time.sleep(0.05)
    settle()
    print(f"  {controls.status.value}")


def dock_width(viewer: napari.Viewer, dock: QDockWidget, width: int) -> None:
    """Resize a docked panel (Qt keeps it at least as wide as its contents need)."""
    viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    settle()


def save(image: Image.Image, name: str) -> None:
    image = image.convert("RGB")
    if image.width > MAX_WIDTH:
        height = round(image.height * MAX_WIDTH / image.width)
        image = image.resize((MAX_WIDTH, height), Image.LANCZOS)
    out = IMAGES / name
    image.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def widget_screenshot(viewer: napari.Viewer) -> None:
    """The "Thin slices" panel after a run with the default model, side by side on, coronal."""
    viewer.open_sample("thinct", "chest_ct_5mm")
    dock, widget = viewer.window.add_plugin_dock_widget("thinct", "Thin slices")
    settle()
    run_and_wait(widget.controls)
    dock_width(viewer, dock, 1)  # as narrow as the panel allows: room for the canvas
    widget.compare.value = True
    source = widget.image.value
    # Axes are (z, y, x): show z (vertical) against x (horizontal), step through y.
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_point(1, source.data_to_world((0, CORONAL_ROW, 0))[1])
    viewer.scene.camera.orientation2d = ("up", "right")  # superior (+z in LPS) at the top
    viewer.reset_view()
    settle(1.0)
    save(Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)), "napari_widget.png")


def batch_screenshot(viewer: napari.Viewer) -> None:
    """The "Batch thin slices" panel after a linear-interpolation run over two scans."""
    dock, widget = viewer.window.add_plugin_dock_widget("thinct", "Batch thin slices")
    with tempfile.TemporaryDirectory(prefix="thinct-") as folder:
        scans = Path(folder) / "thick"
        scans.mkdir()
        for name in ("patient1.nii.gz", "patient2.nii.gz"):
            shutil.copy(EXAMPLE, scans / name)
        widget.input_folder.value = scans
        widget.output_folder.value = Path(folder) / "thin"
        widget.settings.choose("method:linear")
        settle()
        run_and_wait(widget.controls)
        dock_width(viewer, dock, BATCH_WIDTH)
        pixmap = widget.native.grab()
        path = Path(folder) / "batch.png"
        pixmap.save(str(path))
        save(Image.open(path), "napari_batch.png")


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW_SIZE)
    widget_screenshot(viewer)
    viewer.close()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW_SIZE)
    batch_screenshot(viewer)
    viewer.close()


if __name__ == "__main__":
    main()
