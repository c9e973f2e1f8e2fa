"""The example scripts in examples/ run as a user runs them, as a subprocess, and write what
they promise."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk
from helpers.paths import EXAMPLES, ROOT


def test_segmentation_example_trains_and_scores_on_the_thick_grid(tmp_path):
    """A few steps with linear interpolation: the held-out prediction comes back on the thick
    grid of the held-out half of the 5 mm crop, with its Dice in metrics.json and on stdout."""
    script = ROOT / "examples" / "train_segmentation_torchio.py"
    out = tmp_path / "run"
    command = [sys.executable, str(script), "--steps", "3", "--method", "linear", "--out", str(out)]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "step 3/3" in done.stdout and "Dice on the thick grid" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["steps"] == 3 and metrics["thin_slices"] == "linear"
    assert 0.0 <= metrics["dice_thick"] <= 1.0
    assert f"{metrics['dice_thick']:.3f}" in done.stdout
    prediction = sitk.ReadImage(str(out / "prediction_5mm.nii.gz"))
    thick = sitk.ReadImage(str(EXAMPLES / "lidc0002_crop_5mm.nii.gz"))
    held_out = thick[96:]  # the second half along x
    assert prediction.GetSize() == held_out.GetSize() == (96, 192, 16)
    assert np.allclose(prediction.GetSpacing(), held_out.GetSpacing())
    assert np.allclose(prediction.GetOrigin(), held_out.GetOrigin(), atol=1e-3)
    assert np.allclose(prediction.GetDirection(), held_out.GetDirection())
    assert set(np.unique(sitk.GetArrayViewFromImage(prediction))) <= {0, 1}
