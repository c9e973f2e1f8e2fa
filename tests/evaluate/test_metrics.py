"""The evaluation metrics: known values on constructed volumes, and sensible orderings on the
real example crop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from thinct.data.cases import simulated_case
from thinct.errors import GeometryError
from thinct.evaluate import metrics
from thinct.io import read_volume
from thinct.resample.interpolation import interpolate


@pytest.fixture(scope="module")
def example_reference(example_thin) -> tuple[np.ndarray, float]:
    """The example crop's 1 mm reference (slices first) and its pixel size in mm."""
    volume = read_volume(example_thin)
    case = simulated_case(volume, "example")
    return case.reference_array(), volume.image.GetSpacing()[0]


def _volume(value: float, shape=(16, 24, 24)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def test_psnr_of_identical_volumes_is_the_published_40_db():
    volume = np.random.default_rng(0).normal(0, 300, (14, 20, 20)).astype(np.float32)
    assert metrics.psnr(volume, volume.copy()) == 40.0
    assert metrics.lung_psnr(volume, volume.copy()) == 40.0


@pytest.mark.parametrize(
    ("offset_hu", "expected_db"),
    [(3.072, 60.0), (30.72, 40.0), (307.2, 20.0), (9.714451, 50.0)],
)
def test_psnr_of_a_constant_offset_follows_the_3072_hu_range(offset_hu, expected_db):
    """[-1024, 2048] HU is 3072 HU to 1: an offset of 3.072 HU is 0.001, an MSE of 1e-6."""
    reference = _volume(0.0)
    assert metrics.psnr(reference + offset_hu, reference) == pytest.approx(expected_db, abs=1e-3)


def test_psnr_leaves_out_five_slices_at_each_end():
    reference = _volume(0.0)
    output = reference.copy()
    output[:5] += 500.0
    output[-5:] -= 500.0
    assert metrics.psnr(output, reference) == 40.0
    output[5] += 3072.0 * 0.1  # one counted slice of 6 off by 0.1: MSE 0.01 / 6
    assert metrics.psnr(output, reference) == pytest.approx(10 * np.log10(600), abs=1e-6)


def test_psnr_clips_to_the_window_before_comparing():
    reference = _volume(-1024.0)
    assert metrics.psnr(reference - 1000.0, reference) == 40.0  # both below -1024 HU


def test_lung_psnr_is_psnr_in_the_lung_window():
    """Level -600, width 1500: 1.5 HU inside the window is 0.001, so 60 dB."""
    assert metrics.LUNG_WINDOW == (-1350.0, 150.0)
    reference = _volume(-600.0)
    assert metrics.lung_psnr(reference + 1.5, reference) == pytest.approx(60.0, abs=1e-3)
    # The same offset is 20 * log10(3072 / 1.5) dB on the full range.
    assert metrics.psnr(reference + 1.5, reference) == pytest.approx(66.227, abs=1e-3)


def test_lung_psnr_ignores_differences_outside_the_lung_window():
    reference = _volume(-700.0)
    reference[:, :, 12:] = 400.0  # soft tissue and bone, above the window's 150 HU
    output = reference.copy()
    output[:, :, 12:] += np.random.default_rng(1).uniform(0, 800, output[:, :, 12:].shape)
    assert metrics.lung_psnr(output, reference) == 40.0
    assert metrics.psnr(output, reference) < 30.0
    output[:, :, :12] += 15.0  # inside the window, half the voxels off by 0.01: counts
    assert metrics.lung_psnr(output, reference) == pytest.approx(10 * np.log10(2e4), abs=1e-6)


def test_ssim_is_one_for_identical_volumes_and_within_bounds_otherwise():
    rng = np.random.default_rng(2)
    volume = rng.normal(-300, 400, (14, 32, 32)).astype(np.float32)
    assert metrics.ssim(volume, volume.copy()) == pytest.approx(1.0, abs=1e-12)
    noisy = volume + rng.normal(0, 300, volume.shape).astype(np.float32)
    value = metrics.ssim(noisy, volume)
    assert -1.0 <= value < 0.9
    inverted = (1024.0 - volume).astype(np.float32)  # anti-correlated structure
    assert -1.0 <= metrics.ssim(inverted, volume) < 0.0


def test_ssim_in_blocks_equals_ssim_of_the_whole_volume():
    """SSIM runs over blocks of slices to bound memory; the window is per slice, so the
    blocks must not change the result."""
    rng = np.random.default_rng(3)
    reference = rng.normal(-300, 400, (45, 24, 24)).astype(np.float32)
    output = gaussian_filter(reference, 1.0)
    whole = metrics.ssim(output, reference)
    by_slice = np.mean(
        [metrics.ssim(output[i - 5 : i + 6], reference[i - 5 : i + 6]) for i in range(5, 40)]
    )
    assert whole == pytest.approx(by_slice, rel=1e-9)


def test_metrics_refuse_volumes_that_do_not_match():
    with pytest.raises(GeometryError, match="differ"):
        metrics.psnr(_volume(0, (12, 8, 8)), _volume(0, (12, 8, 9)))
    with pytest.raises(GeometryError, match="leave nothing"):
        metrics.ssim(_volume(0, (10, 8, 8)), _volume(0, (10, 8, 8)))
    with pytest.raises(GeometryError, match="leave nothing"):
        metrics.frangi_score(_volume(0, (10, 8, 8)), _volume(0, (10, 8, 8)))


def test_frangi_slices_are_spread_over_the_counted_slices():
    assert list(metrics.frangi_slices(20)) == list(range(5, 15))
    chosen = metrics.frangi_slices(300)
    assert len(chosen) == metrics.FRANGI_SLICES
    assert chosen[0] == 5 and chosen[-1] == 294
    assert np.all(np.diff(chosen) > 0)


def test_vesselness_finds_a_bright_tube_and_ignores_flat_lung():
    lung = np.full((1, 64, 64), -850.0, dtype=np.float32)
    vessel = lung.copy()
    vessel[0, :, 30:33] = 40.0  # a 2 mm vessel (3 pixels of 0.7 mm)
    flat = metrics.vesselness(lung, pixel_mm=0.7)
    tube = metrics.vesselness(vessel, pixel_mm=0.7)
    assert flat.max() == 0.0
    assert tube[0, 32, 31] > 0.5
    assert tube[0, 32, 10] < 0.01
    assert 0.0 <= tube.min() and tube.max() <= 1.0


def test_frangi_score_is_zero_for_identical_and_grows_with_blur(example_reference):
    reference, pixel_mm = example_reference
    assert metrics.frangi_score(reference, reference.copy(), pixel_mm, most=4) == 0.0
    chosen = metrics.frangi_slices(reference.shape[0], most=6)
    vessels = metrics.vesselness(reference[chosen], pixel_mm)
    scores = [
        metrics.vessel_difference(
            metrics.vesselness(gaussian_filter(reference, sigma)[chosen], pixel_mm), vessels
        )
        for sigma in (0.5, 1.5)
    ]
    assert 0.0 < scores[0] < scores[1] < 1.0
    # An output without any vessels has lost all the reference's vessel signal.
    no_vessels = np.full_like(reference, -850.0)
    assert metrics.frangi_score(no_vessels, reference, pixel_mm, most=4) == pytest.approx(1.0)


def test_frangi_score_is_nan_without_vessels_in_the_reference():
    flat = _volume(-850.0, (12, 32, 32))
    assert np.isnan(metrics.frangi_score(flat + 100.0, flat, 0.7))


def test_smse_is_a_thousand_times_the_mean_squared_vesselness_difference():
    reference = np.zeros((2, 10, 10), dtype=np.float32)
    reference[:, 4:6, :] = 0.8
    assert metrics.structure_mse(reference, reference.copy()) == 0.0
    # 40 of 200 pixels off by 0.8: mean square 0.128, times 1000.
    assert metrics.structure_mse(np.zeros_like(reference), reference) == pytest.approx(128.0)
    # Squared: twice the difference is four times the score.
    assert metrics.structure_mse(reference + 0.2, reference) == pytest.approx(40.0)
    assert metrics.structure_mse(reference + 0.1, reference) == pytest.approx(10.0)
    with pytest.raises(GeometryError, match="differ"):
        metrics.structure_mse(reference[:1], reference)


def test_smse_is_zero_for_identical_and_grows_with_blur(example_reference):
    reference, pixel_mm = example_reference
    assert metrics.smse(reference, reference.copy(), pixel_mm, most=4) == 0.0
    scores = [
        metrics.smse(gaussian_filter(reference, sigma), reference, pixel_mm, most=4)
        for sigma in (0.5, 1.5)
    ]
    assert 0.0 < scores[0] < scores[1]
    # No vessels at all: the reference's own mean squared vesselness.
    chosen = metrics.frangi_slices(reference.shape[0], most=4)
    vessels = metrics.vesselness(reference[chosen], pixel_mm).astype(np.float64)
    no_vessels = np.full_like(reference, -850.0)
    assert metrics.smse(no_vessels, reference, pixel_mm, most=4) == pytest.approx(
        metrics.SMSE_SCALE * np.mean(vessels**2), rel=1e-6
    )


def test_bspline_beats_nearest_on_every_metric_of_the_real_crop(example_thin):
    """Real data: the cubic B-spline is closer to the real 1 mm slices than nearest neighbour
    by each metric (and SSIM, PSNR stay in their published ranges)."""
    volume = read_volume(example_thin)
    case = simulated_case(volume, "example")
    reference = case.reference_array()
    pixel_mm = volume.image.GetSpacing()[0]
    scores = {}
    for method in ("nearest", "bspline"):
        output = case.slices_first(interpolate(case.thick, case.grid, method))
        scores[method] = (
            metrics.psnr(output, reference),
            metrics.ssim(output, reference),
            metrics.lung_psnr(output, reference),
            metrics.frangi_score(output, reference, pixel_mm, most=8),
            metrics.smse(output, reference, pixel_mm, most=8),
        )
    nearest, bspline = scores["nearest"], scores["bspline"]
    assert 30 < nearest[0] < bspline[0] < 40
    assert 0.9 < nearest[1] < bspline[1] < 1
    assert nearest[2] < bspline[2] < nearest[0]  # the lung window is the harder test
    assert 0 < bspline[3] < nearest[3] < 1
    assert 0 < bspline[4] < nearest[4]


# --- lung density ---------------------------------------------------------------------------


def _chest_phantom() -> np.ndarray:
    """Air around a soft-tissue body with two lungs of -850 HU that hold a -980 HU bulla."""
    z, y, x = np.mgrid[0:30, 0:64, 0:64]
    volume = np.full((30, 64, 64), -1000.0)
    volume[(y - 32) ** 2 + (x - 32) ** 2 < 28**2] = 40.0
    for centre in (20, 44):
        volume[((y - 32) / 16) ** 2 + ((x - centre) / 9) ** 2 < 1] = -850.0
    volume[(z >= 10) & (z < 20) & ((y - 32) ** 2 + (x - 20) ** 2 < 16)] = -980.0
    return volume


def test_lung_mask_finds_the_lungs_and_not_the_air_around_the_body():
    volume = _chest_phantom()
    mask = metrics.lung_mask(volume)
    assert mask.any()
    assert set(np.unique(volume[mask])) <= {-850.0, -980.0}
    assert not mask[:, 0:3, :].any()  # the air outside the body
    # A crop inside the body whose lung reaches its border keeps that lung.
    crop = volume[:, 16:48, 12:40]
    assert metrics.lung_mask(crop).sum() > 0.5 * (crop < -400).sum()


def test_lung_density_bias_is_the_mean_shift_and_the_laa950_change():
    reference = _chest_phantom()
    mask = metrics.lung_mask(reference[5:-5])
    hu_bias, laa_bias = metrics.lung_density_bias(reference - 16.0, reference)
    assert hu_bias == pytest.approx(-16.0)
    # Shifted down by 16 HU, the -850 HU lung stays above -950; the bulla was already below.
    assert laa_bias == pytest.approx(0.0)
    darker = reference.copy()
    darker[reference == -850.0] = -960.0
    _, laa_bias = metrics.lung_density_bias(darker, reference)
    lung = reference[5:-5][mask]
    assert laa_bias == pytest.approx(100.0 * np.mean(lung == -850.0))
    assert metrics.lung_density_bias(reference, reference) == (0.0, 0.0)


def test_lung_density_bias_is_nan_without_lungs():
    head = np.full((20, 40, 40), 40.0)
    head[:, :3] = -1000.0
    assert all(np.isnan(v) for v in metrics.lung_density_bias(head, head))
