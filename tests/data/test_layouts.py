"""Paired datasets in the RPLHR-CT and CTHNet folder layouts, built in tmp_path from the shipped
real CT crop: a 1 mm thin scan resampled from it and its 5 mm boxcar slabs, written as int16
NIfTI like the public datasets, then damaged one way at a time.

Expected thick slices are direct numpy means of the thin file's voxels, and expected slice
positions come from `thinct.geometry.thin_grid`, never from the code under test.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers.layouts import write_cthnet, write_rplhr
from helpers.paths import EXAMPLES

from thinct.data.layouts import (
    CORRELATION_MARGIN,
    MIN_CORRELATION,
    layout_cases,
    layout_files,
    layout_pairs,
    reference_grid,
    slab_correlations,
)
from thinct.data.pairs import resample_axis, slice_stack
from thinct.errors import GeometryError, ThinctWarning, UsageError
from thinct.geometry import Grid, thin_grid
from thinct.io import read_volume
from thinct.resample.interpolation import interpolate
from thinct.resample.simulate import simulate_thick
from thinct.train.config import load_train_config
from thinct.train.sources import training_pairs, validation_cases
from thinct.volume import Volume

THIN = "lidc0002_crop_1.25mm.nii.gz"
THICK = "lidc0002_crop_5mm.nii.gz"


@pytest.fixture(scope="module")
def thin() -> Volume:
    """The crop resampled to 1 mm slices: 79 slices of 192 x 192."""
    return resample_axis(read_volume(EXAMPLES / THIN), 2, 1.0)


@pytest.fixture(scope="module")
def thick(thin) -> Volume:
    """Its 5 mm boxcar slabs: 15 slices, slab z over thin slices 5z to 5z + 4 (centre 5z + 2)."""
    return simulate_thick(thin, 5.0)


def regridded(volume: Volume, **changes) -> Volume:
    """The same voxels with some of spacing / origin / direction replaced."""
    image = sitk.Image(volume.image)
    grid = Grid.of(volume.image)
    image.SetSpacing(changes.get("spacing", grid.spacing))
    image.SetOrigin(changes.get("origin", grid.origin))
    image.SetDirection(changes.get("direction", grid.direction))
    return volume.with_image(image, volume.slice_thickness)


def along_z(volume: Volume, mm: float) -> tuple[float, float, float]:
    """The volume's origin moved ``mm`` along its slice direction (z)."""
    x, y, z = Grid.of(volume.image).origin
    return (x, y, z + mm)


def with_voxels(volume: Volume, array: np.ndarray) -> Volume:
    """New (z, y, x) voxels on the volume's grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.CopyInformation(volume.image)
    return volume.with_image(image, volume.slice_thickness)


def pairs_and_warnings(*args) -> tuple[list, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = layout_pairs(*args)
    return pairs, [str(w.message) for w in caught if issubclass(w.category, ThinctWarning)]


def cases_and_warnings(*args) -> tuple[list, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cases = layout_cases(*args)
    return cases, [str(w.message) for w in caught if issubclass(w.category, ThinctWarning)]


def assert_slab_means(pair, thin_file: Path) -> None:
    """Each thick slice is the mean of the 5 thin slices centred on ratio * z + offset (int16
    files: within a rounding step)."""
    hu = read_volume(thin_file).array.astype(np.float64)
    np.testing.assert_array_equal(pair.thin, hu.astype(np.float32))
    assert pair.thick.dtype == np.float32 and pair.thin.dtype == np.float32
    for z in range(pair.thick.shape[0]):
        centre = pair.ratio * z + pair.offset
        np.testing.assert_allclose(pair.thick[z], hu[centre - 2 : centre + 3].mean(0), atol=1.0)


# --- the two layouts -----------------------------------------------------------------------


def test_rplhr_pairs_line_up_with_their_slab_centres(tmp_path, thick, thin):
    root = write_rplhr(tmp_path, {"b": (thick, thin), "a": (thick, thin)})
    write_rplhr(tmp_path, {"held": (thick, thin)}, split="val")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThinctWarning)
        pairs = layout_pairs("rplhr", root, "train", 5)
    assert [p.name for p in pairs] == ["a", "b"]
    for pair in pairs:
        assert (pair.ratio, pair.offset) == (5, 2)
        assert pair.thick.shape == (15, 192, 192) and pair.thin.shape == (79, 192, 192)
        assert_slab_means(pair, root / "train" / "1mm" / f"{pair.name}.nii.gz")
    assert [p.name for p in layout_pairs("rplhr", root, "val", 5)] == ["held"]


@pytest.mark.parametrize("split_file", ["HD_dict.json", "split.json"])
def test_cthnet_pairs_follow_the_split_file(tmp_path, thick, thin, split_file):
    root = write_cthnet(tmp_path, {"N0001": (thick, thin), "N0002": (thick, thin)})
    # The published file lists file names (plus a data path); plain case ids work too.
    entries = {"train": ["N0002.nii.gz"], "val": ["N0001.nii.gz"], "test": [], "path_img": "x/"}
    if split_file == "split.json":
        entries = {"train": ["N0002"], "val": ["N0001"], "test": []}
    (root / split_file).write_text(json.dumps(entries))
    (train,) = layout_pairs("cthnet", root, "train", 5)
    assert (train.name, train.ratio, train.offset) == ("N0002", 5, 2)
    assert_slab_means(train, root / "HD_1mm" / "N0002.nii.gz")
    assert [p.name for p in layout_pairs("cthnet", root, "val", 5)] == ["N0001"]
    with pytest.raises(UsageError, match="holds no test cases"):
        layout_pairs("cthnet", root, "test", 5)


def test_a_thin_scan_that_starts_later_drops_the_thick_slices_before_it(tmp_path, thick, thin):
    """Thin slices 3 to 78 only: thick slice 0 (centre 2) has no thin slice; thick slice 1
    (centre 7) sits on slice 4 of the cut scan."""
    cut = thin.with_image(sitk.RegionOfInterest(thin.image, [192, 192, 76], [0, 0, 3]), 1.0)
    root = write_rplhr(tmp_path, {"late": (thick, cut)})
    (pair,) = layout_pairs("rplhr", root, "train", 5)
    assert (pair.offset, pair.thick.shape[0], pair.thin.shape[0]) == (4, 14, 76)
    np.testing.assert_allclose(
        pair.thick, read_volume(tmp_path / "train/5mm/late.nii.gz").array[1:]
    )
    assert_slab_means(pair, root / "train" / "1mm" / "late.nii.gz")


# --- pairs that do not line up ---------------------------------------------------------------


def test_a_thick_scan_whose_geometry_is_two_slices_off_is_skipped(tmp_path, thick, thin):
    """Its origin moved 10 mm: the geometry puts thick slice 0 on thin slice 12, the voxels say
    7 (as far as a one-slab search reaches) — so the voxels overrule the geometry."""
    shifted = regridded(thick, origin=along_z(thick, 10.0))
    root = write_rplhr(tmp_path, {"good": (thick, thin), "shifted": (shifted, thin)})
    pairs, caught = pairs_and_warnings("rplhr", root, "train", 5)
    assert [p.name for p in pairs] == ["good"]
    (message,) = caught
    assert message.startswith("shifted: thick and thin do not line up (best correlation")
    assert "at offset 7, geometry says 12" in message and message.endswith("; skipped")


def test_a_thick_scan_of_other_content_on_the_right_grid_is_skipped(tmp_path, thick, thin):
    mirrored = with_voxels(thick, thick.array[:, :, ::-1])  # left and right swapped
    root = write_rplhr(tmp_path, {"good": (thick, thin), "mirrored": (mirrored, thin)})
    pairs, caught = pairs_and_warnings("rplhr", root, "train", 5)
    assert [p.name for p in pairs] == ["good"]
    (message,) = caught
    assert message.startswith("mirrored: thick and thin do not line up (correlation 0.")
    assert f"below {MIN_CORRELATION}" in message


def test_slab_correlations_peak_at_the_true_offset(thick, thin):
    thick_array, thin_array = slice_stack(thick.image, 2), slice_stack(thin.image, 2)
    right = slab_correlations(thick_array, thin_array, 2, 5)
    assert sorted(right) == list(range(-5, 6))
    assert max(right, key=right.get) == 0 and right[0] > 0.99
    # One thin slice off is already told apart, and the curve falls away from the peak.
    assert right[0] - max(right[-1], right[1]) > CORRELATION_MARGIN
    assert all(right[k] > right[k + 1] for k in range(0, 5))
    assert all(right[k] < right[k + 1] for k in range(-5, 0))
    off = slab_correlations(thick_array, thin_array, 4, 5)
    assert max(off, key=off.get) == -2
    # Too short to check: no thick slice has its slabs inside 9 thin slices at every shift.
    assert slab_correlations(thick_array, thin_array[:9], 2, 5) == {}


def test_a_case_without_its_partner_file_is_skipped(tmp_path, thick, thin):
    root = write_rplhr(tmp_path, {"good": (thick, thin), "lonely": (None, thin)})
    pairs, caught = pairs_and_warnings("rplhr", root, "train", 5)
    assert [p.name for p in pairs] == ["good"]
    assert caught == [f"lonely: no lonely.nii.gz in {root / 'train' / '5mm'}; skipped"]
    # The CTHNet split file may name a case that has neither file.
    root = write_cthnet(tmp_path / "cthnet", {"good": (thick, thin)})
    (root / "split.json").write_text(json.dumps({"train": ["good", "gone"]}))
    pairs, caught = pairs_and_warnings("cthnet", root, "train", 5)
    assert [p.name for p in pairs] == ["good"]
    assert caught == [f"gone: no gone.nii.gz in {root / 'HD_5mm'} or {root / 'HD_1mm'}; skipped"]


def _in_plane_variants(thin: Volume) -> dict[str, tuple[Volume, str]]:
    grid = Grid.of(thin.image)
    x, y, z = grid.origin
    return {
        "size": (
            thin.with_image(sitk.RegionOfInterest(thin.image, [160, 192, 79], [0, 0, 0]), 1.0),
            "in-plane sizes differ (192 x 192 thick, 160 x 192 thin)",
        ),
        "spacing": (
            regridded(thin, spacing=(grid.spacing[0] * 1.01, grid.spacing[1], 1.0)),
            "in-plane spacings differ (0.6816 mm thick, 0.6885 mm thin along x)",
        ),
        "origin": (
            regridded(thin, origin=(x - 2 * grid.spacing[0], y, z)),
            "in-plane origins differ by 2.00 pixels",
        ),
        "direction": (
            regridded(thin, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1)),
            "the scans are oriented differently (direction matrices differ)",
        ),
    }


@pytest.mark.parametrize("variant", ["size", "spacing", "origin", "direction"])
def test_a_thin_scan_on_another_in_plane_grid_is_skipped(tmp_path, thick, thin, variant):
    other, reason = _in_plane_variants(thin)[variant]
    root = write_rplhr(tmp_path, {"good": (thick, thin), "other": (thick, other)})
    pairs, caught = pairs_and_warnings("rplhr", root, "train", 5)
    assert [p.name for p in pairs] == ["good"]
    assert caught == [f"other: {reason}; skipped"]
    cases, caught = cases_and_warnings("rplhr", root, "train")
    assert [c.name for c in cases] == ["good"]
    assert caught == [f"other: {reason}; skipped"]


def test_thick_slices_between_thin_slices_or_another_ratio_are_skipped(tmp_path, thick, thin):
    between = regridded(thick, origin=along_z(thick, 0.5))
    root = write_rplhr(tmp_path, {"between": (between, thin), "good": (thick, thin)})
    pairs, caught = pairs_and_warnings("rplhr", root, "train", 5)
    assert [p.name for p in pairs] == ["good"]
    assert caught == [
        "between: the thick slice centres fall between thin slices (thick slice 0 at thin "
        "slice 2.50); skipped"
    ]
    # A model of ratio 3 gets nothing from 5 mm over 1 mm: every case is skipped.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UsageError, match="none of the 2 train cases"):
            layout_pairs("rplhr", root, "train", 3)
    assert "good: thick slices are 5 mm apart, 5 thin slices of 1 mm, not the 3 the pairs need" in [
        str(w.message).removesuffix("; skipped") for w in caught
    ]


def test_the_shipped_5mm_example_pairs_as_a_case_but_not_as_whole_slices(tmp_path):
    """The shipped 5 mm crop averages 4 slices of 1.25 mm: its slab centres fall halfway
    between thin slices, fine for an evaluation case, not for a training pair."""
    thick, thin = read_volume(EXAMPLES / THICK), read_volume(EXAMPLES / THIN)
    root = write_rplhr(tmp_path, {"lidc": (thick, thin)})
    (case,) = layout_cases("rplhr", root, "train")
    expected = thin_grid(Grid.of(thick.image), spacing=1.25)
    np.testing.assert_allclose(case.grid.source_index, expected.source_index, atol=1e-9)
    assert case.grid.grid == Grid.of(case.reference.image) and case.grid.axis == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UsageError):
            layout_pairs("rplhr", root, "train", 4)
    assert "thick slice 0 at thin slice 1.50" in str(caught[0].message)


# --- evaluation cases ----------------------------------------------------------------------


def test_layout_cases_put_the_reference_on_its_own_grid(tmp_path, thick, thin):
    root = write_rplhr(tmp_path, {"c1": (thick, thin)}, split="test")
    (case,) = layout_cases("rplhr", root, "test")
    assert case.name == "c1" and case.grid.align == "reference" and case.grid.axis == 2
    # The 79 reference slices are cut to the 75 inside the 15 slabs: exactly the "edges" thin
    # grid of the thick scan, the same slices a simulated case would hold.
    expected = thin_grid(Grid.of(case.thick.image), spacing=1.0)
    reference = Grid.of(case.reference.image)
    assert case.grid.grid == reference and reference.size == (192, 192, 75)
    np.testing.assert_allclose(case.grid.source_index, expected.source_index, atol=1e-9)
    np.testing.assert_allclose(reference.origin, expected.grid.origin, atol=1e-6)
    np.testing.assert_array_equal(
        case.reference_array(),
        read_volume(root / "test" / "1mm" / "c1.nii.gz").array[:75].astype(np.float32),
    )
    # Any method's output lands on exactly the reference grid.
    output = interpolate(case.thick, case.grid, "linear")
    assert Grid.of(output.image) == reference
    assert case.slices_first(output).shape == case.reference_array().shape


def test_reference_grid_places_a_later_reference_and_refuses_another_grid(thick, thin):
    """A reference starting 10 mm later: its slice j lies at thick index (j + 10 - 2) / 5."""
    later = thin.with_image(sitk.RegionOfInterest(thin.image, [192, 192, 40], [0, 0, 10]), 1.0)
    grid = reference_grid(Grid.of(thick.image), Grid.of(later.image))
    np.testing.assert_allclose(grid.source_index, (np.arange(40) + 8) / 5, atol=1e-9)
    wider = thin.with_image(sitk.RegionOfInterest(thin.image, [160, 192, 79], [0, 0, 0]), 1.0)
    with pytest.raises(GeometryError, match="in-plane sizes differ"):
        reference_grid(Grid.of(thick.image), Grid.of(wider.image))


def test_layout_cases_skip_a_misplaced_thick_scan(tmp_path, thick, thin):
    shifted = regridded(thick, origin=along_z(thick, 10.0))
    root = write_rplhr(tmp_path, {"good": (thick, thin), "shifted": (shifted, thin)}, "val")
    cases, caught = cases_and_warnings("rplhr", root, "val")
    assert [c.name for c in cases] == ["good"]
    assert len(caught) == 1 and "at offset 7, geometry says 12" in caught[0]


# --- user mistakes ---------------------------------------------------------------------------


def test_unknown_layouts_splits_and_missing_folders_are_usage_errors(tmp_path, thick, thin):
    root = write_rplhr(tmp_path / "rplhr", {"a": (thick, thin)})
    mistakes = [
        (("rplhr", root, "training"), "unknown split 'training'; choose one of train, val, test"),
        (("nnunet", root, "train"), "unknown layout 'nnunet'; choose one of rplhr, cthnet"),
        (("rplhr", tmp_path / "nowhere", "train"), "no such folder"),
        (("rplhr", root, "val"), "no val/1mm folder (the rplhr layout has val/1mm and val/5mm)"),
        (("cthnet", root, "train"), "no HD_1mm folder"),
    ]
    for args, message in mistakes:
        with pytest.raises(UsageError) as error:
            layout_files(*args)
        assert message in str(error.value) and "\n" not in str(error.value)
    cthnet = write_cthnet(tmp_path / "cthnet", {"a": (thick, thin)})
    with pytest.raises(UsageError, match="no split file \\(HD_dict.json or split.json\\)"):
        layout_pairs("cthnet", cthnet, "train", 5)
    (cthnet / "split.json").write_text('{"train": ["a"]}')
    with pytest.raises(UsageError, match="has no 'val' list of cases"):
        layout_pairs("cthnet", cthnet, "val", 5)
    (cthnet / "split.json").write_text('{"train": "a"}')
    with pytest.raises(UsageError, match="'train' must be a list of case names"):
        layout_pairs("cthnet", cthnet, "train", 5)
    (cthnet / "split.json").write_text("{train: [a]")
    with pytest.raises(UsageError, match="is not valid JSON"):
        layout_pairs("cthnet", cthnet, "train", 5)


# --- through the training config -------------------------------------------------------------


def test_training_config_sources_in_a_layout(tmp_path, thick, thin):
    write_rplhr(tmp_path / "rplhr", {"a": (thick, thin), "b": (thick, thin)})
    write_rplhr(tmp_path / "rplhr", {"v": (thick, thin)}, split="val")
    config_file = tmp_path / "train.yaml"
    config_file.write_text(
        f"output: {tmp_path / 'run'}\n"
        "data:\n"
        f"  root: {tmp_path}\n"
        "  train:\n"
        "    - {path: rplhr, layout: rplhr, split: train}\n"
        "  validation:\n"
        "    - {path: rplhr, layout: rplhr, split: val}\n"
    )
    config = load_train_config(config_file)
    pairs = training_pairs(config.data, 5)
    assert [(p.name, p.ratio, p.offset, p.thick.shape[0]) for p in pairs] == [
        ("a", 5, 2, 15),
        ("b", 5, 2, 15),
    ]
    (case,) = validation_cases(config.data, 5)
    assert case.name == "v" and case.grid.grid.size == (192, 192, 75)
