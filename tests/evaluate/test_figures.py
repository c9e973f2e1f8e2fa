"""The case figure's structure row: drawn under the slice plane when the panels carry
structure maps, left out when they do not, and made of the operator's map of the plane."""

from __future__ import annotations

import numpy as np
from PIL import Image

from thinct.evaluate import figures
from thinct.structure import enhance, lung_window


def _vessel_volume() -> np.ndarray:
    """Lung with a bright vessel of 3 pixels across, in (slices, rows, columns)."""
    volume = np.full((12, 48, 48), -850.0, dtype=np.float32)
    volume[:, 22:25, :] = 40.0
    return volume


def _height(path) -> int:
    with Image.open(path) as image:
        return image.size[1]


def test_structure_plane_is_the_operator_map_of_the_slice_plane_cropped():
    volume = _vessel_volume()
    box = figures.Box(centre=(6, 24, 24), start=(2, 10, 8), stop=(10, 40, 40))
    structure = figures.structure_plane(volume, box)
    assert structure.shape == figures.planes(volume, box).slice_plane.shape == (30, 32)
    np.testing.assert_array_equal(structure, enhance(lung_window(volume[6]))[10:40, 8:40])
    assert structure[13, 16] > 0.5 and structure[0, 16] < 0.05  # the vessel, the lung


def test_the_structure_row_is_drawn_only_when_panels_carry_maps(tmp_path):
    volume = _vessel_volume()
    box = figures.Box(centre=(6, 24, 24), start=(0, 0, 0), stop=(12, 48, 48))
    planes = figures.planes(volume, box)
    structure = figures.structure_plane(volume, box)
    spacing = (1.0, 1.0, 1.0)
    plain = figures.save_case_figure(
        tmp_path / "plain.png", "t", [figures.Panel("a", planes)], None, spacing
    )
    with_maps = figures.save_case_figure(
        tmp_path / "maps.png",
        "t",
        [figures.Panel("a", planes, structure)],
        figures.Panel("error", planes, np.zeros_like(structure)),
        spacing,
    )
    # One more square row (48 x 48 mm at 2.1 inches, 150 dpi): about 315 pixels taller.
    assert 280 < _height(with_maps) - _height(plain) < 350
