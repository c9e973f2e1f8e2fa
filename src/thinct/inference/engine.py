"""The sliding-window engine: a thick volume in, a thin volume out, through any thin-slice model.

A model maps ``L`` thick slices of an in-plane tile to ``(L - 1) * r + 1`` thin slots, thick
slice z at slot ``r * z``. The engine covers a whole scan of any size with such windows:

- along the slices, windows of ``L`` thick slices overlap by ``z_overlap`` slices and their
  predictions are cross-faded, so no seam shows where one window hands over to the next; the
  scan is extended by reflection at both ends so that every thin slice, the first and last
  included, is predicted from the middle of a window (the published code leaves them empty);
- in-plane, tiles overlap by ``tile_overlap`` pixels and are cross-faded the same way; they
  start on the grid of the model's attention windows, so that a tile is cut into the same
  windows as the whole image and differs from one untiled pass only near its borders; sizes
  that are not a multiple of that grid are padded by reflection and cropped back;
- thin slices that fall between the model's slots (a target spacing other than thick / r)
  are interpolated linearly between the two nearest slots.

Memory stays bounded: windows are read from the input as they are needed and the blended
slots are written into the output as soon as no later window can touch them, so the output
volume is the only full-size buffer (until it is copied once into the SimpleITK image that is
returned).

Intensities are windowed to [-1024, 2048] HU and scaled to [0, 1] as in the published
training; values that window clips (metal above 2048 HU, padding below -1024 HU outside the
scan circle) are taken from linear interpolation of the input instead of being lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from thinct.errors import Argument, Cancelled, UsageError
from thinct.geometry import ThinGrid, slices_back, slices_first
from thinct.inference.blending import SLOT_EPS, Baseline, SlotBlender, SlotWriter
from thinct.inference.options import (
    AUTOCAST_PRECISIONS,
    DEVICES,
    PLANE_SCHEMES,
    PRECISIONS,
    SAMPLERS,
    CancelCallback,
    InferenceOptions,
    refuse_diffusion_options,
)
from thinct.inference.runtime import tune_allocator
from thinct.inference.tiling import (
    axis_tiles,
    in_plane_padding,
    plan_windows,
    slot_weights,
    windows_of_input,
)
from thinct.models.config import ModelConfig
from thinct.models.diffusion import check_strength
from thinct.resample.interpolation import ProgressCallback
from thinct.volume import Volume

_AUTOCAST_DTYPES = dict(zip(AUTOCAST_PRECISIONS, (torch.bfloat16, torch.float16), strict=True))


def precision_context(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """``torch.autocast`` for the autocast precisions (bf16, fp16), no change for any other
    (fp32, or training's ``off``): one mapping for inference and training."""
    if precision in _AUTOCAST_DTYPES:
        return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
    return nullcontext()


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA, then Apple's MPS, then the CPU; an unavailable device is refused."""
    if name not in DEVICES:
        raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UsageError(
            f"device {name!r} is not available on this machine; use ", Argument("device", "cpu")
        )
    return torch.device(name)


def check_options(options: InferenceOptions, slices: int | None = None) -> None:
    """Refuse options that can never work, before any scan is read (`check_model_options`
    checks them against a model)."""
    if options.precision not in PRECISIONS:
        raise UsageError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {options.precision!r}"
        )
    resolve_device(options.device)
    if options.batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {options.batch_size}")
    if options.tile < 8:
        raise UsageError(f"tile must be at least 8 pixels, got {options.tile}")
    if not 0 <= options.tile_overlap <= options.tile // 2:
        raise UsageError(
            f"tile overlap must be from 0 to half the tile ({options.tile // 2}), "
            f"got {options.tile_overlap}"
        )
    if options.z_overlap < 1 or (slices is not None and options.z_overlap > slices - 1):
        limit = f" to {slices - 1}" if slices is not None else " or more"
        raise UsageError(
            f"z overlap must be from 1{limit} thick slices (consecutive windows must share a "
            f"slice), got {options.z_overlap}"
        )


def check_diffusion_options(options: InferenceOptions) -> None:
    """Refuse diffusion options (`DIFFUSION_OPTIONS`) that can never work."""
    if options.steps is not None and options.steps < 1:
        raise UsageError(Argument("steps"), f" must be at least 1, got {options.steps}")
    if options.seed is not None and options.seed < 0:
        raise UsageError(Argument("seed"), f" must be 0 or more, got {options.seed}")
    if options.sampler is not None and options.sampler not in SAMPLERS:
        raise UsageError(
            Argument("sampler"), f" must be one of {', '.join(SAMPLERS)}, got {options.sampler!r}"
        )
    if options.planes is not None and options.planes not in PLANE_SCHEMES:
        raise UsageError(
            Argument("planes"),
            f" must be one of {', '.join(PLANE_SCHEMES)}, got {options.planes!r}",
        )
    if options.refine is not None:
        check_strength(options.refine)


def check_model_options(options: InferenceOptions, config: ModelConfig) -> None:
    """Refuse options that do not fit the model: its window of thick slices, and diffusion
    options for a model that is not a diffusion model."""
    check_options(options, config.slices)
    if not config.diffusion:
        refuse_diffusion_options(options, f"the {config.architecture} model")
    check_diffusion_options(options)


def load_checked_model(spec: str | None, options: InferenceOptions) -> nn.Module:
    """The model behind a spec, with the engine options checked before it loads (an
    unavailable device fails at once) and against it after (`check_model_options`)."""
    from thinct.models import load_model

    check_options(options)
    check_diffusion_options(options)
    model = load_model(spec)
    check_model_options(options, model.config)
    return model


def upsample_with_model(
    volume: Volume,
    thin: ThinGrid,
    model: nn.Module,
    options: InferenceOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    notice: Callable[[str], None] | None = None,
) -> Volume:
    """The model's thin-slice version of ``volume`` on the grid ``thin`` (float32 HU).

    ``progress`` receives the fraction done; ``cancel`` is polled between forward passes and
    stops the run with `Cancelled` when it returns True. The model is put in eval mode and
    moved to the chosen device.

    A diffusion model (``config.diffusion``) runs as 2D planes instead
    (`thinct.inference.planes`), onto the output grid ``thin.output`` (the pixels refined too,
    when asked); ``notice`` shows its estimate of a long CPU run at once.
    """
    options = options or InferenceOptions()
    config = model.config
    check_model_options(options, config)
    if config.diffusion:
        from thinct.inference.planes import upsample_with_diffusion

        return upsample_with_diffusion(volume, thin, model, options, progress, cancel, notice)
    device = resolve_device(options.device)
    if device.type == "cpu":
        tune_allocator()
    model.eval().to(device)

    view = sitk.GetArrayViewFromImage(volume.image)
    thick = slices_first(view, thin.axis)  # (slices, in-plane, in-plane), a view
    count, height, width = thick.shape
    grid = config.window_grid
    padded = (height + in_plane_padding(height, grid), width + in_plane_padding(width, grid))
    tile = max(grid, options.tile - options.tile % grid)
    tile_h, tile_w = min(tile, padded[0]), min(tile, padded[1])
    tiles = [
        (y, x, np.outer(weight_y, weight_x).astype(np.float32))
        for y, weight_y in axis_tiles(padded[0], tile, options.tile_overlap, grid)
        for x, weight_x in axis_tiles(padded[1], tile, options.tile_overlap, grid)
    ]
    coverage = np.zeros(padded, dtype=np.float32)
    for y, x, weight in tiles:
        coverage[y : y + tile_h, x : x + tile_w] += weight

    positions = np.asarray(thin.source_index) * config.ratio
    low, high = math.floor(positions[0] + SLOT_EPS), math.ceil(positions[-1] - SLOT_EPS)
    windows = plan_windows(low, high, config.slices, config.ratio, options.z_overlap)
    crossfade = slot_weights(config.out_slots, (options.z_overlap - 1) * config.ratio + 1)

    output_shape = (len(positions), height, width)
    try:
        output = np.empty(output_shape, dtype=np.float32)
    except MemoryError:
        gib = math.prod(output_shape) * 4 / 2**30
        size = " x ".join(map(str, output_shape))
        raise MemoryError(f"the {size} output needs {gib:.1f} GiB") from None
    baseline = Baseline(thick, np.asarray(thin.source_index))
    finish = baseline.restore if options.restore_clipped else (lambda _j, hu: hu)
    blender = SlotBlender(SlotWriter(positions, output, finish))

    autocast = precision_context(device, options.precision)
    total = len(windows) * len(tiles)
    done = 0
    batch: list[np.ndarray] = []
    placements: list[tuple[int, int]] = []  # (tile, window) of each batch entry
    planes: dict[int, np.ndarray] = {}  # window -> its blended in-plane tiles
    remaining: dict[int, int] = {}  # window -> tiles not yet predicted
    next_window = 0  # windows are finished in order: the blender relies on it

    def finish_windows() -> None:
        nonlocal next_window
        while remaining.get(next_window) == 0:
            plane = planes.pop(next_window)[:, :height, :width]
            plane /= coverage[:height, :width]
            blender.add(windows[next_window] * config.ratio, plane, crossfade)
            following = next_window + 1
            blender.release(windows[following] * config.ratio if following < len(windows) else None)
            del remaining[next_window]
            next_window = following

    def run_batch() -> None:
        nonlocal done
        if cancel is not None and cancel():
            raise Cancelled("cancelled")
        inputs = torch.from_numpy(np.stack(batch)[:, None]).to(device)
        with torch.inference_mode(), autocast:
            predicted = model(inputs)[:, 0].float().cpu().numpy()
        for (t, w), values in zip(placements, predicted, strict=True):
            y, x, weight = tiles[t]
            plane = planes.setdefault(w, np.zeros((config.out_slots, *padded), np.float32))
            plane[:, y : y + tile_h, x : x + tile_w] += values * weight
            remaining[w] -= 1
        done += len(batch)
        batch.clear()
        placements.clear()
        finish_windows()
        if progress is not None:
            progress(done / total)

    for w, cube in enumerate(windows_of_input(thick, windows, config.slices, padded)):
        remaining[w] = len(tiles)
        for t, (y, x, _) in enumerate(tiles):
            batch.append(cube[:, y : y + tile_h, x : x + tile_w])
            placements.append((t, w))
            if len(batch) == options.batch_size:
                run_batch()
    if batch:
        run_batch()

    image = sitk.GetImageFromArray(slices_back(output, thin.axis))
    del output
    thin.grid.apply_to_image(image)
    return volume.with_image(image, slice_thickness=thin.spacing)
