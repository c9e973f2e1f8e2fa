"""Model folders: ``config.json`` + ``model.safetensors`` + ``README.md`` (a model card).

This is the layout of huggingface_hub's ``PyTorchModelHubMixin``, so a folder can be pushed to
the Hub as it is. Weights are safetensors only (nothing is unpickled), and the card records
their sha256, which loading checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from thinct._version import __version__
from thinct.errors import InputError, OutputError, ThinctError
from thinct.io.jsonfile import read_json
from thinct.models.config import config_from_dict
from thinct.models.registry import build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def _card_text(
    model: nn.Module, sha256: str, details: dict[str, Any], sections: dict[str, str]
) -> str:
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    data = ModelCardData(
        library_name="thinct",
        license=details.get("license"),
        tags=["thinct", "ct", "super-resolution", "medical-imaging", config.architecture],
        weights_sha256=sha256,
        thinct_version=__version__,
    )
    rows = "\n".join(f"| `{key}` | `{value}` |" for key, value in config.to_dict().items())
    extra = "\n".join(
        f"- **{key}**: {value}" for key, value in details.items() if key not in ("license", "title")
    )
    if config.diffusion:
        does = f"a diffusion denoiser of 2D planes, for {config.ratio} thin slices per thick one"
    else:
        does = f"{config.slices} thick slices in, {config.ratio} thin slices per thick slice out"
    return (
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {details.get('title', config.architecture)}\n\n"
        f"A {config.architecture} model for thinct: {does} ({parameters:,} parameters).\n\n"
        "Research use only: synthetic thin slices are not a medical device and must not be "
        "used for diagnosis.\n\n"
        + (f"## Details\n\n{extra}\n\n" if extra else "")
        + "".join(f"## {heading}\n\n{text.strip()}\n\n" for heading, text in sections.items())
        + f"## Configuration\n\n| field | value |\n|---|---|\n{rows}\n\n"
        f"## Files\n\n- `{CONFIG_FILE}`: the configuration above\n"
        f"- `{WEIGHTS_FILE}`: weights (sha256 `{sha256}`)\n\n"
        'Load with `thinct.load_model("path/to/this/folder")` or '
        "`thinct upsample --model path/to/this/folder IN OUT`.\n"
    )


def save_model(
    model: nn.Module,
    folder: str | Path,
    details: dict[str, Any] | None = None,
    sections: dict[str, str] | None = None,
) -> Path:
    """Write a model folder (config, safetensors weights, model card); replaces ``folder``.

    ``details`` go into the card as a list (where the weights come from, how they were
    trained, their metrics); ``sections`` add whole markdown sections (heading -> text), such
    as intended use and limitations. The folder is written beside its destination and
    renamed into place, so a failure leaves no half-written model.
    """
    folder = Path(folder)
    if folder.exists() and not is_model_folder(folder):
        if not folder.is_dir() or any(folder.iterdir()):
            raise OutputError(f"{folder} exists and is not a thinct model folder")
    scratch = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        # mkdtemp's folder is private (0700) and safetensors writes 0600: the model folder is
        # made inside it with the usual permissions, which its files then get too.
        staging = scratch / folder.name
        staging.mkdir()
        (staging / CONFIG_FILE).write_text(
            json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        weights = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_file(weights, staging / WEIGHTS_FILE, metadata={"format": "pt"})
        (staging / WEIGHTS_FILE).chmod(staging.stat().st_mode & 0o666)
        sha256 = sha256_of(staging / WEIGHTS_FILE)
        (staging / CARD_FILE).write_text(
            _card_text(model, sha256, details or {}, sections or {}), encoding="utf-8"
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except OSError as error:
        raise OutputError(f"cannot write {folder} ({error.strerror or error})") from None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return folder


def recorded_sha256(folder: Path) -> str | None:
    """The weights' sha256 that the folder's model card records, if it records one."""
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        return None
    try:
        card = ModelCard.load(card_path)
    except (ValueError, OSError, yaml.YAMLError) as error:  # UnicodeDecodeError is a ValueError
        reason = " ".join(str(error).split())
        raise InputError(f"{card_path} is not a readable model card: {reason}") from None
    return card.data.to_dict().get("weights_sha256")


def load_model_folder(folder: str | Path) -> nn.Module:
    """The model saved in a folder by `save_model`, in eval mode, its sha256 checked (and
    kept as ``model.weights_sha256``)."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file():
        raise InputError(f"{folder} is not a model folder: it has no {CONFIG_FILE}")
    if not weights_path.is_file():
        raise InputError(f"{folder} has no {WEIGHTS_FILE}")
    values = read_json(config_path)
    if not isinstance(values, dict):
        raise InputError(f"{config_path} does not hold a model configuration")
    try:
        config = config_from_dict(values)
    except ThinctError as error:
        raise InputError(f"{config_path}: {error}") from None
    expected = recorded_sha256(folder)
    if expected is not None and sha256_of(weights_path) != expected:
        raise InputError(
            f"{weights_path} does not match the sha256 its model card records (corrupt or "
            "replaced weights)"
        )
    try:
        weights = load_file(weights_path)
    except (SafetensorError, OSError) as error:
        raise InputError(f"{weights_path} is not a readable safetensors file: {error}") from None
    model = build_model(config)
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # tensors of the wrong shape
        reason = str(error).strip().splitlines()[-1].strip()
        raise InputError(f"{weights_path} does not fit its config: {reason}") from None
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise InputError(
            f"{weights_path} does not fit its {config.architecture} config "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected "
            f"tensors, e.g. {problems[0]})"
        )
    model.weights_sha256 = expected
    return model.eval()
