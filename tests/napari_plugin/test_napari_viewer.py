"""The plugin in a real napari window (Qt, OpenGL): needs a Qt binding and an X display, which
pytest-xvfb provides by starting Xvfb; skipped where neither is available."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.napari_window import needs_window
from helpers.paths import EXAMPLES
from npe2 import PluginManifest

from thinct_napari._sample_data import EXAMPLE_SCAN

pytestmark = needs_window


def test_sample_in_a_viewer_spans_the_scans_world_extent(make_napari_viewer, npe2pm):
    npe2pm.register(PluginManifest.from_distribution("thinct"))
    viewer = make_napari_viewer()
    viewer.open_sample("thinct", "chest_ct_5mm")
    (layer,) = viewer.layers
    image = sitk.ReadImage(str(EXAMPLES / EXAMPLE_SCAN))
    first = np.array(image.GetOrigin()[::-1])
    last = np.array(image.TransformIndexToPhysicalPoint([n - 1 for n in image.GetSize()])[::-1])
    np.testing.assert_allclose(layer.extent.world, [first, last], atol=1e-9)
    # The slider runs over the thick slice centres, 5 mm apart.
    assert viewer.dims.range[0].start == pytest.approx(first[0])
    assert viewer.dims.range[0].step == pytest.approx(5.0)
    assert viewer.screenshot(canvas_only=True).shape[-1] == 4
