"""Render the structure operator's figures in docs/images (run by hand).

- ``structure_chest.png``: an axial chest slice in the lung window, the operator's map and
  the surrogate's map, cropped to the chest. The slice is slice 88 of the LIDC-IDRI scan in
  ../shared (among the slices that the surrogate never trained on), or, without ../shared,
  the middle slice of the shipped example crop.
- ``structure_shapes.png``: synthetic shapes on the lung window's scale (bright tubes and a
  blob, a step edge, a wide plate, noise, a dark tube and a dark hole) and their maps: what
  responds, what does not.

python docs/make_structure_figures.py [--out docs/images]

Running it again replaces the PNGs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.special import erf  # noqa: E402

import thinct  # noqa: E402
from thinct.structure import enhance, load_surrogate, lung_window  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_SCAN = ROOT.parent / "shared" / "data" / "ct" / "lidc0002_c2c_1.25mm.nii.gz"
SHARED_SLICE = 88
SHARED_CROP = (slice(90, 410), slice(40, 472))  # rows, columns: the chest
EXAMPLE = ROOT / "examples" / "data" / "lidc0002_crop_1.25mm.nii.gz"
PANEL_INCHES = 4.0


def chest_slice() -> tuple[np.ndarray, str]:
    """A lung-window axial slice and a caption naming it."""
    if SHARED_SCAN.exists():
        hu = thinct.read_volume(SHARED_SCAN).array[SHARED_SLICE][SHARED_CROP]
        return lung_window(hu), f"LIDC-IDRI-0002, slice {SHARED_SLICE} (0.68 mm pixels)"
    hu = thinct.read_volume(EXAMPLE).array
    return lung_window(hu[hu.shape[0] // 2]), "the example crop, middle slice (0.68 mm pixels)"


def chest_figure(out: Path) -> None:
    image, caption = chest_slice()
    operator = enhance(image)
    with torch.no_grad():
        surrogate = load_surrogate()(torch.from_numpy(image)).numpy()
    panels = [
        (image, "lung window (W1500/L-600)"),
        (operator, "operator: enhance()"),
        (surrogate, "surrogate: load_surrogate()"),
    ]
    height = PANEL_INCHES * image.shape[0] / image.shape[1]
    figure, axes = plt.subplots(1, 3, figsize=(3 * PANEL_INCHES, height + 0.6))
    for axis, (panel, title) in zip(axes, panels, strict=True):
        axis.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.suptitle(caption, fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "structure_chest.png", dpi=110)
    plt.close(figure)


def synthetic_shapes(size: int = 96) -> list[tuple[np.ndarray, str]]:
    """Shapes with a lung-like background (0.33) and a vessel's contrast (0.6), blurred by
    0.6 pixels like a scanner's point spread."""
    rows, columns = np.mgrid[0:size, 0:size].astype(float) - size / 2 + 0.3

    def band(distance: np.ndarray, radius: float) -> np.ndarray:
        spread = np.sqrt(2) * 0.6
        return 0.5 * (erf((radius - distance) / spread) + erf((radius + distance) / spread))

    def line(angle: float, offset: float) -> np.ndarray:
        return np.abs(np.cos(angle) * columns - np.sin(angle) * rows - offset)

    tubes = np.maximum.reduce(
        [band(line(0.3, -28), 1.0), band(line(0.3, -8), 2.0), band(line(0.3, 16), 3.5)]
    )
    hole = band(np.hypot(rows - 20, columns - 24), 5.0)
    rng = np.random.default_rng(0)
    return [
        (0.33 + 0.6 * tubes, "bright tubes, radii 1, 2, 3.5"),
        (0.33 + 0.6 * band(np.hypot(rows, columns), 5.0), "a blob (nodule), radius 5"),
        (0.33 + 0.3 * (1 + erf((columns + 0.4 * rows) / 0.85)), "a step edge"),
        (0.33 + 0.6 * band(line(0.2, 0), 24.0), "a plate 48 pixels wide"),
        (0.33 + 0.02 * rng.standard_normal((size, size)), "noise (30 HU)"),
        (0.93 - 0.6 * np.maximum(band(line(0.3, -14), 2.0), hole), "a dark tube and a hole"),
    ]


def shapes_figure(out: Path) -> None:
    shapes = synthetic_shapes()
    figure, axes = plt.subplots(2, len(shapes), figsize=(len(shapes) * 2.2, 2 * 2.2 + 0.5))
    for column, (image, title) in enumerate(shapes):
        response = enhance(image)
        axes[0, column].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(title, fontsize=8)
        axes[1, column].imshow(response, cmap="gray", vmin=0, vmax=1)
        axes[1, column].set_title(f"map, max {response.max():.2f}", fontsize=8)
        for axis in axes[:, column]:
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(out / "structure_shapes.png", dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chest_figure(args.out)
    shapes_figure(args.out)
    print(f"wrote {args.out}/structure_chest.png and structure_shapes.png")


if __name__ == "__main__":
    main()
