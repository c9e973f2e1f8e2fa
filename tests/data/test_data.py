"""Training data: simulated pairs, slice ranges, random crops and the config's sources, on the
shipped real CT crop (192 x 192 x 64 at 0.68 x 0.68 x 1.25 mm).

Expected values are direct numpy means of the scan's own voxels and world positions from
SimpleITK; they never go through the simulator's slab weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers.paths import EXAMPLES
from helpers.volumes import DIRECTIONS, make_image

from thinct.data.crops import CropOptions, CropSampler
from thinct.data.pairs import (
    Pair,
    normalise,
    resample_axis,
    simulated_pair,
    simulated_pairs,
    slice_range,
)
from thinct.errors import GeometryError, UsageError
from thinct.io import read_volume
from thinct.train.config import DataSection, Degradation, Source
from thinct.train.sources import scan_paths, training_pairs, validation_cases
from thinct.volume import Volume

CROP = "lidc0002_crop_1.25mm.nii.gz"
TISSUE = (-900.0 + 1024.0) / 3072.0  # the crop sampler's tissue threshold on the [0, 1] scale


@pytest.fixture(scope="module")
def volume() -> Volume:
    return read_volume(EXAMPLES / CROP)


@pytest.fixture(scope="module")
def hu(volume) -> np.ndarray:
    """The crop's voxels as (z, y, x) float64 HU (all inside [-1024, 2048])."""
    array = volume.array.astype(np.float64)
    assert array.min() >= -1024 and array.max() <= 2048
    return array


@pytest.fixture(scope="module")
def native_pair(volume) -> Pair:
    """5 x 1.25 mm slabs of the crop, without resampling (spacing 1.25 mm)."""
    return simulated_pair(volume, ratio=5, spacing=1.25, name="crop")


# --- pairs ---------------------------------------------------------------------------------


def test_simulated_pair_is_boxcar_means_of_the_thin_slices(native_pair, hu):
    pair = native_pair
    # 80 mm of scan hold 12 whole 6.25 mm slabs, the first starting at the scan's edge.
    assert pair.thin.shape == (64, 192, 192)
    assert pair.thick.shape == (12, 192, 192)
    assert pair.thick.dtype == np.float32 and pair.thin.dtype == np.float32
    assert (pair.ratio, pair.offset) == (5, 2)
    assert pair.name == "crop (z, boxcar)"
    np.testing.assert_array_equal(pair.thin, hu.astype(np.float32))
    for z in range(12):
        expected = hu[5 * z : 5 * z + 5].mean(axis=0)
        np.testing.assert_allclose(pair.thick[z], expected, atol=1e-2)
        # ... and the thick slice sits on thin slice ratio * z + offset, its slab's centre.
        centre = 5 * z + pair.offset
        np.testing.assert_allclose(pair.thick[z], hu[centre - 2 : centre + 3].mean(0), atol=1e-2)


def test_simulated_pair_at_1mm_resamples_the_thin_scan_first(volume):
    pair = simulated_pair(volume, ratio=5, spacing=1.0)
    # 63 gaps of 1.25 mm = 78.75 mm: 79 slices 1 mm apart, 15 whole 5 mm slabs.
    assert pair.thin.shape == (79, 192, 192)
    assert pair.thick.shape == (15, 192, 192)
    for z in (0, 7, 14):
        expected = pair.thin[5 * z : 5 * z + 5].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(pair.thick[z], expected, atol=1e-2)


def test_slab_phases_shift_which_thin_slices_form_a_slab_and_share_the_thin_stack(volume, hu):
    profiles = (("boxcar", None), ("gaussian", 5.0))
    pairs = simulated_pairs(volume, 5, 1.25, profiles, phases=5, name="crop")
    assert len(pairs) == 10
    assert [p.name for p in pairs[:3]] == [
        "crop (z, boxcar, phase 0)",
        "crop (z, gaussian 5 mm, phase 0)",
        "crop (z, boxcar, phase 1)",
    ]
    for index, pair in enumerate(pairs):
        phase = index // 2
        assert np.shares_memory(pair.thin, pairs[0].thin)
        np.testing.assert_array_equal(pair.thin, hu[phase:].astype(np.float32))
        if index % 2 == 0:  # boxcar: thick slice z is the mean of its slab, centred on its slot
            for z in (0, pair.thick.shape[0] - 1):
                centre = 5 * z + pair.offset
                np.testing.assert_allclose(
                    pair.thick[z], pair.thin[centre - 2 : centre + 3].mean(0), atol=1e-2
                )
    # The phases really are different slabs.
    assert not np.allclose(pairs[0].thick[1], pairs[2].thick[1])


@pytest.mark.parametrize("phases", [0, 6])
def test_slab_phases_beyond_the_ratio_are_refused(volume, phases):
    with pytest.raises(UsageError, match="phases must be from 1 to the ratio"):
        simulated_pairs(volume, 5, 1.25, phases=phases)


@pytest.mark.parametrize("ratio", [4, 2, 1, 0])
def test_simulated_pair_refuses_even_or_tiny_ratios(volume, ratio):
    with pytest.raises(UsageError, match="odd ratio"):
        simulated_pair(volume, ratio=ratio)


def test_simulated_pair_refuses_an_axis_that_is_not_one(volume):
    with pytest.raises(
        UsageError, match="the axis must be 0 [(]x[)], 1 [(]y[)] or 2 [(]z[)], got 3"
    ):
        simulated_pair(volume, axis=3)


def test_in_plane_pair_puts_x_first(volume, hu):
    pair = simulated_pair(volume, ratio=5, spacing=1.0, axis=0, name="crop")
    # x: 191 gaps of 0.6816 mm = 130.2 mm, so 131 columns 1 mm apart and 26 whole 5 mm slabs;
    # each slice of the stack is a (z, y) plane.
    assert pair.thin.shape == (131, 64, 192)
    assert pair.thick.shape == (26, 64, 192)
    assert pair.name == "crop (x, boxcar)"
    # The first column's centre is kept, so the first thin slice is the scan's first x plane.
    np.testing.assert_allclose(pair.thin[0], hu[:, :, 0], atol=0.5)
    expected = pair.thin[5:10].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(pair.thick[1], expected, atol=1e-2)


def test_resample_axis_keeps_the_first_slice_centre_and_sets_the_spacing(volume, hu):
    resampled = resample_axis(volume, 2, 1.0)
    image = resampled.image
    assert image.GetSize() == (192, 192, 79)
    assert image.GetSpacing() == pytest.approx((0.6816409826278687, 0.6816409826278687, 1.0))
    assert image.GetOrigin() == pytest.approx(volume.image.GetOrigin())
    assert image.GetDirection() == volume.image.GetDirection()
    assert resampled.slice_thickness == 1.0
    array = sitk.GetArrayFromImage(image)
    # The cubic B-spline interpolates: 0 mm and 5 mm are samples of the original scan.
    np.testing.assert_allclose(array[0], hu[0], atol=0.5)
    np.testing.assert_allclose(array[5], hu[4], atol=0.5)
    # Within 0.1 % of the current spacing the volume is returned as it is.
    assert resample_axis(volume, 2, 1.2505) is volume


def test_slice_range_keeps_the_slices_and_their_world_positions(hu):
    image = make_image(hu.astype(np.int16), (0.68, 0.68, 1.25), direction=DIRECTIONS["oblique"])
    volume = Volume(image, slice_thickness=1.25)
    part = slice_range(volume, 0.25, 0.75)
    # round(0.25 * 64) = 16 up to round(0.75 * 64) = 48
    np.testing.assert_array_equal(part.array, hu[16:48].astype(np.int16))
    assert part.image.GetSize() == (192, 192, 32)
    assert part.image.GetSpacing() == pytest.approx(image.GetSpacing())
    assert part.image.GetDirection() == pytest.approx(image.GetDirection())
    expected_origin = image.TransformIndexToPhysicalPoint((0, 0, 16))
    assert part.image.GetOrigin() == pytest.approx(expected_origin, abs=1e-6)
    # origin + direction's slice column * 16 slices * 1.25 mm
    column = np.asarray(DIRECTIONS["oblique"]).reshape(3, 3)[:, 2]
    moved = np.asarray(part.image.GetOrigin()) - np.asarray(image.GetOrigin())
    np.testing.assert_allclose(moved, column * 16 * 1.25, atol=1e-6)
    assert part.slice_thickness == 1.25


def test_slice_range_of_the_whole_scan_and_its_end(volume, hu):
    np.testing.assert_array_equal(slice_range(volume, 0.0, 1.0).array, hu)
    np.testing.assert_array_equal(slice_range(volume, 0.9, 1.0).array, hu[58:])


@pytest.mark.parametrize(
    ("start", "stop", "message"),
    [
        (0.5, 0.5, "0 <= start < stop <= 1"),
        (0.6, 0.4, "0 <= start < stop <= 1"),
        (-0.1, 0.5, "0 <= start < stop <= 1"),
        (0.5, 1.2, "0 <= start < stop <= 1"),
        (0.3, 0.31, "fewer than 2 of 64 slices"),
    ],
)
def test_slice_range_refuses_bad_ranges(volume, start, stop, message):
    with pytest.raises(UsageError, match=message) as error:
        slice_range(volume, start, stop)
    assert "\n" not in str(error.value)


def _pair(thick_slices: int, thin_slices: int, ratio: int = 5, offset: int = 2) -> Pair:
    return Pair(
        thick=np.zeros((thick_slices, 4, 4), np.float32),
        thin=np.zeros((thin_slices, 4, 4), np.float32),
        ratio=ratio,
        offset=offset,
        name="zeros",
    )


@pytest.mark.parametrize(
    ("thick", "thin", "slices", "expected"),
    [
        (10, 48, 8, 3),  # the last window's thin slots end at 5 * 9 + 2 = 47
        (10, 47, 8, 2),  # one thin slice less: the third window no longer fits
        (10, 100, 8, 3),  # the thick stack limits
        (7, 100, 8, 0),  # fewer thick slices than a window
        (8, 37, 8, 0),  # 36 slots from slice 2 need 38 thin slices
        (8, 38, 8, 1),
        (12, 64, 1, 12),
    ],
)
def test_window_starts_counts_windows_with_every_thin_slot_inside(thick, thin, slices, expected):
    pair = _pair(thick, thin)
    assert pair.window_starts(slices) == expected
    # By hand: start z fits when its last thin slot 5 * (z + slices - 1) + 2 exists.
    by_hand = sum(1 for z in range(thick - slices + 1) if 5 * (z + slices - 1) + 2 <= thin - 1)
    assert expected == by_hand


def test_pair_refuses_mismatched_or_bad_stacks():
    with pytest.raises(GeometryError, match="differ in size"):
        Pair(np.zeros((2, 4, 4)), np.zeros((10, 4, 5)), 5, 2, "odd")
    with pytest.raises(UsageError, match="3D"):
        Pair(np.zeros((2, 4)), np.zeros((10, 4)), 5, 2, "flat")
    with pytest.raises(UsageError, match="offset"):
        _pair(2, 10, offset=-1)


def test_normalise_maps_the_window_to_unit_range():
    values = np.array([-2000.0, -1024.0, 512.0, 2048.0, 3000.0])
    np.testing.assert_allclose(normalise(values), [0.0, 0.0, 0.5, 1.0, 1.0])


# --- crops ---------------------------------------------------------------------------------

PLAIN = CropOptions(slices=8, ratio=5, tile=32, flip=0.0, transpose=0.0, min_tissue=0.0)


def _assert_aligned(thick: torch.Tensor, thin: torch.Tensor) -> None:
    """Thick crop slice k is the mean of thin slots 5k - 2 .. 5k + 2 (on the [0, 1] scale,
    linear here since the crop's HU never leave [-1024, 2048])."""
    thick, thin = thick[0].double().numpy(), thin[0].double().numpy()
    for k in range(1, 7):
        np.testing.assert_allclose(thick[k], thin[5 * k - 2 : 5 * k + 3].mean(0), atol=1e-5)


def test_crop_shapes_and_alignment(native_pair):
    sampler = CropSampler([native_pair], PLAIN, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        thick, thin = sampler.draw(rng)
        assert thick.shape == (1, 8, 32, 32) and thin.shape == (1, 36, 32, 32)
        assert thick.dtype == torch.float32 and thin.dtype == torch.float32
        assert 0 <= float(thin.min()) and float(thin.max()) <= 1
        _assert_aligned(thick, thin)


def test_noise_goes_to_the_thick_input_only(native_pair):
    noisy = CropOptions(
        slices=8, ratio=5, tile=32, flip=0.0, transpose=0.0, min_tissue=0.0, noise=20.0
    )
    clean_thick, clean_thin = CropSampler([native_pair], PLAIN).draw(np.random.default_rng(4))
    thick, thin = CropSampler([native_pair], noisy).draw(np.random.default_rng(4))
    assert torch.equal(thin, clean_thin)
    difference = (thick - clean_thick).double() * 3072  # back to HU
    assert 0 < float(difference.std()) <= 20.0 * 1.1


def test_crop_is_a_window_of_the_pair(native_pair):
    """The thin slots are a contiguous block of the thin stack, starting on a thick slice."""
    sampler = CropSampler([native_pair], PLAIN, seed=0)
    thick, thin = sampler.draw(np.random.default_rng(5))
    thin_hu = thin[0].double().numpy() * 3072 - 1024
    thick_hu = thick[0].double().numpy() * 3072 - 1024
    pair = native_pair
    hits = []
    for z in range(pair.window_starts(8)):
        for y in range(192 - 32 + 1):
            for x in range(192 - 32 + 1):
                if abs(pair.thick[z, y, x] - thick_hu[0, 0, 0]) < 0.05:
                    block = pair.thick[z : z + 8, y : y + 32, x : x + 32]
                    if np.allclose(block, thick_hu, atol=0.05):
                        hits.append((z, y, x))
    assert len(hits) == 1
    z, y, x = hits[0]
    first = 5 * z + 2
    np.testing.assert_allclose(
        pair.thin[first : first + 36, y : y + 32, x : x + 32], thin_hu, atol=0.05
    )


def test_crop_stream_is_reproducible_and_streams_differ(native_pair):
    options = CropOptions(slices=8, ratio=5, tile=32)

    def first_crops(seed: int, stream: int) -> list[torch.Tensor]:
        crops = iter(CropSampler([native_pair], options, seed=seed, stream=stream))
        return [next(crops)[1] for _ in range(3)]

    same = first_crops(3, 0)
    for a, b in zip(same, first_crops(3, 0), strict=True):
        assert torch.equal(a, b)
    other_stream = first_crops(3, 1)
    other_seed = first_crops(4, 0)
    assert not any(torch.equal(a, b) for a, b in zip(same, other_stream, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(same, other_seed, strict=True))


def test_flips_and_transpose_keep_the_alignment(native_pair):
    plain = CropSampler([native_pair], PLAIN)
    flipped = CropSampler(
        [native_pair], CropOptions(slices=8, ratio=5, tile=32, flip=1, transpose=1, min_tissue=0)
    )
    # The same generator state cuts the same crop (flips draw their coin either way).
    thick, thin = plain.draw(np.random.default_rng(9))
    thick_f, thin_f = flipped.draw(np.random.default_rng(9))
    assert not torch.equal(thin, thin_f)
    assert torch.equal(thin_f, thin.flip(2, 3).transpose(2, 3))
    assert torch.equal(thick_f, thick.flip(2, 3).transpose(2, 3))
    _assert_aligned(thick_f, thin_f)


def test_intensity_augmentation_scales_input_and_target_together(native_pair):
    options = CropOptions(slices=8, ratio=5, tile=32, flip=0, transpose=0, intensity=0.2)
    thick, thin = CropSampler([native_pair], options).draw(np.random.default_rng(2))
    plain_thick, plain_thin = CropSampler([native_pair], PLAIN).draw(np.random.default_rng(2))
    # Same crop, one affine map of both: fit it on the target, check it on the input.
    a, b = np.polyfit(plain_thin.double().numpy().ravel(), thin.double().numpy().ravel(), 1)
    assert abs(a - 1) > 1e-4 or abs(b) > 1e-4
    assert 0.8 <= a <= 1.2 and abs(b) <= 0.2
    np.testing.assert_allclose(thick.double().numpy(), a * plain_thick.double().numpy() + b, 1e-4)


def test_min_tissue_redraws_air_crops(native_pair):
    # The real crop with its first 64 columns replaced by air.
    thick, thin = native_pair.thick.copy(), native_pair.thin.copy()
    thick[:, :, :64] = -1024
    thin[:, :, :64] = -1024
    pair = Pair(thick, thin, 5, 2, "half air")

    def tissue_fractions(min_tissue: float) -> np.ndarray:
        options = CropOptions(slices=8, ratio=5, tile=32, min_tissue=min_tissue)
        sampler = CropSampler([pair], options)
        rng = np.random.default_rng(0)
        return np.array([float((sampler.draw(rng)[0] > TISSUE).float().mean()) for _ in range(40)])

    anything = tissue_fractions(0.0)
    picky = tissue_fractions(0.5)
    assert np.sum(anything < 0.5) >= 5  # about a third of the positions are mostly air
    assert np.all(picky >= 0.5)


def test_larger_pairs_are_drawn_more_often(native_pair):
    small = Pair(native_pair.thick[:, :40, :40], native_pair.thin[:, :40, :40], 5, 2, "small")
    sampler = CropSampler([small, native_pair], PLAIN)
    # 5 * 9 * 9 positions against 5 * 161 * 161
    assert sampler.weights == pytest.approx([81 / (81 + 161**2), 161**2 / (81 + 161**2)])


def test_crop_sampler_drops_small_pairs_and_refuses_when_none_fit(native_pair):
    small = Pair(native_pair.thick[:, :20, :20], native_pair.thin[:, :20, :20], 5, 2, "small")
    assert CropSampler([small, native_pair], PLAIN).pairs == [native_pair]
    with pytest.raises(UsageError, match="no training pair holds a crop of 8 thick slices"):
        CropSampler([small], PLAIN)
    with pytest.raises(UsageError, match="256 x 256"):
        CropSampler([native_pair], CropOptions(slices=8, ratio=5, tile=256))
    with pytest.raises(UsageError, match="13 thick slices"):
        CropSampler([native_pair], CropOptions(slices=13, ratio=5, tile=32))


def test_crop_sampler_refuses_another_ratio(volume):
    pair = simulated_pair(volume, ratio=3, spacing=1.25, name="crop")
    with pytest.raises(UsageError, match=r"crop \(z, boxcar\): ratio 3, the model's is 5"):
        CropSampler([pair], PLAIN)


def test_crop_options_slots():
    assert CropOptions(slices=8, ratio=5).slots == 36
    assert CropOptions(slices=4, ratio=4).slots == 13


# --- sources -------------------------------------------------------------------------------


def test_scan_paths_lists_scans_of_a_folder(tmp_path):
    assert scan_paths(EXAMPLES) == sorted(EXAMPLES.glob("*.nii.gz"))
    assert scan_paths(EXAMPLES / CROP) == [EXAMPLES / CROP]
    with pytest.raises(UsageError, match="no such file or folder"):
        scan_paths(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("no scans here")
    with pytest.raises(UsageError, match="holds no scans"):
        scan_paths(tmp_path)


def test_training_pairs_of_every_axis_and_degradation():
    data = DataSection(
        root=str(EXAMPLES),
        spacing=1.0,
        train=(Source(CROP, axes=("z", "x"), slices=(0.0, 0.6)),),
        degradations=(Degradation(), Degradation("gaussian", 6.0)),
    )
    pairs = training_pairs(data, ratio=5)
    names = [pair.name for pair in pairs]
    part = f"{CROP}[0:0.6]"
    assert names == [
        f"{part} (z, boxcar)",
        f"{part} (z, gaussian 6 mm)",
        f"{part} (x, boxcar)",
        f"{part} (x, gaussian 6 mm)",
    ]
    # round(0.6 * 64) = 38 slices of 1.25 mm: 47 slices 1 mm apart, 9 slabs of 5 mm.
    assert pairs[0].thin.shape == (47, 192, 192) and pairs[0].thick.shape == (9, 192, 192)
    assert pairs[2].thin.shape == (131, 38, 192) and pairs[2].thick.shape == (26, 38, 192)
    # Thickness jitter: the same thin stack, different thick slices.
    np.testing.assert_array_equal(pairs[0].thin, pairs[1].thin)
    assert not np.allclose(pairs[0].thick, pairs[1].thick, atol=1.0)


def test_validation_cases_are_whole_slabs_on_the_reference_grid():
    data = DataSection(
        root=str(EXAMPLES),
        train=(Source(CROP),),
        validation=(Source(CROP, slices=(0.65, 1.0)),),
    )
    (case,) = validation_cases(data, ratio=5)
    assert case.name == f"{CROP}[0.65:1]"
    # round(0.65 * 64) = 42: 22 slices, 27 at 1 mm, 5 slabs, a reference of 25 slices.
    assert case.thick.image.GetSize() == (192, 192, 5)
    assert case.reference.image.GetSize() == (192, 192, 25)
    assert case.grid.grid.size == (192, 192, 25)
    reference = case.reference_array()
    thick = case.slices_first(case.thick)
    for z in range(5):
        expected = reference[5 * z : 5 * z + 5].astype(np.float64).mean(0)
        np.testing.assert_allclose(thick[z], expected, atol=1e-2)
    # The reference starts where the held-out part starts.
    start = read_volume(EXAMPLES / CROP).image.TransformIndexToPhysicalPoint((0, 0, 42))
    assert case.reference.image.GetOrigin() == pytest.approx(start)
    assert math.isclose(case.grid.spacing, 1.0)
