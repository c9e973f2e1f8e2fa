"""The sliding-window engine (`thinct.inference.engine`): geometry, exactness, tiling, memory,
control.

Exactness is checked with a model whose answer is known: `LinearSlots` fills every slot by
linear interpolation between its two thick slices, so a scan whose HU is linear along the
slices must come out exactly linear, whatever the windows, tiles, padding and thin grid, and
the thin slices past the first and last thick centre must equal the reflected scan. Tiling,
batching, precision and determinism are checked with a tiny untrained CTHNet on crops of the
real example scan (an untrained network amplifies any difference in what it sees, which is
what these tests need).
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers.volumes import DIRECTIONS, make_image
from torch import nn

from thinct.errors import Cancelled, ThinctError, UsageError
from thinct.geometry import Grid, thin_grid
from thinct.inference.engine import (
    InferenceOptions,
    check_options,
    resolve_device,
    upsample_with_model,
)
from thinct.io import read_volume
from thinct.models import CTHNetConfig, create_model
from thinct.resample.interpolation import interpolate
from thinct.volume import HU_MAX, HU_MIN, Volume

# float32 arithmetic on intensities scaled by 1 / 3072: a few ulps of 2048 HU.
HU_ATOL = 2e-3


class LinearSlots(nn.Module):
    """Slot ``r * z + k`` = ``(1 - k / r) x[z] + (k / r) x[z + 1]``: linear interpolation
    between the thick slices of its window. It checks every input it gets, and counts its
    forward passes and batch sizes."""

    def __init__(self, slices: int = 8, ratio: int = 5) -> None:
        super().__init__()
        self.config = CTHNetConfig(slices=slices, ratio=ratio)
        position = torch.arange(self.config.out_slots, dtype=torch.float64) / ratio
        below = position.floor().clamp(max=slices - 2).long()
        fraction = position - below
        weights = torch.zeros(self.config.out_slots, slices, dtype=torch.float64)
        weights[torch.arange(len(position)), below] = 1 - fraction
        weights[torch.arange(len(position)), below + 1] += fraction
        self.register_buffer("weights", weights.float())
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.config.check_input(x.shape)
        assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
        self.batches.append(x.shape[0])
        return torch.einsum("sl,bclhw->bcshw", self.weights, x)


class WindowMean(nn.Module):
    """Every slot is the mean of the window's thick slices: each window predicts a constant,
    so the output along the slices shows exactly how the engine hands over between windows."""

    def __init__(self, slices: int = 8, ratio: int = 5) -> None:
        super().__init__()
        self.config = CTHNetConfig(slices=slices, ratio=ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=2, keepdim=True)
        return mean.expand(-1, -1, self.config.out_slots, -1, -1).contiguous()


def linear_scan(
    slices: int,
    in_plane: tuple[int, int] = (10, 13),
    axis: int = 2,
    thickness: float = 5.0,
    direction: tuple[float, ...] = DIRECTIONS["oblique"],
    step: float = 100.0,
    seed: int = 0,
) -> tuple[Volume, np.ndarray]:
    """A scan whose HU is ``base + step * k`` at slice k, ``base`` a random in-plane pattern
    (so that any in-plane shuffle shows), slices along index ``axis``. Returns the volume and
    ``base`` as an (in-plane, in-plane) array in the order the slice axis leaves them."""
    base = np.random.default_rng(seed).uniform(-800, 200, in_plane)
    slice_first = base[None] + step * np.arange(slices)[:, None, None]
    array = np.moveaxis(slice_first, 0, 2 - axis).astype(np.float32)  # (z, y, x)
    spacing = [0.7, 0.7, 0.7]
    spacing[axis] = thickness
    return Volume(make_image(array, spacing, direction=direction)), base


def slices_first(volume: Volume, axis: int) -> np.ndarray:
    """The voxels as (slice, in-plane, in-plane)."""
    return np.moveaxis(sitk.GetArrayFromImage(volume.image), 2 - axis, 0)


def reflected(position: np.ndarray, count: int) -> np.ndarray:
    """Slice positions mirrored about the first and last slice centre."""
    position = np.where(position < 0, -position, position)
    return np.where(position > count - 1, 2 * (count - 1) - position, position)


def tiny_cthnet(**overrides) -> nn.Module:
    """An untrained CTHNet small enough for a test: 4 thick slices to 10 slots, one layer per
    stage (no shifted windows), 8-pixel in-plane windows, 4-pixel folds."""
    torch.manual_seed(0)
    config = dict(
        slices=4,
        ratio=3,
        encoder_dim=8,
        encoder_heads=2,
        encoder_depths=(1,),
        latent_channels=2,
        fold=4,
        through_depths=(1,),
        through_heads=4,
        in_plane_depths=(1,),
        in_plane_heads=4,
    )
    return create_model("cthnet", **{**config, **overrides})


@pytest.fixture(scope="module")
def example(example_thick) -> Volume:
    return read_volume(example_thick)


def crop(volume: Volume, x: int, y: int, size: tuple[int, int], slices: int) -> Volume:
    """A crop of a real scan with its true geometry (SimpleITK slicing keeps it)."""
    image = volume.image[x : x + size[0], y : y + size[1], 4 : 4 + slices]
    return Volume(image)


def run(volume: Volume, model: nn.Module, align: str = "edges", **options) -> np.ndarray:
    """The model's thin slices of a scan at a third of its slice spacing (the model's ratio)."""
    thin = thin_grid(Grid.of(volume.image), factor=3, align=align)
    result = upsample_with_model(volume, thin, model, InferenceOptions(device="cpu", **options))
    return sitk.GetArrayFromImage(result.image)


# --- exactness and geometry ----------------------------------------------------------------

GRIDS = {
    # name: (thick slices, slice axis, thickness mm, target mm, model slices, model ratio)
    "5mm-to-1mm": (12, 2, 5.0, 1.0, 8, 5),
    "5mm-to-1.25mm": (12, 2, 5.0, 1.25, 8, 5),
    "5mm-to-0.8mm": (12, 2, 5.0, 0.8, 8, 5),
    "2.5mm-to-1mm": (9, 2, 2.5, 1.0, 8, 5),
    "slices-along-x": (11, 0, 5.0, 1.0, 4, 5),
    "slices-along-y": (7, 1, 3.0, 0.5, 4, 3),
}


@pytest.mark.parametrize("align", ["edges", "centers"])
@pytest.mark.parametrize("name", list(GRIDS))
def test_a_linear_scan_comes_out_exactly_linear_on_the_thin_grid(name: str, align: str):
    slices, axis, thickness, target, model_slices, ratio = GRIDS[name]
    volume, base = linear_scan(slices, (37, 50), axis, thickness)
    thin = thin_grid(Grid.of(volume.image), spacing=target, align=align)
    # Tiles smaller than the 37 x 50 slices (padded to 40 x 56) and a z overlap of 3.
    options = InferenceOptions(z_overlap=3, tile=16, tile_overlap=8, batch_size=5, device="cpu")
    result = upsample_with_model(volume, thin, LinearSlots(model_slices, ratio), options)

    assert Grid.of(result.image) == thin.grid
    assert thin.axis == axis and result.slice_thickness == pytest.approx(target)
    position = np.asarray(thin.source_index)
    if align == "edges":  # thin slices beyond both outer thick centres: the reflected part
        assert position[0] < 0 and position[-1] > slices - 1
    expected = base[None] + 100.0 * reflected(position, slices)[:, None, None]
    np.testing.assert_allclose(slices_first(result, axis), expected, rtol=0, atol=HU_ATOL)


@pytest.mark.parametrize("z_overlap", [2, 3])
def test_consecutive_windows_are_cross_faded(z_overlap: int):
    """On a scan rising by 20 HU a slice, windows of 8 slices ``8 - z_overlap`` apart predict
    constants ``20 * (8 - z_overlap)`` HU apart. Cross-faded over the ``(z_overlap - 1) * 5
    + 1`` slots two windows share, the output rises steadily, by at most that difference
    divided by the shared slots from one thin slice to the next; averaging the shared slots
    or switching at once would jump by half or all of it."""
    volume, base = linear_scan(30, (8, 8), step=20.0)
    thin = thin_grid(Grid.of(volume.image), spacing=1.0, align="centers")
    options = InferenceOptions(z_overlap=z_overlap)
    result = upsample_with_model(volume, thin, WindowMean(8, 5), options)
    profile = slices_first(result, 2)[:, 3, 4] - base[3, 4]
    steps = np.diff(profile)
    shared = (z_overlap - 1) * 5 + 1
    assert steps.min() > -HU_ATOL
    assert steps.max() <= 20 * (8 - z_overlap) / shared + HU_ATOL
    assert profile[-1] - profile[0] > 300  # the windows do differ


@pytest.mark.parametrize("slices", [2, 3])
@pytest.mark.parametrize("align", ["edges", "centers"])
def test_fewer_thick_slices_than_a_window(slices: int, align: str):
    """A window of 8 is filled by reflecting 2 or 3 slices back and forth."""
    volume, base = linear_scan(slices, direction=DIRECTIONS["flipped"])
    thin = thin_grid(Grid.of(volume.image), spacing=1.0, align=align)
    model = LinearSlots(8, 5)
    result = upsample_with_model(volume, thin, model, InferenceOptions(device="cpu"))
    assert Grid.of(result.image) == thin.grid
    assert result.image.GetSize()[2] == (5 * slices if align == "edges" else 5 * slices - 4)
    expected = base[None] + 100.0 * reflected(np.asarray(thin.source_index), slices)[:, None, None]
    np.testing.assert_allclose(slices_first(result, 2), expected, rtol=0, atol=HU_ATOL)


def test_values_the_intensity_window_clips_are_restored_from_linear_interpolation():
    """Metal above 2048 HU and padding below -1024 HU reach the model clipped; where linear
    interpolation of the input leaves the window, the output takes that value instead."""
    volume, _ = linear_scan(6, (12, 12), step=50.0)
    array = sitk.GetArrayFromImage(volume.image)  # (z, y, x), HU from -800 to 450
    array[:, :, 0] = -3024.0  # padding outside the scan circle, on every slice
    array[:, 5, 5] = 3000.0  # a metal wire through every slice
    array[3, 8, 8] = 2600.0  # a metal fragment in one slice, 1000 HU between its neighbours
    array[2, 8, 8] = array[4, 8, 8] = 1000.0
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(volume.image)
    volume = Volume(image)
    thin = thin_grid(Grid.of(image), spacing=1.0, align="centers")
    position = np.asarray(thin.source_index)
    below = np.minimum(np.floor(position).astype(int), 4)
    fraction = (position - below)[:, None, None]
    interpolated = (1 - fraction) * array[below] + fraction * array[below + 1]
    modelled = (1 - fraction) * np.clip(array[below], HU_MIN, HU_MAX) + fraction * np.clip(
        array[below + 1], HU_MIN, HU_MAX
    )
    outside = (interpolated < HU_MIN) | (interpolated > HU_MAX)
    # Around the fragment only the thin slices within a third of a slice of it (3 of 26)
    # exceed 2048 HU; the others are the model's, which saw the fragment clipped.
    assert outside[:, 8, 8].sum() == 3

    restored = upsample_with_model(volume, thin, LinearSlots(4, 5), InferenceOptions())
    expected = np.where(outside, interpolated, modelled)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(restored.image), expected, rtol=0, atol=HU_ATOL
    )
    assert sitk.GetArrayFromImage(restored.image)[:, 5, 5] == pytest.approx(3000.0)

    options = InferenceOptions(restore_clipped=False)
    clipped = sitk.GetArrayFromImage(
        upsample_with_model(volume, thin, LinearSlots(4, 5), options).image
    )
    np.testing.assert_allclose(clipped, modelled, rtol=0, atol=HU_ATOL)
    assert clipped[:, :, 0] == pytest.approx(-1024.0)


def test_every_thin_slice_is_predicted_by_a_real_model(example):
    """The first and last thin slices lie outside every thick centre; they must come from the
    model (as every other slice), not stay empty or fall back to interpolation."""
    volume = crop(example, 60, 70, (37, 50), slices=5)
    thin = thin_grid(Grid.of(volume.image), factor=3, align="edges")
    result = upsample_with_model(volume, thin, tiny_cthnet(), InferenceOptions(device="cpu"))
    predicted = sitk.GetArrayFromImage(result.image)
    baseline = sitk.GetArrayFromImage(interpolate(volume, thin, "linear").image)
    assert predicted.shape == baseline.shape == (15, 50, 37)
    assert np.isfinite(predicted).all()
    difference = np.abs(predicted - baseline).mean(axis=(1, 2))
    # An untrained network is far from interpolation on every slice, the end ones included.
    assert difference.min() > 20, difference


# --- tiles -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiling(example) -> dict[str, np.ndarray]:
    """A real 92 x 92 crop (padded to 96 x 96) through a tiny CTHNet untiled, in hard 48-pixel
    tiles, and in 48-pixel tiles that overlap by 16 (starting at 0, 24 and 48). Four slices
    and ``centers``: one window, so that only the in-plane tiling differs."""
    volume = crop(example, 40, 60, (92, 92), slices=4)
    model = tiny_cthnet()
    runs = {
        "untiled": dict(tile=512),
        "hard": dict(tile=48, tile_overlap=0),
        "blended": dict(tile=48, tile_overlap=16),
    }
    return {name: run(volume, model, "centers", z_overlap=1, **o) for name, o in runs.items()}


def test_tiles_agree_with_one_untiled_pass_away_from_their_borders(tiling):
    """48-pixel tiles on the model's 8-pixel window grid can only meet at 48.

    Whatever lies across a tile border changes the tiny model's output at most 18 pixels
    away: the convolutions reach 3 + 1 + 1 + 1 pixels, the encoder's 2-pixel windows, the
    through-plane 4-pixel windows and folds and the 8-pixel in-plane windows each spread that
    to the end of their window (which the border does not cut, tiles being on the grid), and
    two more convolutions add 2. From 24 pixels on, a tile sees exactly what the whole image
    shows, so the result must be the same up to float noise. Tiles off the grid (the engine
    once started the second tile at 44) are cut into other windows and differ everywhere.
    """
    untiled, hard = tiling["untiled"], tiling["hard"]
    far = np.abs(np.arange(92) - 48) >= 24
    region = far[:, None] & far[None, :]
    assert region.sum() > 2000
    np.testing.assert_allclose(hard[:, region], untiled[:, region], rtol=0, atol=1e-2)
    # The border does matter near it: this is not a model that ignores its neighbours.
    assert np.abs(hard - untiled).max() > 100


def _seam_jump(tiled: np.ndarray, untiled: np.ndarray) -> float:
    """The largest change between neighbouring pixels (along x or y) that the tiled image
    has and the untiled one does not: what a seam looks like."""
    return max(
        float(np.abs(np.diff(tiled, axis=axis) - np.diff(untiled, axis=axis)).max())
        for axis in (1, 2)
    )


def test_overlapping_tiles_blend_away_the_seams(tiling):
    """Near a tile border the untrained model's output is disturbed by up to ~1000 HU (hard
    tiles show it). With a 16-pixel overlap, those pixels get a small weight (a linear ramp
    across the shared pixels) against the neighbour tile, in which they lie far from a border:
    the disagreement with one untiled pass shrinks several-fold, and the jumps a seam makes
    between neighbouring pixels by more than ten times. The bounds are for this untrained
    network, which amplifies the border's influence; they say nothing of a trained one.
    """
    untiled, hard, blended = tiling["untiled"], tiling["hard"], tiling["blended"]
    hard_error, blended_error = np.abs(hard - untiled), np.abs(blended - untiled)
    contrast = untiled.std()
    numbers = (
        f"max {hard_error.max():.0f} -> {blended_error.max():.0f}, mean "
        f"{hard_error.mean():.1f} -> {blended_error.mean():.1f}, contrast {contrast:.0f}"
    )
    assert hard_error.max() > 500, numbers
    assert blended_error.max() < 0.25 * hard_error.max(), numbers
    assert blended_error.mean() < 0.35 * hard_error.mean(), numbers
    assert blended_error.mean() < 0.02 * contrast, numbers
    assert _seam_jump(blended, untiled) < 0.1 * _seam_jump(hard, untiled), numbers


# --- batches, determinism, precision ----------------------------------------------------------


@pytest.fixture(scope="module")
def small(example) -> Volume:
    """A real 37 x 42 crop of 5 slices: padded to 40 x 48, in 24-pixel tiles."""
    return crop(example, 100, 80, (37, 42), slices=5)


@pytest.fixture(scope="module")
def reference(small) -> np.ndarray:
    return run(small, tiny_cthnet(), tile=24, tile_overlap=8)


def test_cpu_runs_are_deterministic(small, reference):
    again = run(small, tiny_cthnet(), tile=24, tile_overlap=8)
    assert again.tobytes() == reference.tobytes()


def test_batches_of_tiles_give_the_same_result(small, reference):
    """Batches of 3 mix tiles of different windows; each tile is still computed on its own.
    Batched matrix products add in another order, so float32 rounding (1e-7 relative) differs,
    and the untrained network amplifies it to a few 1e-6 of the [0, 1] scale: 1e-5 of the
    scale (0.03 HU) bounds it, far below any misplaced or mixed-up tile."""
    batched = run(small, tiny_cthnet(), tile=24, tile_overlap=8, batch_size=3)
    np.testing.assert_allclose(batched, reference, rtol=0, atol=1e-5 * (HU_MAX - HU_MIN))


@pytest.fixture(scope="module")
def fp32_centers(small) -> np.ndarray:
    return run(small, tiny_cthnet(), "centers")


@pytest.mark.parametrize(
    ("precision", "mean_hu", "max_hu"), [("bf16", 10.0, 100.0), ("fp16", 2.0, 25.0)]
)
def test_autocast_on_the_cpu_stays_close_to_fp32(
    small, fp32_centers, precision: str, mean_hu: float, max_hu: float
):
    """Half precision rounds the network's matrix products: bf16 keeps 8 significant bits
    (relative steps of 0.4 %, some 4 HU at 1000 HU), fp16 11 bits (8 times finer). Through
    the untrained network this gave a mean error of 2.6 HU (bf16) and 0.4 HU (fp16), 28 and
    5.5 HU at worst; the bounds leave about four times that. The run must differ from fp32,
    or autocast was not on."""
    half = run(small, tiny_cthnet(), "centers", precision=precision)
    assert half.dtype == np.float32
    error = np.abs(half - fp32_centers)
    assert error.max() > 0
    assert error.mean() < mean_hu, error.mean()
    assert error.max() < max_hu, error.max()


# --- in-plane sizes and the example scan --------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 50), (9, 4), (1, 6)])
def test_any_in_plane_size_is_padded_and_cropped_back(size: tuple[int, int]):
    volume, base = linear_scan(4, size, thickness=5.0)
    thin = thin_grid(Grid.of(volume.image), spacing=1.0, align="centers")
    options = InferenceOptions(tile=8, tile_overlap=4)
    result = upsample_with_model(volume, thin, LinearSlots(4, 5), options)
    assert result.image.GetSize() == (size[1], size[0], 16)
    expected = base[None] + 100.0 * np.asarray(thin.source_index)[:, None, None]
    np.testing.assert_allclose(slices_first(result, 2), expected, rtol=0, atol=HU_ATOL)


def test_the_example_scan_through_an_official_layout_model(example):
    """The whole 192 x 192 x 16 example scan, 5 mm to 1 mm, through a tiny CTHNet with the
    published code's memory layout: the output lies exactly on the thin grid, every slice
    is the model's, and the input is left as it was."""
    before = example.array
    model = tiny_cthnet(layout="official", ratio=5, encoder_dim=4, encoder_heads=1, head_channels=2)
    thin = thin_grid(Grid.of(example.image), spacing=1.0, align="edges")
    result = upsample_with_model(example, thin, model, InferenceOptions(z_overlap=1))
    assert Grid.of(result.image) == thin.grid
    assert result.image.GetSize() == (192, 192, 80)
    assert result.image.GetPixelID() == sitk.sitkFloat32
    voxels = sitk.GetArrayFromImage(result.image)
    assert np.isfinite(voxels).all()
    baseline = sitk.GetArrayFromImage(interpolate(example, thin, "linear").image)
    assert np.abs(voxels - baseline).mean(axis=(1, 2)).min() > 20
    np.testing.assert_array_equal(example.array, before)


def test_a_tvsrn_with_the_official_layout_runs_too(example):
    volume = crop(example, 30, 30, (64, 40), slices=6)
    torch.manual_seed(0)
    model = create_model(
        "tvsrn",
        layout="official",
        slices=4,
        ratio=5,
        latent_channels=2,
        encoder_heads=2,
        encoder_depths=(1,),
        through_depths=(1,),
        through_heads=4,
        in_plane_depths=(1,),
        in_plane_heads=4,
    )
    thin = thin_grid(Grid.of(volume.image), spacing=1.0, align="centers")
    result = upsample_with_model(volume, thin, model, InferenceOptions())
    assert Grid.of(result.image) == thin.grid
    assert np.isfinite(sitk.GetArrayFromImage(result.image)).all()


# --- memory ----------------------------------------------------------------------------------


def test_memory_is_the_output_and_a_few_windows():
    """numpy allocations are traced, so the peak during a run is the output plus the working
    set: the windows being predicted and blended. A full-size normalized input of this tall
    scan (400 x 32 x 32 float32, 1.6 MB) would be 11 windows' worth, a full-size weight or
    count volume as large as the output; either breaks the bound."""
    volume, _ = linear_scan(400, (32, 32), direction=DIRECTIONS["axis-aligned"], step=2.0)
    thin = thin_grid(Grid.of(volume.image), spacing=1.0)
    model = LinearSlots(8, 5)
    output = math.prod(thin.grid.size) * 4
    window = model.config.out_slots * 32 * 32 * 4
    tracemalloc.start()
    try:
        result = upsample_with_model(volume, thin, model, InferenceOptions(tile=16, tile_overlap=8))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.image.GetSize() == (32, 32, 2000)
    assert output > 50 * window
    assert peak < output + 4 * window, (peak - output) / window


# --- progress, cancellation, options ---------------------------------------------------------


def test_progress_rises_to_exactly_one_once_per_forward_pass():
    volume, _ = linear_scan(20, (20, 20))
    thin = thin_grid(Grid.of(volume.image), spacing=1.0)
    model = LinearSlots(8, 5)
    fractions: list[float] = []
    options = InferenceOptions(tile=8, tile_overlap=4, batch_size=4)
    upsample_with_model(volume, thin, model, options, progress=fractions.append)
    assert len(fractions) == len(model.batches) > 3
    assert all(b > a for a, b in zip(fractions, fractions[1:], strict=False))
    assert 0 < fractions[0] and fractions[-1] == 1.0
    assert model.batches[:-1] == [4] * (len(model.batches) - 1)


def test_cancel_stops_before_the_next_forward_pass():
    volume, _ = linear_scan(20, (20, 20))
    thin = thin_grid(Grid.of(volume.image), spacing=1.0)
    model = LinearSlots(8, 5)
    polls: list[int] = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) == 3

    with pytest.raises(Cancelled) as error:
        options = InferenceOptions(tile=8, tile_overlap=0)
        upsample_with_model(volume, thin, model, options, cancel=cancel)
    assert isinstance(error.value, ThinctError)
    assert len(model.batches) == 2 and len(polls) == 3


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (dict(precision="fp8"), "precision must be one of fp32, bf16, fp16"),
        (dict(device="tpu"), "device must be one of auto, cpu, cuda, mps"),
        (dict(batch_size=0), "batch size must be at least 1"),
        (dict(tile=4), "tile must be at least 8 pixels"),
        (dict(tile=64, tile_overlap=33), "tile overlap must be from 0 to half the tile (32)"),
        (dict(tile_overlap=-1), "tile overlap must be from 0"),
        (dict(z_overlap=0), "z overlap must be from 1 to 7"),
        (dict(z_overlap=8), "z overlap must be from 1 to 7"),
    ],
)
def test_options_that_cannot_work_are_usage_errors(options: dict, says: str):
    with pytest.raises(UsageError) as error:
        check_options(InferenceOptions(**options), slices=8)
    assert says in str(error.value) and "\n" not in str(error.value)
    # The engine refuses them before any forward pass.
    volume, _ = linear_scan(3)
    thin = thin_grid(Grid.of(volume.image), spacing=1.0)
    model = LinearSlots(8, 5)
    with pytest.raises(UsageError):
        upsample_with_model(volume, thin, model, InferenceOptions(**options))
    assert model.batches == []


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_an_unavailable_device_is_a_usage_error(device: str):
    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"{device} is available on this machine")
    with pytest.raises(UsageError, match=f"device '{device}' is not available on this machine"):
        resolve_device(device)
    with pytest.raises(UsageError):
        check_options(InferenceOptions(device=device))


def test_auto_and_cpu_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None:
        expected = "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
