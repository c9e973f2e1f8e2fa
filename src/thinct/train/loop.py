"""`thinct train`: fit a thin-slice model to random crops, validate whole scans, keep the best.

A run lives in one folder (``output`` in the config):

- ``checkpoint.pt``: model, optimiser, schedule and step, rewritten atomically every
  ``checkpoint_every`` steps, so an interrupted run continues with ``--resume``;
- ``best/``: a thinct model folder (config, safetensors, card with the validation metrics)
  of the step that validated best: what `thinct upsample --model` takes;
- ``log.csv``: loss and learning rate every ``log_every`` steps, metrics at validations;
- ``config.yaml``: the recipe that made it.

Validation runs the held-out scans through the same sliding-window engine as
`thinct upsample`, so the number that picks the best weights is the number users get.

Several processes (``torchrun --nproc_per_node N``) train one model with
DistributedDataParallel: each draws its own crops and the gradients are averaged; rank 0
validates, logs and writes. The backend is NCCL on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from thinct.data.cases import Case
from thinct.data.crops import CropOptions, CropSampler
from thinct.errors import Argument, UsageError
from thinct.evaluate import metrics
from thinct.inference.engine import precision_context, resolve_device, upsample_with_model
from thinct.inference.options import InferenceOptions
from thinct.io.atomic import replacing, write_text
from thinct.models import create_model, registry_entry, save_model
from thinct.train.config import TrainConfig, config_to_dict
from thinct.train.diffusion import DiffusionObjective, WeightAverage
from thinct.train.losses import training_loss
from thinct.train.sources import training_pairs, validation_cases
from thinct.validation import build

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FOLDER = "best"
LOG_FILE = "log.csv"
LOG_FIELDS = ("step", "loss", "lr", "seconds", "val_psnr", "val_ssim")

InfoCallback = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    steps: int
    best_step: int
    best_psnr: float
    best_ssim: float
    seconds: float
    folder: Path


@dataclass
class _Ranks:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_distributed(device_name: str) -> _Ranks:
    """Join the process group ``torchrun`` describes in the environment, if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Ranks()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_name in ("auto", "cuda") and torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(local)
    return _Ranks(rank=dist.get_rank(), world=dist.get_world_size(), local=local)


def _device(config: TrainConfig, ranks: _Ranks) -> torch.device:
    device = resolve_device(config.device)
    if device.type == "cuda":
        return torch.device("cuda", ranks.local)
    return device


def _schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    optim = config.optim
    if optim.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.1, patience=optim.plateau_patience, min_lr=optim.min_lr
        )
    floor = optim.min_lr / optim.lr

    def factor(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        progress = (step - optim.warmup_steps) / max(1, optim.steps - optim.warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def validate(model: nn.Module, cases: list[Case], options: InferenceOptions) -> dict[str, float]:
    """Mean PSNR and SSIM of whole held-out scans through the engine `thinct upsample` runs."""
    scores = {"psnr": [], "ssim": []}
    for case in cases:
        output = upsample_with_model(case.thick, case.grid, model, options)
        predicted, reference = case.slices_first(output), case.reference_array()
        scores["psnr"].append(metrics.psnr(predicted, reference))
        scores["ssim"].append(metrics.ssim(predicted, reference))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def _save_checkpoint(state: dict[str, Any], path: Path) -> None:
    with replacing(path) as staged:
        torch.save(state, staged)


def _check_run_folder(folder: Path, resume: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder; choose another output")
    checkpoint = folder / CHECKPOINT_FILE
    if resume and not checkpoint.is_file():
        raise UsageError(f"{folder} has no {CHECKPOINT_FILE} to resume from")
    if not resume and checkpoint.exists():
        raise UsageError(
            f"{folder} already holds a run; give ",
            Argument("resume", True),
            " to continue it or choose another output",
        )


def _differences(before: Any, now: Any, where: str = "") -> Iterator[str]:
    """The places (``optim.lr``) where two plain config values differ."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in [*before, *(k for k in now if k not in before)]:
            place = f"{where}.{key}" if where else str(key)
            yield from _differences(before.get(key), now.get(key), place)
    elif before != now:
        yield where


def _check_resumable(folder: Path, state: dict[str, Any], config: TrainConfig) -> None:
    """A run continues with the config that started it; only ``optim.steps`` may change (to
    train longer: the schedule is then recomputed for the new length) and ``output`` (a
    moved run folder). The saved config is read through today's defaults, so a run started
    before a section existed (it trained with that section's defaults) still resumes."""
    saved, now = config_to_dict(build(TrainConfig, state["config"])), config_to_dict(config)
    for values in (saved, now):
        values.pop("output", None)
        values["optim"] = {k: v for k, v in values.get("optim", {}).items() if k != "steps"}
    changed = list(_differences(saved, now))
    if changed:
        raise UsageError(
            f"{folder} was trained with a different {changed[0]}; resume it with the same "
            "config (only optim.steps may change)"
        )
    if int(state["step"]) > config.optim.steps:
        raise UsageError(
            f"{folder} is at step {int(state['step'])}, beyond optim.steps {config.optim.steps}"
        )


def _keep_log_rows(path: Path, last_step: int) -> None:
    """Drop the log rows of steps after the checkpoint a run resumes from: those steps are
    trained again."""
    if not path.is_file():
        return
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= last_step]
    if len(kept) < len(rows):
        with replacing(path) as staged, open(staged, "w", newline="") as stream:
            csv.writer(stream).writerows(kept)


def _check_cases(cases: list[Case]) -> None:
    """Refuse validation scans too short to score, before any training step is spent."""
    for case in cases:
        slices = case.grid.grid.size[case.grid.axis]
        if slices <= 2 * metrics.EDGE_SLICES:
            raise UsageError(
                f"validation scan {case.name}: its {slices} thin slices leave nothing to score "
                f"once {metrics.EDGE_SLICES} are left out at each end"
            )


def _agree(ranks: _Ranks, device: torch.device, error: Exception | None) -> None:
    """Stop every process when one of them failed to set up: the others would otherwise wait
    for it forever in their first collective operation."""
    if ranks.world > 1:
        failed = torch.tensor([0.0 if error is None else 1.0], device=device)
        dist.all_reduce(failed)
        if error is None and float(failed) > 0:
            raise UsageError("another training process failed to set up (see its error)")
    if error is not None:
        raise error


def _crops(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    yield from loader  # an endless sampler: the loader never runs out


def train(
    config: TrainConfig, resume: bool = False, report: InfoCallback | None = None
) -> TrainResult:
    """Run (or, with ``resume``, continue) the training that ``config`` describes."""
    folder = Path(config.output)
    ranks = _start_distributed(config.device)
    say = report if (report is not None and ranks.main) else (lambda _message: None)
    _check_run_folder(folder, resume)
    device = _device(config, ranks)
    torch.manual_seed(config.seed)  # the same initial weights in every process
    model = create_model(config.model.name, **config.model.config).to(device)
    model_config = model.config

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    schedule = _schedule(optimizer, config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    diffusion = model_config.diffusion
    # A diffusion model's average weights are what is validated and kept (the model itself
    # for the others).
    average = WeightAverage(model, config.diffusion.ema) if diffusion else None
    kept = average.model if average is not None else model
    validation_options = InferenceOptions(device=device.type)
    if diffusion:
        validation_options = InferenceOptions(
            device=device.type, steps=config.diffusion.validation_steps, sampler="ddim", seed=0
        )
    start, best = 0, {"step": -1, "psnr": -math.inf, "ssim": math.nan}
    if resume:
        state = torch.load(folder / CHECKPOINT_FILE, map_location=device, weights_only=True)
        _check_resumable(folder, state, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        start, best = int(state["step"]), dict(state["best"])
        if average is not None:
            average.model.load_state_dict(state["average"])
        say(f"resuming {folder} at step {start}")
    objective = None
    if diffusion:
        objective = DiffusionObjective(model_config, config.diffusion, config.seed, start)

    crop = config.crop
    failure: Exception | None = None
    try:
        pairs = training_pairs(config.data, model_config.ratio)
        cases = validation_cases(config.data, model_config.ratio) if ranks.main else []
        _check_cases(cases)
        sampler = CropSampler(
            pairs,
            CropOptions(
                slices=model_config.slices,
                ratio=model_config.ratio,
                tile=crop.tile,
                flip=crop.flip,
                transpose=crop.transpose,
                intensity=crop.intensity,
                noise=crop.noise,
                min_tissue=crop.min_tissue,
            ),
            seed=config.seed,
            stream=start,
        )
    except Exception as error:  # every process stops, not only the one that failed
        failure = error
    _agree(ranks, device, failure)
    say(f"{len(pairs)} training pairs, {len(cases)} validation scans")
    loader = DataLoader(
        sampler,
        batch_size=config.optim.batch_size,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
    )
    network: nn.Module = model
    if ranks.world > 1:
        network = DistributedDataParallel(
            model, device_ids=[ranks.local] if device.type == "cuda" else None
        )

    if ranks.main:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    log_path = folder / LOG_FILE
    log_stream = None
    if ranks.main:
        new_log = not (resume and log_path.is_file())
        if not new_log:
            _keep_log_rows(log_path, start)
        log_stream = open(log_path, "w" if new_log else "a", newline="")  # noqa: SIM115
        log = csv.writer(log_stream)
        if new_log:
            log.writerow(LOG_FIELDS)

    autocast = precision_context(device, config.amp)
    began = time.perf_counter()
    running, running_steps, interval_loss, interval_steps = 0.0, 0, 0.0, 0
    crops = _crops(loader)
    network.train()
    try:
        for step in range(start + 1, config.optim.steps + 1):
            thick, thin = (t.to(device, non_blocking=True) for t in next(crops))
            with autocast:
                if objective is not None:
                    loss = objective(network, thick, thin).float()
                else:
                    output = network(thick)
            if objective is None:
                loss = training_loss(output.float(), thin, config.loss.kind, config.loss.weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if average is not None:
                average.update(model)
            if not isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                schedule.step()
            value = loss.detach()
            if ranks.world > 1:
                dist.all_reduce(value)
                value /= ranks.world
            running += float(value)
            running_steps += 1
            interval_loss += float(value)
            interval_steps += 1
            lr = optimizer.param_groups[0]["lr"]
            seconds = time.perf_counter() - began
            if ranks.main and step % config.log_every == 0:
                log.writerow(
                    [
                        step,
                        f"{running / running_steps:.6f}",
                        f"{lr:.3e}",
                        f"{seconds:.1f}",
                        "",
                        "",
                    ]
                )
                log_stream.flush()
                running, running_steps = 0.0, 0
            last = step == config.optim.steps
            if step % config.validate_every == 0 or last:
                if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    schedule.step(interval_loss / max(1, interval_steps))
                interval_loss, interval_steps = 0.0, 0
                if ranks.main and cases:
                    scores = validate(kept, cases, validation_options)
                    network.train()
                    log.writerow(
                        [
                            step,
                            "",
                            f"{lr:.3e}",
                            f"{seconds:.1f}",
                            f"{scores['psnr']:.4f}",
                            f"{scores['ssim']:.5f}",
                        ]
                    )
                    log_stream.flush()
                    improved = scores["psnr"] > best["psnr"]
                    say(
                        f"step {step}: validation PSNR {scores['psnr']:.2f} dB, "
                        f"SSIM {scores['ssim']:.4f}{' (best)' if improved else ''}"
                    )
                    if improved:
                        best = {"step": step, **scores}
                        save_model(kept, folder / BEST_FOLDER, details=_card_details(config, best))
                if ranks.world > 1:
                    dist.barrier()
            if ranks.main and (step % config.checkpoint_every == 0 or last):
                _save_checkpoint(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "scaler": scaler.state_dict(),
                        "step": step,
                        "best": best,
                        "config": config_to_dict(config),
                        **({"average": average.model.state_dict()} if average else {}),
                    },
                    folder / CHECKPOINT_FILE,
                )
    finally:
        if log_stream is not None:
            log_stream.close()
    if not cases and ranks.main:
        # Nothing to pick the best by: the last weights are the result.
        best = {"step": config.optim.steps, "psnr": math.nan, "ssim": math.nan}
        save_model(kept, folder / BEST_FOLDER, details=_card_details(config, best))
    if ranks.world > 1:  # every process returns rank 0's result (and waits for its writes)
        shared = [best]
        dist.broadcast_object_list(shared, src=0)
        best = shared[0]
    return TrainResult(
        steps=config.optim.steps,
        best_step=int(best["step"]),
        best_psnr=float(best["psnr"]),
        best_ssim=float(best["ssim"]),
        seconds=time.perf_counter() - began,
        folder=folder,
    )


def _card_details(config: TrainConfig, best: dict[str, float]) -> dict[str, Any]:
    return {
        "title": f"{config.model.name} trained with thinct",
        "training": (
            f"`thinct train`, step {best['step']} of {config.optim.steps}, batch "
            f"{config.optim.batch_size} of {config.crop.tile}x{config.crop.tile} crops, AdamW lr "
            f"{config.optim.lr:g}, {config.optim.schedule} schedule, {_objective(config)}"
        ),
        "training data": ", ".join(s.path for s in config.data.train),
        "validation": (
            f"PSNR {best['psnr']:.2f} dB, SSIM {best['ssim']:.4f} on "
            + (", ".join(s.path for s in config.data.validation) or "nothing")
        ),
    }


def _objective(config: TrainConfig) -> str:
    """What the run minimised, for the model card."""
    if not registry_entry(config.model.name).config.diffusion:
        return f"{config.loss.kind} loss"
    weights = config.diffusion
    return (
        f"diffusion objective (L1 weight {weights.l1_weight:g}, structure weight "
        f"{weights.structure_weight:g}, {weights.planes} planes per crop, EMA {weights.ema:g})"
    )
