"""The training recipe as a YAML file: what `thinct train --config FILE.yaml` runs.

Every section is a frozen dataclass with defaults, so a config names only what it changes;
an unknown key or a value of the wrong type is one clear error naming its place in the file
(``optim.lr``), before any data is read: `thinct.validation` reads each field's type and the
bound declared with it (``lr: float = positive(3e-4)``). Data paths are relative to
``data.root``, which is relative to the working directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thinct.data.layouts import LAYOUTS
from thinct.errors import UsageError
from thinct.inference.options import AUTOCAST_PRECISIONS
from thinct.resample.profiles import PROFILES
from thinct.validation import at_least, build, fraction, positive

AXES = ("x", "y", "z")
LOSSES = ("l1", "l1+ssim", "l1+gradient", "l1+structure")
SCHEDULES = ("cosine", "plateau")
AMP_MODES = ("off", *AUTOCAST_PRECISIONS)


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
    fwhm: float | None = positive(None)

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
    spacing: float = positive(1.0)
    train: tuple[Source, ...] = ()
    validation: tuple[Source, ...] = ()
    degradations: tuple[Degradation, ...] = (Degradation(),)
    phases: int = positive(1)

    def resolve(self, source: Source) -> Path:
        return Path(self.root) / source.path


@dataclass(frozen=True)
class ModelSection:
    name: str = "cthnet"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CropSection:
    tile: int = positive(64)
    flip: float = fraction(0.5)
    transpose: float = fraction(0.5)
    intensity: float = fraction(0.0)
    noise: float = at_least(0, 0.0)
    min_tissue: float = fraction(0.1)


@dataclass(frozen=True)
class OptimSection:
    """AdamW; ``cosine`` decays to ``min_lr`` after a linear warm-up, ``plateau`` divides the
    rate by 10 when the training loss stops improving (the papers' recipe)."""

    steps: int = positive(10000)
    batch_size: int = positive(4)
    lr: float = positive(3e-4)
    min_lr: float = at_least(0, 1e-6)
    weight_decay: float = at_least(0, 1e-4)
    schedule: str = "cosine"
    warmup_steps: int = at_least(0, 200)
    plateau_patience: int = at_least(0, 4)
    grad_clip: float = positive(1.0)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UsageError(f"optim.schedule must be one of {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class LossSection:
    kind: str = "l1"
    weight: float = at_least(0, 0.1)

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise UsageError(f"loss.kind must be one of {', '.join(LOSSES)}, got {self.kind!r}")


@dataclass(frozen=True)
class DiffusionSection:
    """How a diffusion model (DSDM) trains; ignored by the other models. ``planes``: planes
    through the slice axis taken from each crop; ``l1_weight`` and ``structure_weight``: the
    objective's image-domain L1 and structure-domain terms (`thinct.train.diffusion`);
    ``ema``: the decay of the weights' moving average that validation scores and ``best/``
    keeps; ``validation_steps``: deterministic (DDIM) sampling steps at validation."""

    planes: int = positive(8)
    l1_weight: float = at_least(0, 1.0)
    structure_weight: float = at_least(0, 0.1)
    ema: float = fraction(0.999)
    validation_steps: int = positive(10)


@dataclass(frozen=True)
class TrainConfig:
    output: str
    data: DataSection
    model: ModelSection = ModelSection()
    crop: CropSection = CropSection()
    optim: OptimSection = OptimSection()
    loss: LossSection = LossSection()
    diffusion: DiffusionSection = DiffusionSection()
    seed: int = at_least(0, 0)
    workers: int = at_least(0, 1)
    amp: str = "off"
    device: str = "auto"
    validate_every: int = positive(500)
    checkpoint_every: int = positive(100)
    log_every: int = positive(20)

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise UsageError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if not self.data.train:
            raise UsageError("data.train lists no scans to train on")


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
    return build(TrainConfig, values or {})


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain YAML-ready values (tuples as lists), saved beside each run."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
