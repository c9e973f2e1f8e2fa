"""What the tests of the plugin in a real napari window share: they need a Qt binding and an
X display (pytest-xvfb starts Xvfb), and skip with the reason where either is missing."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("qtpy.QtWidgets", reason="no Qt binding (pip install 'napari[pyqt6]')")

# .ci/run sets THINCT_REQUIRE_WINDOW where it has Xvfb: there a missing display fails the
# tests instead of skipping them.
needs_window = pytest.mark.skipif(
    not os.environ.get("DISPLAY") and not os.environ.get("THINCT_REQUIRE_WINDOW"),
    reason="no X display for napari's OpenGL canvas (install Xvfb and pytest-xvfb)",
)
