"""Data consistency: thin slices corrected so that they average back to the thick slices.

The projection is checked by what it promises: the corrected slices re-simulate to the thick
scan exactly (boxcar; Gaussian where the thin grid holds the whole profile), the thin volume
the thick one was simulated from is left where it is, outputs get no further from it (PSNR
never drops on simulated data), and geometry and input files are untouched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.cli import thinct
from helpers.paths import EXAMPLES

import thinct as tc
from thinct.errors import UsageError
from thinct.evaluate import metrics
from thinct.geometry import Grid, thin_grid
from thinct.resample.consistency import consistency_operator, enforce_consistency, project

THIN = EXAMPLES / "lidc0002_crop_1.25mm.nii.gz"
THICK = EXAMPLES / "lidc0002_crop_5mm.nii.gz"


def _array(volume: tc.Volume) -> np.ndarray:
    return sitk.GetArrayFromImage(volume.image).astype(np.float64)


@pytest.fixture(scope="module")
def reference() -> tc.Volume:
    return tc.read_volume(THIN)


@pytest.mark.parametrize("method", ["linear", "bspline"])
def test_boxcar_consistency_makes_slabs_average_back_to_the_thick_slices(reference, method):
    thick = tc.simulate_thick(reference, thickness=5.0)
    made = tc.upsample_volume(thick, method=method, spacing=1.25)
    fixed = tc.upsample_volume(thick, method=method, spacing=1.25, consistency="boxcar")
    back = tc.simulate_thick(fixed, thickness=5.0)
    assert np.abs(_array(back) - _array(thick)).max() < 1e-2
    # It moved the output (which did not average back before) ...
    assert np.abs(_array(tc.simulate_thick(made, thickness=5.0)) - _array(thick)).max() > 1.0
    # ... and never away from the thin slices the thick ones were made of.
    before = metrics.psnr(_array(made), _array(reference))
    after = metrics.psnr(_array(fixed), _array(reference))
    assert after >= before
    assert Grid.of(fixed.image) == Grid.of(made.image)


def test_gaussian_consistency_holds_for_every_slab_whose_profile_the_grid_covers(reference):
    thick = tc.simulate_thick(reference, thickness=5.0, profile="gaussian")
    grid = thin_grid(Grid.of(thick.image), spacing=1.25)
    made = tc.upsample_volume(thick, method="bspline", spacing=1.25)
    fixed = enforce_consistency(made, thick, grid, profile="gaussian")
    _, slabs = consistency_operator(grid, thick.image.GetSize()[2], 1.0, "gaussian")
    # The profile reaches beyond its slab, so the end slabs are not constrained.
    assert 0 < slabs[0] and slabs[-1] < thick.image.GetSize()[2] - 1
    back = _array(tc.simulate_thick(fixed, thickness=5.0, profile="gaussian"))
    assert np.abs(back[slabs] - _array(thick)[slabs]).max() < 1e-2
    assert metrics.psnr(_array(fixed), _array(reference)) > metrics.psnr(
        _array(made), _array(reference)
    )


def test_nearest_neighbour_slices_are_already_consistent_and_stay_as_they_are(reference):
    thick = tc.simulate_thick(reference, thickness=5.0)
    made = tc.upsample_volume(thick, method="nearest", spacing=1.25)
    fixed = tc.upsample_volume(thick, method="nearest", spacing=1.25, consistency="boxcar")
    assert np.abs(_array(fixed) - _array(made)).max() < 1e-2


def test_the_true_thin_volume_is_a_fixed_point():
    rng = np.random.default_rng(0)
    thin = rng.normal(-500, 300, (40, 6, 7)).astype(np.float32)
    thick = thin.reshape(8, 5, 6, 7).mean(axis=1)
    volume = tc.Volume(sitk.GetImageFromArray(np.ascontiguousarray(thick[:, None].squeeze(1))))
    volume.image.SetSpacing((0.7, 0.7, 5.0))
    grid = thin_grid(Grid.of(volume.image), spacing=1.0)
    operator, slabs = consistency_operator(grid, 8, 1.0, "boxcar")
    assert list(slabs) == list(range(8))
    assert np.allclose(operator.sum(axis=1), 1.0)
    corrected = project(thin.copy(), thick, operator, slabs)
    assert np.abs(corrected - thin).max() < 1e-3


def test_centers_grid_leaves_the_half_covered_end_slabs_free(reference):
    thick = tc.simulate_thick(reference, thickness=5.0)
    grid = thin_grid(Grid.of(thick.image), spacing=1.25, align="centers")
    _, slabs = consistency_operator(grid, thick.image.GetSize()[2], 1.0, "boxcar")
    assert list(slabs) == list(range(1, thick.image.GetSize()[2] - 1))
    made = tc.upsample_volume(thick, method="linear", spacing=1.25, align="centers")
    fixed = tc.upsample_volume(
        thick, method="linear", spacing=1.25, align="centers", consistency="boxcar"
    )
    assert Grid.of(fixed.image) == Grid.of(made.image)
    # Thin slice 4k sits on thick centre k, so slab k holds slices 4k-1 .. 4k+1 whole and
    # half of 4k-2 and 4k+2.
    fixed_array, thick_array = _array(fixed), _array(thick)
    weights = np.array([0.5, 1, 1, 1, 0.5])[:, None, None] / 4
    for k in slabs:
        slab = (weights * fixed_array[4 * k - 2 : 4 * k + 3]).sum(axis=0)
        assert np.allclose(slab, thick_array[k], atol=0.01)


def test_unknown_profiles_are_refused_with_the_argument_named(reference):
    thick = tc.simulate_thick(reference, thickness=5.0)
    with pytest.raises(UsageError, match="consistency"):
        tc.upsample_volume(thick, method="linear", consistency="trapezoid")


def test_cli_consistency_averages_back_and_leaves_the_input_alone(tmp_path: Path):
    before = hashlib.sha256(THICK.read_bytes()).hexdigest()
    out = tmp_path / "thin.nii.gz"
    run = thinct("upsample", THICK, out, "--method", "linear", "--consistency", "boxcar", "-q")
    assert run.returncode == 0, run.stderr
    assert hashlib.sha256(THICK.read_bytes()).hexdigest() == before
    thin = tc.read_volume(out)
    back = _array(tc.simulate_thick(thin, thickness=5.0))
    # int16 output: each thin value is rounded by at most half a HU.
    assert np.abs(back - _array(tc.read_volume(THICK))).max() <= 0.5 + 1e-6
    bad = thinct("upsample", THICK, tmp_path / "x.nii.gz", "--consistency", "trapezoid")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.nii.gz").exists()
