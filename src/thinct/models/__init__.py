"""Thin-slice models: CTHNet, TVSRN, ThickGridNet and the diffusion model DSDM behind one
registry, model folders, official weights.

``load_model(spec)`` is the one way in: ``None`` for the default model, a registry name, a
model folder, an ``hf://owner/repo[@revision]`` Hub model, or an official checkpoint file
(read without unpickling foreign code).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from thinct.errors import InputError, UsageError
from thinct.models.config import (
    CTHNetConfig,
    DSDMConfig,
    ModelConfig,
    TVSRNConfig,
    config_from_dict,
)
from thinct.models.cthnet import CTHNet
from thinct.models.dsdm import DSDMDenoiser
from thinct.models.official import load_official_checkpoint
from thinct.models.registry import (
    DEFAULT_MODEL,
    RegistryEntry,
    build_model,
    create_model,
    list_models,
    register_model,
    registry_entry,
)
from thinct.models.storage import (
    is_model_folder,
    load_model_folder,
    save_model,
)
from thinct.models.tvsrn import TVSRN

# Suffixes of the published code's checkpoints (``torch.save`` of the whole module).
OFFICIAL_SUFFIXES = (".pkl", ".pth", ".pt", ".ckpt")
WEIGHTS_PACKAGE = Path(__file__).resolve().parent.parent / "weights"


def load_model(spec: str | Path | None = None) -> nn.Module:
    """A model in eval mode, with its ``.config`` and ``.weights_sha256`` (the sha256 its
    model card records and loading checked; None for an official checkpoint).

    ``spec`` is ``None`` (the default model, `DEFAULT_MODEL`, whose weights ship inside the
    package), a registry name with shipped weights, a model folder (``config.json`` +
    ``model.safetensors``), a Hub model ``hf://owner/repo[@revision][/subfolder]`` (see
    `thinct.models.hub`) or an official checkpoint file.
    """
    spec = DEFAULT_MODEL if spec is None else spec
    if isinstance(spec, str) and spec.startswith("hf://"):
        from thinct.models.hub import load_hub_model  # the Hub client loads only when it is used

        return load_hub_model(spec)
    path = Path(spec)
    if is_model_folder(path):
        return load_model_folder(path)
    if path.is_file():
        if path.suffix.lower() in OFFICIAL_SUFFIXES:
            return load_official_checkpoint(path)
        raise InputError(
            f"{path}: not a model; give a model folder (config.json + model.safetensors) or an "
            f"official checkpoint ({', '.join(OFFICIAL_SUFFIXES)})"
        )
    if path.is_dir():
        raise InputError(f"{path} is not a model folder: it has no config.json")
    if str(spec) in {entry.name for entry in list_models()}:
        entry = registry_entry(str(spec))
        if entry.weights is None:
            raise UsageError(
                f"model {entry.name!r} has no trained weights in this version of thinct "
                f"(thinct.create_model({entry.name!r}) builds it untrained, for training)"
            )
        return load_model_folder(WEIGHTS_PACKAGE / entry.weights)
    names = ", ".join(entry.name for entry in list_models())
    raise UsageError(
        f"model {spec!r}: no such file or folder, not a registered model ({names}) and not a "
        "Hub model (hf://owner/repo)"
    )


def model_display_name(spec: str | Path | None) -> str:
    """How outputs and reports name the model that made them: a registered or Hub name in
    full, a folder by its name, a checkpoint file by its stem (the rest of a local path says
    nothing to a reader)."""
    if spec is None:
        return DEFAULT_MODEL
    text = str(spec)
    if text.startswith("hf://") or text in {entry.name for entry in list_models()}:
        return text
    path = Path(text)
    return path.stem if path.is_file() else path.name or text


__all__ = [
    "DEFAULT_MODEL",
    "CTHNet",
    "CTHNetConfig",
    "DSDMConfig",
    "DSDMDenoiser",
    "ModelConfig",
    "RegistryEntry",
    "TVSRN",
    "TVSRNConfig",
    "build_model",
    "config_from_dict",
    "create_model",
    "list_models",
    "load_model",
    "load_model_folder",
    "model_display_name",
    "register_model",
    "save_model",
]
