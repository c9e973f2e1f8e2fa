"""VIF by torchmetrics as thinct applies it: 1 for identical slices, lower with blur and noise,
NaN where it cannot be defined, and the expected ordering on the real example crop."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from thinct.data.cases import simulated_case
from thinct.errors import GeometryError, ThinctError
from thinct.evaluate import vif
from thinct.evaluate.cases import Simulation
from thinct.evaluate.run import plan_evaluation, run_evaluation
from thinct.io import read_volume
from thinct.reporting import Reporter
from thinct.resample.interpolation import interpolate


def _lung_texture(shape=(14, 64, 64), seed=0) -> np.ndarray:
    """Lung-like HU slices: -850 HU with smooth texture of about 60 HU."""
    noise = np.random.default_rng(seed).normal(0, 1, shape)
    texture = gaussian_filter(noise, (0, 1.5, 1.5))
    return (-850.0 + 60.0 * texture / texture.std()).astype(np.float32)


def test_torchmetrics_is_installed_with_thinct():
    assert vif.missing_dependency() is None


def test_vif_of_identical_volumes_is_one():
    volume = _lung_texture()
    assert vif.vif(volume, volume.copy()) == pytest.approx(1.0, abs=1e-5)


def test_vif_falls_with_blur_and_with_noise():
    reference = _lung_texture()
    blurred = [
        vif.vif(gaussian_filter(reference, (0, sigma, sigma)), reference) for sigma in (0.7, 1.5)
    ]
    assert 0 < blurred[1] < blurred[0] < 1
    noisy = reference + np.random.default_rng(1).normal(0, 40, reference.shape)
    assert 0 < vif.vif(noisy.astype(np.float32), reference) < 1


def test_vif_reads_the_lung_window_only():
    """Differences where both volumes lie above the lung window (soft tissue, bone) are not
    seen; the score is per slice and averaged."""
    reference = _lung_texture()
    reference[:, :, 40:] = 300.0
    output = reference.copy()
    output[:, :, 40:] += np.random.default_rng(2).uniform(0, 500, output[:, :, 40:].shape)
    assert vif.vif(output, reference) == pytest.approx(1.0, abs=1e-5)


def test_vif_is_nan_where_it_is_not_defined():
    small = _lung_texture((14, 40, 64))  # torchmetrics needs 41 pixels each way
    assert np.isnan(vif.vif(small, small.copy()))
    flat = np.full((14, 64, 64), -850.0, dtype=np.float32)  # nothing to lose
    assert np.isnan(vif.vif(flat + 30.0, flat))
    with pytest.raises(GeometryError, match="leave nothing"):
        vif.vif(flat[:10], flat[:10])
    with pytest.raises(ThinctError, match="one shape"):
        vif.slice_vif(flat[:2], flat[:3])


def test_bspline_keeps_more_information_than_nearest_on_the_real_crop(example_thin):
    volume = read_volume(example_thin)
    case = simulated_case(volume, "example")
    reference = case.reference_array()
    scores = {
        method: vif.vif(case.slices_first(interpolate(case.thick, case.grid, method)), reference)
        for method in ("nearest", "bspline")
    }
    assert 0.2 < scores["nearest"] < scores["bspline"] < 1


def test_without_torchmetrics_vif_is_nan_and_said_once(monkeypatch, tmp_path, example_thin):
    """An install without torchmetrics (hidden from the import system here): the evaluation
    still runs, says why in one note and reports vif as nan."""
    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    reason = vif.missing_dependency()
    assert reason is not None and "pip install torchmetrics" in reason
    evaluation = plan_evaluation(
        [str(example_thin)],
        tmp_path / "report",
        methods=["nearest"],
        simulation=Simulation(slices=(0.3, 0.7)),
        figures=False,
    )
    assert evaluation.notes == [reason]
    with Reporter(quiet=True) as reporter:
        (result,), failures = run_evaluation(evaluation, reporter)
    assert failures == [] and np.isnan(result.vif) and result.psnr > 30
    with pytest.raises(ThinctError, match="torchmetrics is not installed"):
        vif.slice_vif(np.zeros((1, 64, 64)), np.ones((1, 64, 64)))


def test_a_torchmetrics_that_cannot_be_imported_gives_nan_and_one_warning(tmp_path):
    """nnU-Net's dependencies bring a torchvision built for another torch, and importing
    torchmetrics then fails: VIF becomes NaN with one warning, the evaluation goes on."""
    broken = tmp_path / "torchmetrics"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n', encoding="utf-8"
    )
    script = (
        "import warnings, numpy as np\n"
        "from thinct.evaluate import vif\n"
        "slices = np.full((2, 48, 48), -800.0, np.float32)\n"
        "slices[:, 20:28, 20:28] = 0.0\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    first, second = vif.slice_vif(slices, slices), vif.slice_vif(slices, slices)\n"
        "print(np.isnan(first), np.isnan(second), len(caught), caught[0].message)\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True True 1 vif is nan: torchmetrics cannot be imported here")
    assert "torchvision::nms" in done.stdout
