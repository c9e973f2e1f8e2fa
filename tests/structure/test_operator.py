"""The structure operator on synthetic shapes whose answer is known (bright tubes and blobs
respond; flat and noisy regions, step edges, plates and dark structures do not), on
degenerate inputs (finite maps), and through both its numpy and torch doors (the same map,
batched, differentiable)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paths import EXAMPLES
from scipy.special import erf

from thinct.errors import InputError, UsageError
from thinct.io import read_volume
from thinct.structure import enhance, lung_window
from thinct.structure.hessian import eigenvalues, gradient, hessian, reflect_indices

BACKGROUND, CONTRAST = 0.33, 0.6  # lung and a vessel on the lung window's scale


def _profile(distance: np.ndarray, radius: float, blur: float = 0.6) -> np.ndarray:
    """A disc's (or band's) cross-section, blurred like a scanner's point spread."""
    spread = np.sqrt(2) * blur
    return 0.5 * (erf((radius - distance) / spread) + erf((radius + distance) / spread))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.mgrid[0:size, 0:size].astype(float)
    return rows - size / 2 + 0.3, columns - size / 2 + 0.3  # off the pixel grid


def tube(radius: float, angle: float, size: int = 64, contrast: float = CONTRAST) -> np.ndarray:
    rows, columns = _grid(size)
    distance = np.abs(np.cos(angle) * columns - np.sin(angle) * rows)
    return BACKGROUND + contrast * _profile(distance, radius)


def blob(radius: float, size: int = 64) -> np.ndarray:
    rows, columns = _grid(size)
    return BACKGROUND + CONTRAST * _profile(np.hypot(rows, columns), radius)


def step_edge(angle: float, size: int = 64) -> np.ndarray:
    rows, columns = _grid(size)
    across = np.cos(angle) * columns + np.sin(angle) * rows
    return BACKGROUND + CONTRAST * 0.5 * (1 + erf(across / (np.sqrt(2) * 0.6)))


def centre(image: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> float:
    """The largest response within a pixel of the shapes' centre (off the pixel grid), or
    of a point ``offset`` (rows, columns) from it."""
    row, column = (round(image.shape[0] / 2 - 0.3 + d) for d in offset)
    return float(image[row - 1 : row + 2, column - 1 : column + 2].max())


# --- the shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.5, 4.0])
@pytest.mark.parametrize("angle", [0.0, 0.45, np.pi / 2, 2.2])
def test_bright_tubes_respond_about_one_on_their_centre_line(radius, angle):
    image = tube(radius, angle)
    response = enhance(image)
    assert 0.9 <= centre(response) <= 1.1
    # Along the whole line, not just at one point.
    for t in (-15, -8, 8, 15):
        assert 0.9 <= centre(response, (t * np.cos(angle), t * np.sin(angle))) <= 1.1
    # Across it, the response falls: three radii out there is no tube.
    across = 3 * radius + 3
    assert centre(response, (-across * np.sin(angle), across * np.cos(angle))) < 0.1


def test_faint_tubes_respond_less_than_clear_ones():
    faint = centre(enhance(tube(1.5, 0.3, contrast=0.1)))
    assert 0.2 < faint < centre(enhance(tube(1.5, 0.3))) - 0.3


@pytest.mark.parametrize("radius", [1.5, 2.5, 4.0])
def test_blobs_respond_strongly(radius):
    # 8 (1 + k1) / 27 of a tube's response with the defaults: 0.89.
    assert 0.75 <= centre(enhance(blob(radius))) <= 1.0


@pytest.mark.parametrize("angle", [0.0, 0.3, 1.2])
def test_step_edges_stay_low(angle):
    assert enhance(step_edge(angle)).max() < 0.05


def test_a_wide_bright_plate_stays_low_inside_and_at_its_edges():
    plate = tube(radius=20, angle=0.2, size=96)
    assert enhance(plate).max() < 0.05


def test_flat_regions_give_zero_and_noise_stays_low():
    assert np.array_equal(enhance(np.full((40, 50), 0.4)), np.zeros((40, 50), np.float32))
    rng = np.random.default_rng(0)
    # 30 HU of noise on the lung window's scale (1500 HU wide): 0.02.
    noisy = enhance(BACKGROUND + 0.02 * rng.standard_normal((128, 128)))
    assert noisy.mean() < 0.01
    assert np.percentile(noisy, 99) < 0.05


@pytest.mark.parametrize("radius", [1.0, 2.0, 3.0])
def test_dark_tubes_and_blobs_do_not_respond(radius):
    # An airway's lumen, an emphysematous hole: dark on a bright background.
    assert enhance(1 - tube(radius, 0.4)).max() < 0.1
    assert enhance(1 - blob(radius)).max() < 0.1


def test_the_map_turns_with_the_image():
    image = tube(2.0, 0.3) + blob(3.0) - BACKGROUND
    response = enhance(image)
    np.testing.assert_allclose(enhance(image.T), response.T, atol=1e-5)
    np.testing.assert_allclose(enhance(image[::-1]), response[::-1], atol=1e-5)


# --- the parts -----------------------------------------------------------------------------


def test_derivatives_are_exact_on_quadratics():
    rows, columns = (torch.from_numpy(a) for a in _grid(40))
    image = 0.5 * rows**2 + 3 * rows * columns - columns**2 + 2 * columns
    sigma = 1.5
    rr, rc, cc = (d[0, 20, 20] / sigma**2 for d in hessian(image[None], sigma))
    r, c = (d[0, 20, 20] / sigma for d in gradient(image[None], sigma))
    assert [float(v) for v in (rr, rc, cc)] == pytest.approx([1.0, 3.0, -2.0], abs=1e-9)
    # At pixel (20, 20), where rows = columns = 0.3: d/dr = r + 3c, d/dc = 3r - 2c + 2.
    assert [float(r), float(c)] == pytest.approx([1.2, 2.3], abs=1e-9)


def test_eigenvalues_are_ordered_by_magnitude():
    l1, l2 = eigenvalues(
        torch.tensor([1.0, -3.0, 0.0]), torch.zeros(3), torch.tensor([-2.0, 1.0, 0.0])
    )
    assert l1.tolist() == pytest.approx([1.0, 1.0, 0.0], abs=1e-5)
    assert l2.tolist() == pytest.approx([-2.0, -3.0, 0.0], abs=1e-5)


@pytest.mark.parametrize("size, radius", [(1, 3), (2, 5), (5, 2), (4, 11)])
def test_mirrored_borders_reach_any_radius(size, radius):
    index = reflect_indices(size, radius)
    assert len(index) == size + 2 * radius
    assert index.min() >= 0 and index.max() < size
    if size > 1:
        assert index[radius - 1] == 1 and index[radius + size] == size - 2


# --- degenerate input ----------------------------------------------------------------------

DEGENERATE = {
    "zeros": np.zeros((32, 32)),
    "constant": np.full((20, 30), 0.7),
    "huge": np.full((16, 16), 1e30) * (np.indices((16, 16)).sum(0) % 2),
    "huge negative": -1e38 * np.eye(12),
    "tiny values": 1e-30 * np.random.default_rng(1).random((16, 16)),
    "one pixel": np.ones((1, 1)),
    "one row": np.linspace(0, 1, 9)[None],
    "two by two": np.array([[0.0, 1.0], [1.0, 0.0]]),
    "integers": np.arange(30, dtype=np.int16).reshape(5, 6),
    "booleans": np.eye(7, dtype=bool),
    "checkerboard": (np.indices((9, 9)).sum(0) % 2).astype(float),
    "empty": np.zeros((0, 4)),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_images_give_finite_maps(name):
    image = DEGENERATE[name]
    response = enhance(image)
    assert response.shape == image.shape and response.dtype == np.float32
    assert np.isfinite(response).all()
    assert (response >= 0).all()


def test_bad_input_is_one_clear_error():
    with pytest.raises(UsageError, match="image must be a 2D array"):
        enhance(np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="NaN or infinite"):
        enhance(np.array([[0.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(InputError, match="must hold numbers"):
        enhance(np.array([["a", "b"]]))
    with pytest.raises(UsageError, match="scales must be positive"):
        enhance(np.zeros((8, 8)), scales=(1.0, -2.0))
    with pytest.raises(UsageError, match="contrast must be positive"):
        enhance(np.zeros((8, 8)), contrast=0)
    with pytest.raises(UsageError, match=r"image must be \(\.\.\., H, W\)"):
        enhance(torch.zeros(5))


def test_lung_window_maps_hu_to_the_operators_scale():
    hu = np.array([-2000, -1350, -600, 150, 3000], dtype=np.int16)
    assert lung_window(hu).tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    assert lung_window(hu).dtype == np.float32
    tensor = torch.tensor([-600.0, -1000.0], requires_grad=True)
    lung_window(tensor).sum().backward()
    assert tensor.grad.tolist() == pytest.approx([1 / 1500, 1 / 1500])


# --- numpy, torch, batches, gradients ------------------------------------------------------


@pytest.fixture(scope="module")
def real_slices() -> np.ndarray:
    """Four axial slices (192 x 192) of the shipped thin crop on the lung window's scale."""
    return lung_window(read_volume(EXAMPLES / "lidc0002_crop_1.25mm.nii.gz").array[::16])


def test_real_vessels_respond_and_the_map_stays_in_range(real_slices):
    response = enhance(real_slices[1])
    assert np.isfinite(response).all() and 0 <= response.min() and response.max() < 1.3
    # Vessels are a small part of a lung slice, and they respond strongly.
    assert 0.005 < (response > 0.5).mean() < 0.1


def test_numpy_and_torch_paths_agree(real_slices):
    image = real_slices[0]
    from_numpy = enhance(image)
    from_torch = enhance(torch.from_numpy(image))
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, atol=1e-5)
    in_double = enhance(torch.from_numpy(image).double())
    assert in_double.dtype == torch.float64
    np.testing.assert_allclose(in_double.numpy(), from_numpy, atol=2e-3)


def test_batches_keep_their_shape_and_each_plane_its_map(real_slices):
    batch = torch.from_numpy(real_slices).reshape(2, 2, *real_slices.shape[1:])
    response = enhance(batch)
    assert response.shape == batch.shape
    np.testing.assert_allclose(response[1, 0].numpy(), enhance(real_slices[2]), atol=1e-5)


def test_gradients_flow_and_stay_finite(real_slices):
    images = [
        torch.from_numpy(real_slices[0][60:92, 60:92].copy()),
        torch.from_numpy(tube(1.5, 0.3, size=24)).float(),
        torch.zeros(16, 16),
        torch.full((8, 8), 0.5),
        torch.ones(1, 1),
    ]
    for image in images:
        image.requires_grad_(True)
        enhance(image).sum().backward()
        assert torch.isfinite(image.grad).all()
    assert images[0].grad.abs().max() > 0  # a real patch: the map depends on the image
    assert images[1].grad.abs().max() > 0


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(tube(1.5, 0.3, size=14) + 0.02 * rng.standard_normal((14, 14)))
    image.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: enhance(x).sum(), (image,), eps=1e-6, atol=1e-5)
