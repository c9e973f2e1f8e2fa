"""Paired dataset folders in the RPLHR-CT and CTHNet layouts, written from volumes."""

from __future__ import annotations

from pathlib import Path

from thinct.io import write_volume
from thinct.volume import Volume


def write_rplhr(root: Path, cases: dict[str, tuple[Volume | None, Volume | None]], split="train"):
    """RPLHR-CT: root/split/5mm/CASE.nii.gz (thick) and root/split/1mm/CASE.nii.gz (thin)."""
    for name, (thick, thin) in cases.items():
        for volume, sub in ((thick, "5mm"), (thin, "1mm")):
            if volume is not None:
                write_volume(volume, root / split / sub / f"{name}.nii.gz")
    return root


def write_cthnet(root: Path, cases: dict[str, tuple[Volume, Volume]]):
    """CTHNet: root/HD_5mm/CASE.nii.gz (thick) and root/HD_1mm/CASE.nii.gz (thin)."""
    for name, (thick, thin) in cases.items():
        write_volume(thick, root / "HD_5mm" / f"{name}.nii.gz")
        write_volume(thin, root / "HD_1mm" / f"{name}.nii.gz")
    return root
