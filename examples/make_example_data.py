"""Rebuild the example scans in examples/data/ from the full LIDC-IDRI-0002 scan in ../shared.

Run from the project root: python examples/make_example_data.py
The crop holds part of the left lung with vessels, an airway and a lesion; the 5 mm version is
simulated from it with thinct's boxcar slab average (4 thin slices of 1.25 mm per thick slice).
"""

from pathlib import Path

import thinct
from thinct.io import read_volume, write_volume

SOURCE = Path("../shared/data/ct/lidc0002_c2c_1.25mm.nii.gz")
TARGET = Path("examples/data")


def main() -> None:
    scan = read_volume(SOURCE)
    crop = scan.with_image(scan.image[270:462, 150:342, 56:120], slice_thickness=1.25)
    write_volume(crop, TARGET / "lidc0002_crop_1.25mm.nii.gz", overwrite=True)
    thick = thinct.simulate_thick(crop, thickness=5.0)
    write_volume(thick, TARGET / "lidc0002_crop_5mm.nii.gz", overwrite=True)


if __name__ == "__main__":
    main()
