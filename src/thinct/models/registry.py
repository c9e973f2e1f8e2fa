"""Named model configurations, in the manner of timm: ``create_model("cthnet")`` builds the
paper's CTHNet with fresh weights, and keyword overrides make variants (``slices=4``).

An entry may name weights shipped inside the package (a model folder under
``thinct/weights``); `thinct.models.load_model` loads those.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from thinct.errors import UsageError
from thinct.models.config import (
    CONFIG_CLASSES,
    CTHNetConfig,
    DSDMConfig,
    ModelConfig,
    ThickGridConfig,
    TVSRNConfig,
)
from thinct.models.cthnet import CTHNet
from thinct.models.dsdm import DSDMDenoiser
from thinct.models.thickgrid import ThickGridNet
from thinct.models.tvsrn import TVSRN

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "cthnet": CTHNet,
    "tvsrn": TVSRN,
    "thickgrid": ThickGridNet,
    "dsdm": DSDMDenoiser,
}


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    config: ModelConfig
    description: str
    weights: str | None = None  # folder name under thinct/weights, when weights ship


_REGISTRY: dict[str, RegistryEntry] = {}
# What `thinct upsample` and `thinct.load_model()` use when no model is named.
DEFAULT_MODEL = "thickgrid"


def register_model(entry: RegistryEntry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry


def list_models() -> list[RegistryEntry]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def registry_entry(name: str) -> RegistryEntry:
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise UsageError(f"unknown model {name!r}; registered models: {known}")
    return _REGISTRY[name]


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised network for a config (its ``.config`` is that config)."""
    return ARCHITECTURES[config.architecture](config)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """A registered model with fresh weights; keyword arguments replace config fields."""
    config = registry_entry(name).config
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"unknown {config.architecture} config fields: {', '.join(unknown)}")
    return build_model(dataclasses.replace(config, **overrides))


register_model(
    RegistryEntry(
        "cthnet",
        CTHNetConfig(),
        "CTHNet as published (Yu et al. 2024): 8 x 5 mm slices to 36 x 1 mm slots, 10.6 M "
        "parameters",
    )
)
register_model(
    RegistryEntry(
        "cthnet-small",
        CTHNetConfig(
            encoder_dim=16,
            encoder_depths=(1,),
            encoder_heads=2,
            latent_channels=2,
            head_channels=8,
            mlp_ratio=2.0,
            through_depths=(1,),
            through_heads=2,
            in_plane_depths=(2,),
            in_plane_heads=4,
            interpolation_residual=True,
        ),
        "A small CTHNet for CPUs, trained on chest and head CT (the default before "
        "thickgrid): 8 x 5 mm slices to 36 x 1 mm slots, 0.2 M parameters, a correction to "
        "linear interpolation",
        weights="cthnet-small",
    )
)
register_model(
    RegistryEntry(
        "tvsrn",
        TVSRNConfig(),
        "TVSRN as published (RPLHR-CT, MICCAI 2022): 4 x 5 mm slices to 16 x 1 mm slots, "
        "2.4 M parameters",
    )
)
register_model(
    RegistryEntry(
        "thickgrid",
        ThickGridConfig(),
        "ThickGridNet, thinct's CPU-efficient network, trained on chest and head CT (the "
        "default model): a (2+1)D residual convolution network on the thick grid, 8 x 5 mm "
        "slices to 36 x 1 mm slots, a correction to linear interpolation, 0.1 M parameters",
        weights="thickgrid",
    )
)
register_model(
    RegistryEntry(
        "dsdm",
        DSDMConfig(),
        "DSDM as in the public code of Chu et al. (MICCAI 2023): a dual-stream diffusion "
        "denoiser of 2D planes (two RED-CNN streams, 5 x 5 kernels), 4.4 M parameters",
    )
)
register_model(
    RegistryEntry(
        "dsdm-small",
        DSDMConfig(widths=(16, 16, 16), kernel_size=3, fusion_channels=8, embedding_dim=32),
        "A small DSDM for CPUs: the same dual-stream diffusion denoiser with 16-channel "
        "streams of three 3 x 3 layers, 0.03 M parameters",
    )
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MODEL",
    "CONFIG_CLASSES",
    "RegistryEntry",
    "build_model",
    "create_model",
    "list_models",
    "register_model",
    "registry_entry",
]
