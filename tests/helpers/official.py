"""Checkpoints as the published CTHNet and TVSRN code saves them, made without that code.

The published code saves whole modules (``torch.save({'net': module, 'config_dict': ...})``).
Stand-in classes are registered for one ``torch.save`` under the published module names
(``net.model_TransSR``, ``net.swin_utils``, ``net.swin_utils_3d``, timm's DropPath), holding
real torch layers, with exactly the official state-dict layout
(``tests/models/data/*_official_state_dict.tsv``). The stand-ins are gone again when thinct
reads the files, so nothing could be imported from them.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

DATA = Path(__file__).resolve().parents[1] / "models" / "data"
# The published modules a checkpoint names; registered only while a test saves one.
PUBLISHED_MODULES = (
    "net",
    "net.model_TransSR",
    "net.swin_utils",
    "net.swin_utils_3d",
    "timm",
    "timm.models",
    "timm.models.layers",
    "timm.models.layers.drop",
    "timm.layers",
    "timm.layers.drop",
)
# Where DropPath lives differs between timm versions; each architecture uses one of them.
DROP_PATH_MODULE = {"cthnet": "timm.models.layers.drop", "tvsrn": "timm.layers.drop"}
ROOT_CLASS = {"cthnet": "CTHNet", "tvsrn": "TVSRN"}
CLASS_NAMES = {
    "Encoder": "Encoder",
    "Decoder_T1": "SwinIR",
    "Decoder_I1": "SwinIR",
    "patch_embed": "PatchEmbed",
    "residual_group": "BasicLayer",
    "attn": "WindowAttention",
    "mlp": "Mlp",
}
CONFIG_DICT = {
    "net_idx": "CTHNet",
    "ratio": 5,
    "lr": 3e-4,
    "use_amp": False,
    "resume": None,
    "tile": [8, 256, 256],
    "mode": {"train": True, "device": torch.device("cpu")},
    "dtype": torch.float32,
}


class StandIn(nn.Module):
    """A module of the published code, reduced to the state it pickles (never run)."""


@contextmanager
def published_code() -> Iterator[Callable[[str, str], type[nn.Module]]]:
    """Empty modules under the published names, and a maker of stand-in classes in them.

    Pickle names a class by module and name and checks that the module really holds it, so
    the classes live in ``sys.modules`` while a checkpoint is saved; they are removed again
    (and anything of the same name restored) before thinct reads it.
    """
    saved = {name: sys.modules.get(name) for name in PUBLISHED_MODULES}
    for name in PUBLISHED_MODULES:
        sys.modules[name] = types.ModuleType(name)

    def standin(module: str, name: str) -> type[nn.Module]:
        namespace = sys.modules[module]
        if not hasattr(namespace, name):
            attributes = {"__module__": module, "__qualname__": name}
            setattr(namespace, name, type(name, (StandIn,), attributes))
        return getattr(namespace, name)

    try:
        yield standin
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def official_layout(architecture: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """name -> (shape, dtype) of every tensor of the official state dict, from tests/models/data."""
    layout = {}
    for line in (DATA / f"{architecture}_official_state_dict.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, dtype = line.split("\t")
        dims = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
        layout[name] = (dims, getattr(torch, dtype.removeprefix("torch.")))
    return layout


def is_3d(architecture: str, name: str) -> bool:
    """CTHNet's encoder attends in 3D windows; every other Swin block of both models in 2D."""
    return architecture == "cthnet" and name.startswith("Encoder.")


def swin_index(window: tuple[int, ...]) -> Tensor:
    """Swin's relative position index: the bias-table row of every pair of window tokens."""
    grids = torch.meshgrid(*(torch.arange(w) for w in window), indexing="ij")
    coords = torch.stack(grids).flatten(1)
    relative = coords[:, :, None] - coords[:, None, :]
    index = torch.zeros(relative.shape[1:], dtype=torch.long)
    for axis, w in enumerate(window):
        index = index * (2 * w - 1) + relative[axis] + w - 1
    return index


def random_official_tensors(architecture: str, seed: int = 0) -> dict[str, Tensor]:
    """A state dict in the official layout: random weights, the true position indices."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, (shape, dtype) in official_layout(architecture).items():
        if name.endswith("relative_position_index"):
            dims = 3 if is_3d(architecture, name) else 2
            side = round(shape[0] ** (1 / dims))
            tensors[name] = swin_index((side,) * dims)
        else:
            tensors[name] = (0.05 * torch.randn(shape, generator=generator)).to(dtype)
    return tensors


def shifted_block_masks(architecture: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """TVSRN's blocks save their shifted-window masks (shaped by the tile): one per odd block."""
    if architecture != "tvsrn":
        return {}
    masks = {}
    for name, index in tensors.items():
        block = name.removesuffix(".attn.relative_position_index")
        if block != name and int(block.rsplit(".", 1)[1]) % 2:
            tokens = index.shape[0]
            masks[f"{block}.attn_mask"] = torch.where(
                torch.rand(4, tokens, tokens) < 0.5, 0.0, -100.0
            )
    return masks


def _tree(tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Dotted names as nested nodes ({"": direct tensors, child: node}), in first-seen order."""
    root: dict[str, Any] = {"": {}}
    for name, tensor in tensors.items():
        *path, leaf = name.split(".")
        node = root
        for part in path:
            node = node.setdefault(part, {"": {}})
        node[""][leaf] = tensor
    return root


def _layer(tensors: dict[str, Tensor]) -> nn.Module:
    """The torch layer a weight (and bias) of this shape belongs to, holding them."""
    shape, bias = tensors["weight"].shape, "bias" in tensors
    if len(shape) == 1:
        layer: nn.Module = nn.LayerNorm(shape[0], bias=bias)
    elif len(shape) == 2:
        layer = nn.Linear(shape[1], shape[0], bias=bias)
    else:
        convolution = nn.Conv2d if len(shape) == 4 else nn.Conv3d
        layer = convolution(shape[1], shape[0], tuple(shape[2:]), bias=bias)
    layer.load_state_dict(tensors)
    return layer


def _standin(
    node: dict[str, Any], path: str, architecture: str, standin: Callable[[str, str], type]
) -> nn.Module:
    """One module of the published network: a torch layer, a list or a stand-in class."""
    children = {name: child for name, child in node.items() if name}
    direct = node[""]
    if not children and set(direct) <= {"weight", "bias"} and "weight" in direct:
        return _layer(direct)
    three_d = is_3d(architecture, path + ".")
    built = [
        _standin(child, f"{path}.{name}".lstrip("."), architecture, standin)
        for name, child in children.items()
    ]
    if all(name.isdigit() for name in children):
        if path.endswith("conv_before_upsample"):
            return nn.Sequential(*built, nn.LeakyReLU(0.01))
        return nn.ModuleList(built)
    parts = path.split(".")
    if not path:
        module = standin("net.model_TransSR", ROOT_CLASS[architecture])()
        # A non-persistent buffer (the slot encoding): never part of the state dict.
        module.register_buffer("pe", torch.zeros(8, 36), persistent=False)
    else:
        swin = "net.swin_utils_3d" if three_d else "net.swin_utils"
        parent = parts[-2] if len(parts) > 1 else ""
        lists = {"layers": "CTHLayer" if three_d else "RSTB", "blocks": "SwinTransformerBlock"}
        name = lists[parent] if parent in lists else CLASS_NAMES[parts[-1]]
        module = standin(swin, name + ("3D" if three_d else ""))()
    for name, tensor in direct.items():
        if name in ("relative_position_index", "attn_mask"):
            module.register_buffer(name, tensor.clone())
        else:
            module.register_parameter(name, nn.Parameter(tensor.clone()))
    for (name, _), child in zip(children.items(), built, strict=True):
        module.add_module(name, child)
    if len(parts) > 1 and parts[-2] == "blocks":
        if "attn_mask" not in direct and architecture == "tvsrn":
            module.register_buffer("attn_mask", None)  # unshifted blocks of SwinIR have none
        if three_d:
            module.drop_path = nn.Identity()
        else:
            module.drop_path = standin(DROP_PATH_MODULE[architecture], "DropPath")()
            module.drop_path.drop_prob = 0.1
    if parts[-1] == "mlp":
        module.act, module.drop = nn.GELU(), nn.Dropout(0.0)
    if parts[-1] == "attn":
        module.attn_drop, module.softmax = nn.Dropout(0.0), nn.Softmax(dim=-1)
    return module


@dataclass(frozen=True)
class Saved:
    """An official-style checkpoint on disk and what went into it."""

    path: Path
    architecture: str
    tensors: dict[str, Tensor]  # the official state dict, masks included
    names: list[str]  # the stand-in network's own state_dict() order


def save_official(
    path: Path,
    architecture: str,
    tensors: dict[str, Tensor],
    extra: Callable[[nn.Module], None] | None = None,
) -> Saved:
    """``torch.save({'net': module, 'config_dict': ...})`` of a stand-in published network
    holding ``tensors`` (and the TVSRN masks); ``extra`` may alter the module before saving."""
    tensors = {**tensors, **shifted_block_masks(architecture, tensors)}
    with published_code() as standin:
        network = _standin(_tree(tensors), "", architecture, standin)
        names = list(network.state_dict())
        if extra is not None:
            extra(network)
        torch.save({"net": network, "config_dict": CONFIG_DICT}, path)
    return Saved(path, architecture, tensors, names)
