"""A tiny CTHNet training recipe on the shipped crop: a few steps, 60 % of the slices to
train on and 35 % held out, written as YAML and read back as `thinct train` reads it."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from helpers.paths import EXAMPLES
from thinct.train.config import TrainConfig, load_train_config

CROP = "lidc0002_crop_1.25mm.nii.gz"
TINY_MODEL = {
    "encoder_dim": 8,
    "encoder_depths": [1],
    "encoder_heads": 1,
    "latent_channels": 2,
    "in_plane_depths": [1],
    "in_plane_heads": 2,
    "through_depths": [1],
    "through_heads": 2,
    "mlp_ratio": 2.0,
    "head_channels": 8,
    "interpolation_residual": True,
}


def _merge(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def tiny_recipe(output: Path, /, **changes: object) -> dict:
    """A few steps of a tiny CTHNet: 60 % of the crop to train on, 35 % held out."""
    recipe = {
        "output": str(output),
        "seed": 0,
        "workers": 0,
        "device": "cpu",
        "validate_every": 4,
        "checkpoint_every": 2,
        "log_every": 1,
        "model": {"name": "cthnet", "config": TINY_MODEL},
        "data": {
            "root": str(EXAMPLES),
            "train": [{"path": CROP, "slices": [0.0, 0.6]}],
            "validation": [{"path": CROP, "slices": [0.65, 1.0]}],
        },
        "crop": {"tile": 32},
        "optim": {"steps": 4, "batch_size": 2, "lr": 3.0e-4, "warmup_steps": 2},
    }
    return _merge(recipe, changes)


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def tiny_config(folder: Path, output: Path, /, **changes: object) -> TrainConfig:
    """The tiny recipe as a YAML file, read back the way `thinct train` reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_recipe(folder / f"{output.name}.yaml", tiny_recipe(output, **changes))
    return load_train_config(path)
