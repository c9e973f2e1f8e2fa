"""Render the figures in docs/images from the shipped example scans (run by hand).

python docs/make_figures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw

import thinct

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
LUNG_WINDOW = (-1350.0, 150.0)  # level -600, width 1500


def coronal(volume: thinct.Volume, row: int, height_mm: float) -> Image.Image:
    """One coronal plane (superior at the top), scaled to true physical proportions."""
    array = sitk.GetArrayViewFromImage(volume.image)[:, row, :][::-1]
    low, high = LUNG_WINDOW
    grey = (np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    width_px = grey.shape[1]
    height_px = round(height_mm / volume.image.GetSpacing()[0])
    return Image.fromarray(grey).resize((width_px, height_px), Image.NEAREST)


def main() -> None:
    thick = thinct.read_volume(DATA / "lidc0002_crop_5mm.nii.gz")
    thin = thinct.read_volume(DATA / "lidc0002_crop_1.25mm.nii.gz")
    bspline = thinct.upsample_volume(thick, method="bspline", spacing=1.0)
    extent = thick.image.GetSize()[2] * thick.image.GetSpacing()[2]
    panels = [
        ("5 mm input", coronal(thick, 100, extent)),
        ("B-spline, 1 mm", coronal(bspline, 100, extent)),
        ("real 1.25 mm", coronal(thin, 100, extent)),
    ]
    scale = 2
    gap, label = 6, 22
    width = sum(p.width * scale for _, p in panels) + gap * (len(panels) - 1)
    height = panels[0][1].height * scale + label
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, panel in panels:
        canvas.paste(
            panel.resize((panel.width * scale, panel.height * scale), Image.NEAREST), (x, label)
        )
        draw.text((x + 4, 4), title, fill=0)
        x += panel.width * scale + gap
    out = ROOT / "docs" / "images" / "example_coronal.png"
    canvas.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
