"""The training recipe as a YAML file: what `thinct train --config FILE.yaml` runs.

Every section is a frozen dataclass with defaults, so a config names only what it changes;
an unknown key or a value of the wrong type is one clear error naming its place in the file
(``optim.lr``), before any data is read. Data paths are relative to ``data.root``, which is
relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thinct.data.layouts import LAYOUTS
from thinct.errors import UsageError
from thinct.inference.options import AUTOCAST_PRECISIONS
from thinct.resample.profiles import PROFILES

AXES = ("x", "y", "z")
LOSSES = ("l1", "l1+ssim", "l1+gradient")
SCHEDULES = ("cosine", "plateau")
AMP_MODES = ("off", *AUTOCAST_PRECISIONS)
# Counts that must be at least 1 (the others may be 0), and the allowed range of numbers.
_POSITIVE_INTS = (
    "steps",
    "batch_size",
    "tile",
    "validate_every",
    "checkpoint_every",
    "log_every",
    "phases",
)
_POSITIVE_FLOATS = ("spacing", "lr", "grad_clip")
_FRACTIONS = ("flip", "transpose", "intensity", "min_tissue")


@dataclass(frozen=True)
class Source:
    """Scans to learn from or to validate on.

    A file or folder of thin scans (``axes`` ``z``: simulated thick slices), any scan
    degraded in-plane (``axes`` ``x``/``y``: self-supervised pairs, the real thick scans
    included), or a paired folder in a public ``layout`` with its ``split``. ``slices``
    keeps a fraction of each scan along its slice axis, so one scan can give a training part
    and a held-out part.
    """

    path: str
    axes: tuple[str, ...] = ("z",)
    slices: tuple[float, float] = (0.0, 1.0)
    layout: str | None = None
    split: str = "train"

    def __post_init__(self) -> None:
        if not self.axes or any(axis not in AXES for axis in self.axes):
            raise UsageError(f"source {self.path}: axes must be some of x, y, z, got {self.axes}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise UsageError(f"source {self.path}: layout must be one of {', '.join(LAYOUTS)}")
        start, stop = self.slices
        if not 0 <= start < stop <= 1:
            raise UsageError(f"source {self.path}: slices must be [start, stop] within [0, 1]")


@dataclass(frozen=True)
class Degradation:
    """A slice profile for simulated thick slices; several make thickness jitter."""

    profile: str = "boxcar"
    fwhm: float | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise UsageError(
                f"a degradation profile must be one of {', '.join(PROFILES)}, got {self.profile!r}"
            )
        if self.fwhm is not None and self.profile != "gaussian":
            raise UsageError("a degradation's fwhm only applies to profile gaussian")


@dataclass(frozen=True)
class DataSection:
    root: str = "."
    spacing: float = 1.0
    train: tuple[Source, ...] = ()
    validation: tuple[Source, ...] = ()
    degradations: tuple[Degradation, ...] = (Degradation(),)
    phases: int = 1

    def resolve(self, source: Source) -> Path:
        return Path(self.root) / source.path


@dataclass(frozen=True)
class ModelSection:
    name: str = "cthnet"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CropSection:
    tile: int = 64
    flip: float = 0.5
    transpose: float = 0.5
    intensity: float = 0.0
    noise: float = 0.0
    min_tissue: float = 0.1


@dataclass(frozen=True)
class OptimSection:
    """AdamW; ``cosine`` decays to ``min_lr`` after a linear warm-up, ``plateau`` divides the
    rate by 10 when the training loss stops improving (the papers' recipe)."""

    steps: int = 10000
    batch_size: int = 4
    lr: float = 3e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 200
    plateau_patience: int = 4
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UsageError(f"optim.schedule must be one of {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class LossSection:
    kind: str = "l1"
    weight: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise UsageError(f"loss.kind must be one of {', '.join(LOSSES)}, got {self.kind!r}")


@dataclass(frozen=True)
class TrainConfig:
    output: str
    data: DataSection
    model: ModelSection = ModelSection()
    crop: CropSection = CropSection()
    optim: OptimSection = OptimSection()
    loss: LossSection = LossSection()
    seed: int = 0
    workers: int = 1
    amp: str = "off"
    device: str = "auto"
    validate_every: int = 500
    checkpoint_every: int = 100
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise UsageError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if not self.data.train:
            raise UsageError("data.train lists no scans to train on")


def _build(cls: type, values: Any, where: str) -> Any:
    """A dataclass from a YAML mapping, every field's type checked against its default."""
    if not isinstance(values, dict):
        raise UsageError(f"{where or 'the config'} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UsageError(f"unknown key {where + '.' if where else ''}{unknown[0]} in the config")
    required = [
        name
        for name, spec in fields.items()
        if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in values]
    if missing:
        raise UsageError(f"the config needs {where + '.' if where else ''}{missing[0]}")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _convert(cls, fields[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


_NESTED = {
    "data": DataSection,
    "model": ModelSection,
    "crop": CropSection,
    "optim": OptimSection,
    "loss": LossSection,
}


def _convert(owner: type, spec: dataclasses.Field, value: Any, where: str) -> Any:
    if spec.name in _NESTED and owner in (TrainConfig,):
        return _build(_NESTED[spec.name], value, where)
    if owner is DataSection and spec.name in ("train", "validation", "degradations"):
        item = Degradation if spec.name == "degradations" else Source
        if not isinstance(value, list):
            raise UsageError(f"{where} must be a list")
        return tuple(_build(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if owner is Source and spec.name == "axes":
        if not isinstance(value, list):
            raise UsageError(f"{where} must be a list")
        return tuple(value)
    if owner is Source and spec.name == "slices":
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))):
            raise UsageError(f"{where} must be a list of two fractions, [start, stop]")
        return tuple(float(v) for v in value)
    if owner is ModelSection and spec.name == "config":
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a mapping of model config fields")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    default = spec.default
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, float) or spec.name == "fwhm":
        if spec.name in _FRACTIONS:
            low, expected = 0.0, "a fraction from 0 to 1"
        elif spec.name in (*_POSITIVE_FLOATS, "fwhm"):
            low, expected = None, "a positive number"
        else:
            low, expected = 0.0, "a number, 0 or more"
        ok = _is_number(value) and math.isfinite(value)
        ok = ok and (value > 0 if low is None else value >= low)
        ok = ok and (spec.name not in _FRACTIONS or value <= 1)
        if spec.name == "fwhm" and value is None:
            return None
        value = float(value) if ok else value
    elif isinstance(default, int):
        low = 1 if spec.name in _POSITIVE_INTS else 0
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        expected = f"a whole number, {low} or more"
    else:
        # Text; only a field whose default is None (a source's layout) may be left empty.
        ok = isinstance(value, str) or (value is None and default is None)
        expected = (
            "a text" if default in (None, dataclasses.MISSING) else f"a text like {default!r}"
        )
    if not ok:
        raise UsageError(f"{where} = {value!r} is not valid (expected {expected})")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and check a training config file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())
        raise UsageError(f"{path} is not valid YAML: {reason}") from None
    return _build(TrainConfig, values or {}, "")


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain YAML-ready values (tuples as lists), saved beside each run."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
