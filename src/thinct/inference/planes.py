"""Diffusion models over a whole scan, as 2D planes of one 3D volume sampled together.

A diffusion model such as DSDM (`thinct.models.dsdm`, docs/dsdm.md) denoises 2D planes. The
engine makes a volume of them:

1. The condition: the thick scan interpolated onto the target grid by the model's
   ``condition_method``, the thin slices, and the refined pixels when those are asked for
   (the model makes the output grid itself; no interpolation refines its result).
2. The planes: for thin slices, the planes that contain the slice axis, in both
   orientations (coronal and sagittal for an axial scan); for refined pixels, the slices
   themselves (axial); both for both. The structure stream's map of each plane of the
   condition is made once, in the first pass over its orientation, and kept.
3. Sampling (`thinct.models.diffusion.sample`) on the whole volume at once: the state is a
   volume; at each step the denoiser predicts the noise of every plane of one orientation
   (``planes="alternate"``: the orientations take turns, so the planes of one orientation
   are tied together through the planes of the other at the next step) or of every
   orientation, their predictions averaged (``"average"``: smoother, and a step costs one
   pass per orientation). The sampler then updates the volume and draws its noise for the
   volume as a whole, from one generator seeded by ``seed``.

Refinement starts from the default regression model's output (its through-plane slices,
the pixels refined by B-spline) noised to the ``refine`` strength instead of from noise.

Memory: besides the output, about seven float32 volumes of the target's size on the device
(the condition, one structure map per orientation, the state, the noise and the sampler's
temporaries) and one pass's activations. A pass holds ``batch_size`` planes of 512 x 512
pixels, or as many more smaller planes as make the same pixels (`PASS_PIXELS`): a small
plane alone costs far more than its pixels; there is no in-plane tiling.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import SimpleITK as sitk
import torch
from torch import Tensor, nn

from thinct.errors import Argument, Cancelled, ThinctWarning
from thinct.geometry import ThinGrid, slices_back, slices_first
from thinct.inference.engine import precision_context, resolve_device, upsample_with_model
from thinct.inference.options import DIFFUSION_OPTIONS, CancelCallback, InferenceOptions
from thinct.models.diffusion import NoiseSchedule, hu_of_signal, initial_state, sample, signal_of_hu
from thinct.models.dsdm import structure_input
from thinct.resample.interpolation import ProgressCallback, interpolate, refine_in_plane
from thinct.volume import HU_MAX, HU_MIN, Volume

# A run on the CPU expected to take longer than this is announced with its estimated time.
LONG_RUN_SECONDS = 180.0
# The seed when none is given: runs repeat unless asked not to.
DEFAULT_SEED = 0
# The pixels of one pass per unit of batch_size: a 512 x 512 plane.
PASS_PIXELS = 512 * 512
# How the axes of a (slices, rows, columns) stack are named for an axial scan.
PLANE_NAMES = {0: "axial", 1: "coronal", 2: "sagittal"}


def plane_axes(thin: ThinGrid) -> tuple[int, ...]:
    """The axes of the target's (slices, rows, columns) stack along which its planes are
    taken: 1 and 2 (planes through the slice axis) when slices are made, 0 (the slices)
    when pixels are refined."""
    through = () if thin.keeps_slices else (1, 2)
    return through + ((0,) if thin.refined is not None else ())


def _stack(volume: Volume, axis: int) -> np.ndarray:
    """A float32 copy of the voxels as a stack of slices along ITK ``axis``."""
    return np.array(slices_first(sitk.GetArrayViewFromImage(volume.image), axis), np.float32)


def condition_hu(volume: Volume, thin: ThinGrid, method: str) -> np.ndarray:
    """The thick scan interpolated onto the output grid (thin slices, refined pixels), as a
    float32 (slices, rows, columns) stack of HU."""
    target = replace(thin, grid=thin.output, refined=None)
    return _stack(interpolate(volume, target, method=method), thin.axis)


def regression_start(
    volume: Volume,
    thin: ThinGrid,
    options: InferenceOptions,
    progress: ProgressCallback | None,
    cancel: CancelCallback | None,
) -> np.ndarray:
    """Refinement's first guess on the output grid (HU stack): the default model's slices,
    their pixels refined by B-spline when asked (as `thinct.upsample_volume` makes them)."""
    from thinct.models import load_model

    made = volume
    if not thin.keeps_slices:
        plain = replace(options, **dict.fromkeys(DIFFUSION_OPTIONS))
        made = upsample_with_model(volume, thin, load_model(None), plain, progress, cancel)
    if thin.refined is not None:
        made = refine_in_plane(made, thin.refined, thin.axis, "bspline", None, cancel)
    return _stack(made, thin.axis)


class PlaneRunner:
    """Runs a network over the planes of volumes on the device, a pass of planes at a time,
    with the engine's progress and cancellation; announces a long CPU run from the times of
    its early passes (`timed`)."""

    def __init__(
        self,
        device: torch.device,
        options: InferenceOptions,
        work: tuple[int, int, int],
        progress: ProgressCallback | None,
        cancel: CancelCallback | None,
        describe: Callable[[float], str],
        notice: Callable[[str], None] | None,
    ) -> None:
        self.device = device
        self.batch_pixels = options.batch_size * PASS_PIXELS
        self.autocast = precision_context(device, options.precision)
        # Pixels of the refinement's start, of the structure maps and of the denoiser calls.
        self.start_pixels, self.structure_pixels, self.denoiser_pixels = work
        self.total = sum(work)
        self.done = 0
        self.progress = progress
        self.cancel = cancel
        self.describe = describe  # estimated seconds -> the warning's text
        self.notice = notice  # shows it at once; None: a ThinctWarning
        self.timed_passes = 0

    def advance(self, pixels: int) -> None:
        self.done += pixels
        if self.progress is not None:
            self.progress(min(1.0, self.done / self.total))

    def run(
        self,
        network: Callable[..., Tensor],
        volumes: list[Tensor],
        axis: int,
        out: Tensor,
        weight: float,
        units: int = 1,
    ) -> None:
        """``out += weight * network(*planes)`` for the planes along ``axis``; each pass
        counts its pixels ``units`` times towards the progress."""
        planes = [volume.movedim(axis, 0) for volume in volumes]
        target = out.movedim(axis, 0)
        per_pass = max(1, self.batch_pixels // (target.shape[1] * target.shape[2]))
        for first in range(0, target.shape[0], per_pass):
            if self.cancel is not None and self.cancel():
                raise Cancelled("cancelled")
            batch = [plane[first : first + per_pass].unsqueeze(1) for plane in planes]
            with torch.inference_mode(), self.autocast:
                result = network(*batch)[:, 0].float()
            target[first : first + per_pass] += weight * result
            self.advance(result.numel() * units)

    def timed(self, structure_seconds: float, denoiser_seconds: float, pixels: int) -> None:
        """The times of a pass that made ``pixels`` of structure maps and noise. The second
        such pass decides whether to announce the run: the first one pays the warm-up (the
        CPU libraries choose their kernels for each new shape), several times a pass's cost."""
        self.timed_passes += 1
        if self.timed_passes != 2:
            return
        estimate = (
            structure_seconds * self.structure_pixels + denoiser_seconds * self.denoiser_pixels
        ) / pixels
        if self.device.type != "cpu" or estimate <= LONG_RUN_SECONDS:
            return
        if self.notice is None:
            warnings.warn(self.describe(estimate), ThinctWarning, stacklevel=2)
        else:
            self.notice(self.describe(estimate))


def upsample_with_diffusion(
    volume: Volume,
    thin: ThinGrid,
    model: nn.Module,
    options: InferenceOptions,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    notice: Callable[[str], None] | None = None,
) -> Volume:
    """The diffusion model's version of ``volume`` on the output grid of ``thin`` (its thin
    slices and, when refined, its pixels; float32 HU). Called by
    `thinct.inference.engine.upsample_with_model`, which checked the options.

    A CPU run expected to take over `LONG_RUN_SECONDS` is announced after its second pass,
    from that pass's times: through ``notice`` (the command line prints it at once), else as
    a `ThinctWarning`."""
    config = model.config
    device = resolve_device(options.device)
    model.eval().to(device)
    axes = plane_axes(thin)
    scheme = options.planes or "alternate"
    seed = DEFAULT_SEED if options.seed is None else options.seed
    levels = NoiseSchedule.of(config).levels(
        options.steps or config.sampling_steps, options.refine or 1.0
    )
    steps = len(levels) - 1
    passes = [axes if scheme == "average" else (axes[k % len(axes)],) for k in range(steps)]

    hu = condition_hu(volume, thin, config.condition_method)
    condition = signal_of_hu(torch.from_numpy(hu)).to(device)
    baseline = hu if options.restore_clipped else None  # HU outside the window come from it
    del hu
    voxels, shape = condition.numel(), " x ".join(map(str, condition.shape))
    # The structure maps of an orientation are made with its first step (none without steps).
    used = {axis for each in passes for axis in each}
    work = (
        voxels if options.refine is not None else 0,
        voxels * len(used),
        voxels * sum(len(each) for each in passes),
    )

    def describe(seconds: float) -> str:
        names = " and ".join(PLANE_NAMES[axis] for axis in axes)
        return (
            f"{config.architecture} on the CPU: about {seconds / 60:.0f} minutes for {steps} "
            f"steps over {names} planes of {shape} voxels; fewer {Argument('steps')}, "
            f"{Argument('refine')}, {Argument('slab')} or a GPU make it faster"
        )

    runner = PlaneRunner(device, options, work, progress, cancel, describe, notice)
    generator = torch.Generator(device=device).manual_seed(seed)
    start = None
    if options.refine is not None:
        share = work[0] / runner.total
        report = None if progress is None else (lambda done: progress(done * share))
        made = regression_start(volume, thin, options, report, cancel)
        start = signal_of_hu(torch.from_numpy(made)).to(device)
        del made
        runner.done = work[0]
    state = initial_state(condition.shape, levels[0], generator, start, device)
    del start
    sampler = options.sampler or config.sampler
    _denoise(model, runner, state, condition, passes, levels, sampler, generator)
    del condition
    result = hu_of_signal(state).cpu().numpy()
    del state
    if baseline is not None:
        np.copyto(result, baseline, where=(baseline < HU_MIN) | (baseline > HU_MAX))
    image = sitk.GetImageFromArray(slices_back(result, thin.axis))
    thin.output.apply_to_image(image)
    return volume.with_image(image, slice_thickness=thin.spacing)


def _denoise(
    model: nn.Module,
    runner: PlaneRunner,
    state: Tensor,
    condition: Tensor,
    passes: list[tuple[int, ...]],
    levels: list[float],
    sampler: str,
    generator: torch.Generator,
) -> None:
    """Sample ``state`` in place: at step k the noise of the planes along ``passes[k]``,
    averaged over them, goes to the sampler.

    The structure stream's map of each plane of the condition is made in the first pass
    over that plane's orientation and kept: it knows no noise. Making it there rather than
    before sampling lets the first passes time both parts of the work, seconds into a run.
    """
    noise = torch.zeros_like(state)
    structures: dict[int, Tensor] = {}

    def predict(state: Tensor, gamma: float, step: int) -> Tensor:
        noise.zero_()
        level = torch.full((1,), math.sqrt(gamma), device=state.device)
        for axis in passes[step]:
            fresh = axis not in structures
            if fresh:
                structures[axis] = torch.zeros_like(state)
            network = _plane_network(model, runner, level, fresh)
            inputs = [state, condition, structures[axis]]
            units = 2 if fresh else 1
            runner.run(network, inputs, axis, noise, 1 / len(passes[step]), units)
        return noise

    sample(predict, state, levels, sampler, generator)


def _plane_network(
    model: nn.Module, runner: PlaneRunner, level: Tensor, fresh: bool
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The noise of a pass's planes at ``level``; a ``fresh`` pass first fills its planes of
    the structure maps (in place) and reports both parts' times to the runner."""

    def network(noisy: Tensor, condition: Tensor, structure: Tensor) -> Tensor:
        began = time.perf_counter()
        if fresh:
            structure.copy_(model.structure_map(condition, structure_input(condition)))
        made = time.perf_counter()
        predicted = model.predict_noise(noisy, condition, structure, level)
        if fresh:
            runner.timed(made - began, time.perf_counter() - made, noisy.numel())
        return predicted

    return network
